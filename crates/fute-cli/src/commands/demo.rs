//! `fute demo`: one command from a fresh machine to a result on real assets.

use crate::table::Table;
use crate::Context;
use clap::Args;
use fute::embed::{dte_subject, embed, EmbedRequest};
use fute::methods::Method;
use fute::probe::ProbeSet;
use fute::prompt_eval::{evaluate_dataset, PromptEvalConfig, TaskMetric};
use fute::prompted::restrict_to_labels;
use fute::surrogate::Surrogate;
use fute_core::dataset::Split;
use fute_core::embedding::store::RankOptions;
use fute_core::embedding::{EmbeddingKind, Store, StoredDType};
use fute_core::metrics::ranking;
use fute_llm::gguf::SMOLLM2_FILE;
use fute_llm::{GgufBackend, LabelSettings, PromptSet};
use std::collections::BTreeMap;

/// Options of the demo.
#[derive(Args)]
pub struct DemoArgs {
    /// Also fetch the opt-in BIG-bench tasks (342 MB).
    #[arg(long)]
    bigbench: bool,
    /// Examples per dataset embedded.
    #[arg(long, default_value_t = 200)]
    examples: usize,
    /// Rotten Tomatoes test reviews each prompt of the LLM is measured on (0: skip that step).
    #[arg(long, default_value_t = 20)]
    reviews: usize,
}

/// The datasets the demo embeds and compares.
const DEMO_DATASETS: [&str; 5] = [
    "imdb",
    "rotten-tomatoes",
    "tweets",
    "spam-assassin",
    "lee-similarity",
];

/// Fetches the real assets, imports every dataset, builds U, embeds datasets and ranks them.
pub fn run(ctx: &Context, args: DemoArgs) -> anyhow::Result<()> {
    eprintln!("== 1/5 fetching the real assets (package registries only; cached by checksum)");
    let names: Vec<String> = if args.bigbench {
        vec!["bigbench".into()]
    } else {
        Vec::new()
    };
    super::assets::fetch(ctx, &names, true, false)?;
    eprintln!("== 2/5 importing and validating every packaged dataset");
    super::data::list(ctx, false)?;
    eprintln!("== 3/5 building the unlabelled corpus U (1,000 inputs per source, seed 42)");
    let spec = fute_core::corpus::CorpusSpec::default();
    super::corpus::build(ctx, "demo-u", &spec, true, false)?;
    eprintln!(
        "== 4/5 embedding {} datasets with TextEmb on the MiniLM surrogate ({} examples each) and comparing them",
        DEMO_DATASETS.len(),
        args.examples
    );
    let surrogate = Surrogate::open(&ctx.assets.dir("minilm")?)?;
    let store = Store::open(&ctx.workspace.state_dir())?;
    let method = Method::TextEmb {
        max_len: 128,
        batch: 32,
    };
    let mut records = Vec::new();
    for name in DEMO_DATASETS {
        let ds = ctx.workspace.load_dataset(name)?;
        let probe = ProbeSet::from_dataset(&ds, Split::Train, Some(args.examples), 42)?;
        let (subject, extra) = dte_subject(&ds, Split::Train, &probe);
        let pb = super::spinner(format!("TextEmb DTE of {name}"));
        let out = embed(
            &store,
            &surrogate,
            EmbedRequest {
                subject,
                kind: EmbeddingKind::Dte,
                probe: &probe,
                method: &method,
                seed: 42,
                corpus: None,
                dtype: StoredDType::F32,
                extra,
            },
            &mut |m| pb.set_message(m),
        )?;
        pb.finish_and_clear();
        eprintln!(
            "   {}  {name}  {:.1} s{}",
            out.record.id,
            out.record.meta.wall_seconds,
            if out.cached { " (cached)" } else { "" }
        );
        records.push(out.record);
    }
    let mut t = Table::new(&[
        "TARGET",
        "NEAREST",
        "CENTRED COSINE",
        "NEXT",
        "CENTRED COSINE",
    ]);
    for target in &records {
        let r = store.rank(
            target,
            &records,
            RankOptions {
                centre: true,
                fuse_components: false,
            },
        )?;
        t.row(vec![
            target.meta.subject.name.clone(),
            r[0].name.clone(),
            format!("{:.3}", r[0].score),
            r[1].name.clone(),
            format!("{:.3}", r[1].score),
        ]);
    }
    println!();
    print!("{}", t.render());
    if args.reviews > 0 {
        which_prompt(ctx, args.reviews)?;
    }
    println!("\nEverything is in {}: try `fute ls`, `fute rank --target <ID> --centre`, `fute embed dataset tweets --method fim --limit 200`, `fute prompts evaluate --help`.", ctx.workspace.state_dir().display());
    Ok(())
}

/// Step 5: the label-free prompt-selection baselines and Self-Select on the
/// packaged SmolLM2, judged against each prompt's measured accuracy.
fn which_prompt(ctx: &Context, reviews: usize) -> anyhow::Result<()> {
    eprintln!(
        "== 5/5 which prompt should SmolLM2-135M-Instruct use for Rotten Tomatoes? (13 prompts, {reviews} test reviews; chain-of-thought cut to 16 tokens)"
    );
    let backend = GgufBackend::load(ctx.assets.dir("smollm2")?.join(SMOLLM2_FILE))?;
    let cached = super::llm::cached(ctx, &backend)?;
    let set = PromptSet::builtin("sa")?;
    let ds = ctx.workspace.load_dataset("rotten-tomatoes")?;
    let (ds, _) = restrict_to_labels(&ds, &set.labels, &BTreeMap::new())?;
    let cfg = PromptEvalConfig {
        split: Split::Test,
        limit: Some(reviews),
        seed: 42,
        max_chars: Some(1500),
        settings: LabelSettings {
            cot_max_tokens: 16,
            ..LabelSettings::default()
        },
        spell_inputs: 5.min(reviews),
        metric: TaskMetric::Accuracy,
        self_select: true,
    };
    let pb = super::spinner("asking SmolLM2");
    let t = std::time::Instant::now();
    let r = evaluate_dataset(&cached, &set, &ds, &cfg, None, &mut |m| pb.set_message(m))?;
    pb.finish_and_clear();
    let best = r.truth.iter().copied().fold(f64::MIN, f64::max);
    let mut table = Table::new(&["METHOD", "PICKS PROMPT", "ITS ACCURACY", "OF THE BEST"]);
    for (method, scores) in &r.scores {
        // Tied picks: Performance and Rate take the mean over them.
        let ranks = ranking::shared_ranks(scores);
        let top = ranks.iter().copied().fold(f64::MAX, f64::min);
        let picks: Vec<usize> = (0..scores.len()).filter(|&p| ranks[p] == top).collect();
        table.row(vec![
            method.clone(),
            picks
                .iter()
                .map(|p| format!("#{p}"))
                .collect::<Vec<_>>()
                .join(" "),
            format!("{:.1}", ranking::performance(scores, &r.truth) * 100.0),
            format!("{:.0} %", ranking::rate(scores, &r.truth) * 100.0),
        ]);
    }
    println!(
        "\nSmolLM2 on {} Rotten Tomatoes reviews: prompt accuracies {} (best {:.1}); {:.0} s",
        r.examples,
        r.truth
            .iter()
            .enumerate()
            .map(|(p, t)| format!("#{p} {:.0}", t * 100.0))
            .collect::<Vec<_>>()
            .join(", "),
        best * 100.0,
        t.elapsed().as_secs_f64()
    );
    print!("{}", table.render());
    Ok(())
}
