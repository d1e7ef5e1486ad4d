//! `fute demo`: one command from a fresh machine to FUTE's main job on real assets.
//!
//! Steps (each with a progress bar and ETA; every piece cached, so a rerun takes seconds):
//! assets → datasets → corpus U → fine-tuned target models → DTEs (FUTE + TaskEmb,
//! FUTE + TuPaTE, TextEmb) → MTEs of the models → MTEs of SmolLM2 with vanilla and CoT
//! prompts → "which model should I transfer from?" and "which prompt?" with FUTE's picks
//! beside the baselines and the measured truth → task maps → one HTML report.

mod llm;
mod models;
mod reading;

use crate::Context;
use clap::Args;
use fute::methods::fim::{FimComponents, FimConfig};
use fute::methods::peft::PeftMethod;
use fute::methods::surrogate_training::SurrogateTraining;
use fute::methods::Method;
use fute::report::{Report, RunFolder, Table};
use fute::surrogate::Surrogate;
use fute_core::embedding::Store;
use fute_nn::fisher::FisherVariant;
use fute_nn::loss::SoftLoss;
use fute_nn::peft::{PeftConfig, PrefixConfig, Reduce};
use std::path::PathBuf;
use std::time::Instant;

/// Options of the demo.
#[derive(Args)]
#[command(
    after_help = "Full run: about 15 minutes on a 2-core machine once built; --quick: about 2.\n\
A second run finds every model, embedding and LLM answer in the workspace and takes seconds.\n\
The report is .fute/runs/<run-id>/report.html (tables, maps, provenance)."
)]
pub struct DemoArgs {
    /// Also fetch the opt-in BIG-bench tasks (342 MB).
    #[arg(long)]
    bigbench: bool,
    /// A ~2-minute version: fewer examples, two source models, four prompts, 8 reviews.
    #[arg(long)]
    quick: bool,
    /// Also fetch the opt-in Gemma-3-270M (238 MB, Gemma Terms of Use) and put its
    /// prompted MTEs on the maps beside SmolLM2's. Without the flag Gemma joins only
    /// when already fetched (`fute assets fetch gemma3`); `--no-gemma` leaves it out.
    #[arg(long, conflicts_with = "no_gemma")]
    gemma: bool,
    /// Leave Gemma-3-270M out even when it is fetched.
    #[arg(long)]
    no_gemma: bool,
    /// Open the report when done (xdg-open or open; else its path is printed).
    #[arg(long)]
    open: bool,
    /// Rotten Tomatoes test reviews each prompt is measured on (0: skip the LLM steps)
    /// [default: 20, --quick 8].
    #[arg(long)]
    reviews: Option<usize>,
}

/// How big each step is (full or --quick).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Sizes {
    /// Training examples per DTE.
    pub dte_examples: usize,
    /// Inputs of the corpus U the MTEs (models and LLM) are computed on.
    pub u_inputs: usize,
    /// Training examples of each fine-tuned source model.
    pub train_examples: usize,
    /// Epochs of that fine-tuning.
    pub train_epochs: usize,
    /// Target training examples of each transfer run.
    pub transfer_examples: usize,
    /// Target test examples each transfer is measured on.
    pub transfer_eval: usize,
    /// Test reviews each prompt is measured on.
    pub reviews: usize,
    /// Source models (the datasets they are fine-tuned on).
    pub sources: Vec<&'static str>,
    /// Prompts of the built-in SA set (indices; 10–12 are chain-of-thought).
    pub sa_prompts: Vec<usize>,
    /// Prompts of the built-in NLI set.
    pub nli_prompts: Vec<usize>,
    /// Tokens of chain-of-thought reasoning.
    pub cot_tokens: usize,
}

