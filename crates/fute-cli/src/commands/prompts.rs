//! `fute prompts list|evaluate`: prompt sets, and prompt selection judged
//! against each prompt's measured performance (the paper's table).

use super::embed::{CommonArgs, MethodArg};
use super::llm::LlmArgs;
use super::{print_json, user};
use crate::table::Table;
use crate::Context;
use clap::Subcommand;
use fute::prompt_eval::{
    evaluate_dataset, summarise, DatasetReport, FuteSpace, PromptEvalConfig, TaskMetric,
};
use fute::prompted::restrict_to_labels;
use fute::surrogate::{resolve_model_dir, Surrogate};
use fute_core::dataset::{Split, TaskSchema};
use fute_core::embedding::Store;
use fute_llm::PromptSet;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Prompt sub-commands.
// Parsed once per process: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum PromptsCmd {
    /// Show a prompt set: each prompt's index, mode, template and verbalisers.
    List {
        /// A built-in set (sa, nli) or a .toml/.json file.
        #[arg(long, default_value = "sa")]
        prompt_set: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rank an LLM's prompts for target datasets with FUTE and every baseline, and judge each
    /// ranking against the prompts' measured performance (Performance, Rate, NDCG).
    ///
    /// Every LLM call is cached in the workspace: a rerun or an interrupted run repeats none.
    /// `--limit` caps the DTE's training examples; U's size is the corpus's.
    /// Cost on 2 CPU cores with SmolLM2: ~0.2–0.5 s per vanilla call, plus ~27 ms per
    /// reasoning token of the 3 chain-of-thought prompts; 40 reviews × 13 prompts took
    /// 2.4 min (Rotten Tomatoes) to 10.6 min (IMDB) with --cot-max-tokens 16.
    ///
    /// Examples:
    ///   fute corpus build u-sa --shape single --exclude imdb,rotten-tomatoes,tweets --per-source 40
    ///   fute prompts evaluate --prompt-set sa --datasets imdb,rotten-tomatoes,tweets --corpus u-sa --eval-limit 100
    ///   fute prompts evaluate --prompt-set nli --datasets imppres,vitaminc \
    ///       --label-map True=entailment,False=contradiction,Neither=neutral --corpus u-nli
    #[command(verbatim_doc_comment)]
    Evaluate {
        /// A built-in set (sa, nli) or a .toml/.json file.
        #[arg(long, default_value = "sa")]
        prompt_set: String,
        /// Target datasets, comma-separated (classification; see `fute data list`).
        #[arg(long, value_delimiter = ',', required = true)]
        datasets: Vec<String>,
        /// Dataset label → prompt-set label, e.g. True=entailment (same names map themselves;
        /// examples whose label maps to nothing are dropped).
        #[arg(long, value_delimiter = ',')]
        label_map: Vec<String>,
        /// The labelled split each prompt is measured on.
        #[arg(long, default_value = "test")]
        split: Split,
        /// At most this many evaluation examples per dataset (seeded subset; the paper: 1000).
        #[arg(long, default_value_t = 1000)]
        eval_limit: usize,
        /// SPELL averages each prompt's perplexity over this many evaluation inputs (0: no SPELL).
        #[arg(long, default_value_t = 100)]
        spell_inputs: usize,
        /// accuracy or macro-f1 [default: macro-f1 for NLI sets, else accuracy].
        #[arg(long, value_parser = ["accuracy", "macro-f1"])]
        metric: Option<String>,
        /// Skip Self-Select (asking the LLM to pick its own prompt).
        #[arg(long)]
        no_self_select: bool,
        /// The task-shaped corpus U the prompted LLMs label for their MTEs (FUTE rows).
        #[arg(long, required_unless_present = "no_fute")]
        corpus: Option<String>,
        /// FUTE methods, comma-separated: each gives a row, "FUTE + TaskEmb" (fim) or
        /// "FUTE + TuPaTE" (prefix) when run with FUTE's settings (square-of-mean Fisher;
        /// prefix of 16, dropout 0.15, mean over layers), else named with what differs,
        /// e.g. "FUTE + TaskEmb (per-example Fisher)".
        #[arg(long, value_enum, value_delimiter = ',', default_value = "fim,prefix")]
        methods: Vec<MethodArg>,
        /// Skip FUTE (baselines only).
        #[arg(long)]
        no_fute: bool,
        /// Subtract the MTEs' mean before the cosine.
        #[arg(long)]
        centre: bool,
        /// Also write every score and the summary as JSON to this file.
        #[arg(long)]
        json_out: Option<PathBuf>,
        #[command(flatten)]
        llm: LlmArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
}

/// Runs a prompts sub-command.
pub fn run(ctx: &Context, cmd: PromptsCmd) -> anyhow::Result<()> {
    match cmd {
        PromptsCmd::List { prompt_set, json } => {
            let set = PromptSet::load(&prompt_set)?;
            if json {
                return print_json(&set);
            }
            println!(
                "prompt set `{}` ({}), labels: {}",
                set.name,
                set.task,
                set.labels.join(", ")
            );
            let mut t = Table::new(&["#", "MODE", "TEMPLATE", "VERBALISERS"]);
            for (i, p) in set.prompts.iter().enumerate() {
                t.row(vec![
                    i.to_string(),
                    format!("{:?}", p.mode).to_lowercase(),
                    p.template.replace('\n', "\\n"),
                    p.verbalizers
                        .iter()
                        .map(|v| format!("{}: {}", v.label, v.words.join("/")))
                        .collect::<Vec<_>>()
                        .join("; "),
                ]);
            }
            print!("{}", t.render());
            Ok(())
        }
        PromptsCmd::Evaluate {
            prompt_set,
            datasets,
            label_map,
            split,
            eval_limit,
            spell_inputs,
            metric,
            no_self_select,
            corpus,
            methods,
            no_fute,
            centre,
            json_out,
            llm,
            common,
        } => {
            let set = PromptSet::load(&prompt_set)?;
            let mut map = BTreeMap::new();
            for pair in &label_map {
                let (from, to) = pair.split_once('=').ok_or_else(|| {
                    user(format!("--label-map takes OWN=SET pairs, not `{pair}`"))
                })?;
                map.insert(from.trim().to_string(), to.trim().to_string());
            }
            let mut loaded = Vec::new();
            let mut own_labels: Vec<String> = Vec::new();
            for name in &datasets {
                let ds = ctx.workspace.load_dataset(name)?;
                if let TaskSchema::Classification { labels, .. } = &ds.card.schema {
                    own_labels.extend(labels.iter().cloned());
                }
                loaded.push(ds);
            }
            for from in map.keys() {
                if !own_labels.iter().any(|l| l == from) {
                    return Err(user(format!(
                        "--label-map names `{from}`, which is a label of none of {} (their labels: {})",
                        datasets.join(", "),
                        own_labels.join(", ")
                    )));
                }
            }
            let mut targets = Vec::new();
            for ds in &loaded {
                let (ds, dropped) = restrict_to_labels(ds, &set.labels, &map)?;
                if dropped > 0 {
                    eprintln!(
                        "{}: {dropped} examples whose label is not one of {} left out",
                        ds.card.name,
                        set.labels.join(", ")
                    );
                }
                targets.push(ds);
            }
            let backend = llm.open(ctx)?;
            let cached = super::llm::cached(ctx, &*backend)?;
            let cfg = PromptEvalConfig {
                split,
                limit: Some(eval_limit),
                seed: common.seed,
                max_chars: llm.max_chars,
                settings: llm.settings(),
                spell_inputs,
                metric: match metric.as_deref() {
                    Some("accuracy") => TaskMetric::Accuracy,
                    Some(_) => TaskMetric::MacroF1,
                    None => TaskMetric::for_set(&set),
                },
                self_select: !no_self_select,
            };
            let store = Store::open(&ctx.workspace.state_dir())?;
            let space_parts = if no_fute {
                None
            } else {
                let surrogate =
                    Surrogate::open(&resolve_model_dir(&common.surrogate, &ctx.assets)?)?;
                let name = corpus.clone().expect("clap requires --corpus");
                let u = ctx.workspace.load_corpus(&name)?;
                Some((surrogate, u))
            };
            let space = space_parts.as_ref().map(|(surrogate, u)| FuteSpace {
                store: &store,
                surrogate,
                corpus: u,
                methods: methods
                    .iter()
                    .map(|&m| {
                        let method = common.method(m);
                        (fute::methods::label::row_label(&method), method)
                    })
                    .collect(),
                dte_limit: common.limit,
                centre,
            });
            let mut run =
                fute::report::RunFolder::create(&ctx.workspace.state_dir(), "prompts-evaluate")?;
            let mut reports: Vec<DatasetReport> = Vec::new();
            for ds in &targets {
                let started = std::time::Instant::now();
                let pb = super::spinner(format!("{}: starting", ds.card.name));
                let r = evaluate_dataset(&cached, &set, ds, &cfg, space.as_ref(), &mut |line| {
                    pb.set_message(line)
                })?;
                pb.finish_and_clear();
                run.record(&ds.card.name, started.elapsed().as_secs_f64());
                print_dataset(&r, cfg.metric);
                reports.push(r);
            }
            let stats = cached.stats();
            let summary = summarise(&reports);
            println!(
                "\n{} prompts of `{}` on {} ({}), averaged over {}:",
                set.prompts.len(),
                set.name,
                cached.identity().model,
                cached.identity().kind,
                datasets.join(", ")
            );
            let mut t = Table::new(&["METHOD", "PERFORMANCE", "RATE", "NDCG"]);
            for s in &summary {
                t.row(vec![
                    s.method.clone(),
                    format!("{:.1}", s.performance),
                    format!("{:.1}", s.rate),
                    format!("{:.1}", s.ndcg),
                ]);
            }
            print!("{}", t.render());
            println!(
                "LLM calls: {} answered from the cache, {} made.",
                stats.hits, stats.misses
            );
            let html = run_report(
                &run,
                &set,
                &reports,
                &summary,
                &cfg,
                cached.identity(),
                &corpus,
            )?;
            println!(
                "Report: {} (tables as CSV and JSON beside it)",
                html.display()
            );
            if let Some(path) = json_out {
                let v = serde_json::json!({ "reports": reports, "summary": summary });
                fute_core::fsutil::write_atomic(
                    &path,
                    serde_json::to_string_pretty(&v)?.as_bytes(),
                )?;
                eprintln!("wrote {}", path.display());
            }
            Ok(())
        }
    }
}

use fute_llm::LlmBackend as _;

/// The run folder of `prompts evaluate`: every score (JSON), the summary and each
/// dataset's table (CSV), and report.html with the same tables and the provenance.
fn run_report(
    run: &fute::report::RunFolder,
    set: &PromptSet,
    reports: &[DatasetReport],
    summary: &[fute::prompt_eval::MethodSummary],
    cfg: &PromptEvalConfig,
    llm: fute_llm::BackendIdentity,
    corpus: &Option<String>,
) -> anyhow::Result<PathBuf> {
    use fute::report::{Report, Table as RTable};
    let mut report = Report::new(format!(
        "fute prompts evaluate: prompt set `{}` on {}",
        set.name, llm.model
    ));
    report
        .provenance
        .seeds
        .insert("subsets and embeddings".into(), cfg.seed);
    report
        .provenance
        .hashes
        .insert(format!("LLM {}", llm.model), llm.model_hash.clone());
    report
        .provenance
        .settings
        .insert("split".into(), cfg.split.as_str().into());
    report
        .provenance
        .settings
        .insert("eval limit".into(), cfg.limit.into());
    report.provenance.settings.insert(
        "label settings".into(),
        serde_json::to_value(&cfg.settings)?,
    );
    report
        .provenance
        .settings
        .insert("corpus U".into(), corpus.clone().into());
    let mut t = RTable::new(
        "Averaged over the datasets (×100)",
        &["method", "performance", "rate", "NDCG"],
    );
    for s in summary {
        t.row(vec![
            s.method.clone(),
            format!("{:.1}", s.performance),
            format!("{:.1}", s.rate),
            format!("{:.1}", s.ndcg),
        ]);
    }
    run.write_table("summary.csv", &t)?;
    report.section("Summary").table(t);
    for r in reports {
        let mut header = vec!["method".to_string()];
        header.extend((0..r.truth.len()).map(|p| format!("#{p}")));
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        let mut t = RTable::new(
            format!(
                "{} ({} examples): truth ×100, then each method's rank of each prompt",
                r.dataset, r.examples
            ),
            &header,
        );
        let mut truth = vec!["truth".to_string()];
        truth.extend(r.truth.iter().map(|v| format!("{:.1}", v * 100.0)));
        t.row(truth);
        for (method, scores) in &r.scores {
            let mut row = vec![format!("{method} rank")];
            row.extend(
                fute_core::metrics::ranking::shared_ranks(scores)
                    .iter()
                    .map(|x| x.to_string()),
            );
            t.row(row);
        }
        run.write_table(&format!("{}.csv", r.dataset), &t)?;
        report.section(r.dataset.clone()).table(t);
    }
    run.write_json(
        "reports.json",
        &serde_json::json!({ "reports": reports, "summary": summary }),
    )?;
    run.write_report(&mut report)
}

fn print_dataset(r: &DatasetReport, metric: TaskMetric) {
    let metric = match metric {
        TaskMetric::Accuracy => "accuracy",
        TaskMetric::MacroF1 => "macro-F1",
    };
    println!(
        "\n{} ({} examples): each prompt's {metric} ×100",
        r.dataset, r.examples
    );
    let mut header = vec!["METHOD".to_string()];
    header.extend((0..r.truth.len()).map(|p| format!("#{p}")));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut t = Table::new(&header);
    let mut truth = vec!["truth".to_string()];
    truth.extend(r.truth.iter().map(|v| format!("{:.1}", v * 100.0)));
    t.row(truth);
    for (method, scores) in &r.scores {
        // Each method's ranking of the prompts (1 = chosen).
        let ranks = fute_core::metrics::ranking::shared_ranks(scores);
        let mut row = vec![format!("{method} rank")];
        row.extend(ranks.iter().map(|r| format!("{r}")));
        t.row(row);
    }
    print!("{}", t.render());
    let unscored: Vec<String> = r
        .unscored
        .iter()
        .enumerate()
        .filter(|(_, u)| u.some_labels > 0)
        .map(|(p, u)| format!("#{p} {}/{}", u.some_labels, u.inputs))
        .collect();
    println!(
        "unscored labels (no verbaliser among the tokens the LLM returned): {}",
        if unscored.is_empty() {
            "none".to_string()
        } else {
            unscored.join(", ")
        }
    );
    if !unscored.is_empty() {
        eprintln!(
            "warning: {}: on some inputs a label's verbalisers were not among the returned tokens, \
             so it got the lowest listed score (prompt inputs: {}); ask the server for more top \
             log-probabilities or check the verbalisers",
            r.dataset,
            unscored.join(", ")
        );
    }
    let secs: Vec<String> = r
        .seconds
        .iter()
        .map(|(k, v)| format!("{k} {v:.0} s"))
        .collect();
    println!("wall time: {}", secs.join(", "));
}