impl Sizes {
    fn new(quick: bool, reviews: Option<usize>) -> Sizes {
        if quick {
            Sizes {
                dte_examples: 24,
                u_inputs: 12,
                train_examples: 48,
                train_epochs: 1,
                transfer_examples: 32,
                transfer_eval: 64,
                reviews: reviews.unwrap_or(8),
                sources: vec!["imdb", "spam-assassin"],
                sa_prompts: vec![0, 10],
                nli_prompts: vec![0, 10],
                cot_tokens: 12,
            }
        } else {
            Sizes {
                dte_examples: 64,
                u_inputs: 32,
                train_examples: 256,
                train_epochs: 3,
                transfer_examples: 96,
                transfer_eval: 200,
                reviews: reviews.unwrap_or(20),
                sources: vec!["imdb", "tweets", "spam-assassin"],
                sa_prompts: vec![0, 1, 2, 10],
                nli_prompts: vec![0, 10],
                cot_tokens: 16,
            }
        }
    }
}

/// The datasets whose DTEs are computed (all packaged, none opt-in).
pub(crate) const DTE_DATASETS: [&str; 5] = [
    "imdb",
    "rotten-tomatoes",
    "tweets",
    "spam-assassin",
    "lee-similarity",
];

/// The target of both questions.
pub(crate) const TARGET: &str = "rotten-tomatoes";

/// Seed of every sample, head and shuffle.
pub(crate) const SEED: u64 = 42;

/// Everything the steps share.
pub(crate) struct Demo<'a> {
    pub ctx: &'a Context,
    pub store: Store,
    pub surrogate: Surrogate,
    pub minilm: PathBuf,
    pub sizes: Sizes,
    pub run: RunFolder,
    pub report: Report,
    /// (row name, method) of the FUTE rows: TaskEmb's Fisher and TuPaTE's prefix.
    pub fute_methods: Vec<(String, Method)>,
    /// TextEmb, the dataset-only baseline.
    pub textemb: Method,
    /// Whether Gemma-3-270M joins the LLM MTEs (when its asset is present).
    pub gemma: bool,
    step: usize,
}

/// Number of numbered steps printed.
const STEPS: usize = 10;

impl Demo<'_> {
    /// Prints the step header and returns a progress bar of `len` units.
    pub fn step(&mut self, what: &str, len: usize) -> indicatif::ProgressBar {
        self.step += 1;
        eprintln!("== {}/{STEPS} {what}", self.step);
        let pb = super::progress_bar(what.to_owned());
        pb.set_length(len as u64);
        pb
    }
}

/// FUTE + TaskEmb: the Fisher of the surrogate fine-tuned on the probe set, FUTE's
/// square-of-mean definition (made explicit; the CLI's default is per-example).
pub(crate) fn fim_method() -> Method {
    Method::Fim(FimConfig {
        training: SurrogateTraining {
            epochs: 1,
            lr: 2e-5,
            batch: 8,
            grad_accum: 1,
            max_len: 64,
            soft_loss: SoftLoss::BceWithLogits,
        },
        variant: FisherVariant::SquareOfMean,
        batch: 8,
        sampled_trials: None,
        components: FimComponents::Encoder,
        layers: None,
        workers: 2,
    })
}

/// FUTE + TuPaTE: a 16-token prefix of the frozen surrogate, mean over layers.
pub(crate) fn prefix_method() -> Method {
    Method::Peft(PeftMethod {
        training: SurrogateTraining {
            epochs: 1,
            lr: 1e-2,
            batch: 8,
            grad_accum: 1,
            max_len: 64,
            soft_loss: SoftLoss::BceWithLogits,
        },
        peft: PeftConfig::Prefix(PrefixConfig {
            len: 16,
            projection: None,
            dropout: 0.1,
        }),
        reduce: Reduce::Layers,
    })
}

/// Fetches the real assets, imports every dataset, builds U, and runs the main job.
pub fn run(ctx: &Context, args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let sizes = Sizes::new(args.quick, args.reviews);
    eprintln!(
        "== 1/{STEPS} fetching the real assets (package registries only; cached by checksum)"
    );
    let mut names: Vec<String> = Vec::new();
    if args.bigbench {
        names.push("bigbench".into());
    }
    if args.gemma {
        names.push("gemma3".into());
    }
    super::assets::fetch(ctx, &names, true, false)?;
    eprintln!("== 2/{STEPS} importing and validating every packaged dataset");
    super::data::list(ctx, false)?;
    let mut run = RunFolder::create(&ctx.workspace.state_dir(), "demo")?;
    run.record("assets and datasets", started.elapsed().as_secs_f64());
    let minilm = ctx.assets.dir("minilm")?;
    let mut demo = Demo {
        ctx,
        store: Store::open(&ctx.workspace.state_dir())?,
        surrogate: Surrogate::open(&minilm)?,
        minilm,
        sizes,
        run,
        report: Report::new(if args.quick {
            "fute demo (--quick): FUTE on real assets"
        } else {
            "fute demo: FUTE on real assets"
        }),
        fute_methods: vec![
            ("FUTE + TaskEmb".into(), fim_method()),
            ("FUTE + TuPaTE".into(), prefix_method()),
        ],
        textemb: Method::TextEmb {
            max_len: 64,
            batch: 16,
        },
        gemma: !args.no_gemma,
        step: 2,
    };
    demo.report
        .provenance
        .seeds
        .insert("everything".into(), SEED);
    demo.report
        .provenance
        .settings
        .insert("sizes".into(), serde_json::to_value(&demo.sizes)?);
    demo.report
        .provenance
        .hashes
        .insert("surrogate (MiniLM)".into(), demo.surrogate.hash.clone());
    for (row, m) in &demo.fute_methods {
        demo.report.provenance.settings.insert(
            format!("{row}: {}", m.name()),
            serde_json::to_value(m.params())?,
        );
    }

    let corpus = models::corpus(&mut demo)?;
    let sources = models::finetune_sources(&mut demo)?;
    let dtes = models::dataset_embeddings(&mut demo)?;
    let model_mtes = models::model_embeddings(&mut demo, &sources, &corpus)?;
    let llm_part = if demo.sizes.reviews > 0 {
        Some(llm::prompted(&mut demo, &corpus)?)
    } else {
        eprintln!("   (--reviews 0: the LLM steps are skipped)");
        None
    };
    let mut answers = vec![models::which_source(
        &mut demo,
        &sources,
        &dtes,
        &model_mtes,
    )?];
    if let Some(l) = &llm_part {
        answers.push(l.answer.clone());
    }
    reading::maps(&mut demo, &dtes, &model_mtes, llm_part.as_ref())?;
    // The answers first: a reader opens the report for them.
    let mut summary = fute::report::Section {
        heading: "Answers".into(),
        blocks: Vec::new(),
    };
    for a in &answers {
        summary.text(a.clone());
        println!("\n{a}");
    }
    summary.text(format!(
        "Everything below was computed on this machine from the packaged assets (MiniLM as the surrogate, SmolLM2-135M-Instruct as the LLM){}; a rerun finds every piece cached.",
        if args.quick { " at --quick sizes" } else { "" }
    ));
    demo.report.sections.insert(0, summary);

    let html = demo.run.write_report(&mut demo.report)?;
    println!(
        "\nReport: {}\n(run folder {}; {:.0} s in all). Try `fute ls`, `fute map --method fim`, `fute prompts evaluate --help`.",
        html.display(),
        demo.run.dir.display(),
        started.elapsed().as_secs_f64()
    );
    if args.open {
        open(&html);
    }
    Ok(())
}

/// Opens `path` with the desktop's opener when there is one; else says where it is.
fn open(path: &std::path::Path) {
    for opener in ["xdg-open", "open"] {
        if let Ok(status) = std::process::Command::new(opener)
            .arg(path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
        {
            if status.success() {
                return;
            }
        }
    }
    println!(
        "(no xdg-open or open here: open {} in a browser)",
        path.display()
    );
}

/// Prints a report table on the terminal.
pub(crate) fn print_table(t: &Table) {
    let header: Vec<&str> = t.header.iter().map(String::as_str).collect();
    let mut out = crate::table::Table::new(&header);
    for r in &t.rows {
        out.row(r.clone());
    }
    println!("\n{}", t.caption);
    print!("{}", out.render());
}
