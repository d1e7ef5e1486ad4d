//! `fute bench`: hot paths on the real models, side by side with PyTorch and a
//! llama.cpp server in one invocation.

use std::path::PathBuf;

use clap::Args;

use super::{print_json, user};
use crate::Context;

/// Arguments of `fute bench`.
#[derive(Args)]
#[command(after_help = "\
Rows (MiniLM rows: real IMDB reviews of 128 tokens, labels alternating; each row runs \
fute, then the peer, on the same token ids):
  train-b8, train-b32        full fine-tuning step (forward, backward, AdamW), 3 / 2 steps after 1 warm-up
  fisher-per-example         diagonal Fisher, all encoder parameters, 16 examples (fute: THREADS workers)
  fisher-per-batch-b8        per-batch Fisher (Vu et al.), 16 examples
  fisher-square-of-mean-b8   square of the mean gradient (FUTE code), 16 examples
  peft-prefix-b8, peft-prompt-b8, peft-lora-b8, peft-bitfit-b8
                             PEFT training steps (16 positions; LoRA r=8 on query/value), 3 steps
  textemb-b32                eval forward + masked mean pooling, 3 batches of 32
  llm-labels, llm-perplexity SmolLM2, 13 sentiment prompts x --llm-inputs reviews (48 words each);
                             chain-of-thought round 1 capped at 24 tokens; fute runs THREADS calls
                             at once (then the same calls one at a time, in the note), the server
                             one request at a time on its own threads
Arch rows (opt-in: --arch-rows, or --only arch / --only ID; one folder per architecture, config.json + model.safetensors written by fute to a temp folder, which fute and the peer both load; seeded random token ids, B=8, T=128, 2 labels):
  arch-ARCH-train-b8              full fine-tuning step, 2 steps after 1 warm-up
  arch-ARCH-fisher-per-batch-b8   per-batch Fisher, all encoder/decoder parameters, 16 examples
  ARCH: roberta, distilbert, gpt2 (randomly initialised, seed 12, at the roberta-base, distilbert-base-uncased and gpt2 (small) shapes: no weights are packaged), llama (the packaged SmolLM2-135M GGUF, dequantised to f32), t5 (randomly initialised at the t5-base shape, the FUTE surrogate; each row of ids ends with its eos). With --peer they take about 15-20 minutes on 2 cores (more with t5); \
arch-llama-fisher-per-batch-b8 peaks at about 9 GB of memory in fute (2 workers, each holding one batch's graph).
Before each timed run the machine's load is sampled from /proc/stat; it is recorded with \
the row (other processes' CPU before and during), so figures from a busy machine say so.
With --peer and --llm-server, the default rows take about 4-6 minutes on 2 cores.

Examples:
  fute bench --peer /path/to/venv/bin/python --llm-server http://127.0.0.1:8765 --json-out bench.json
  fute bench --only train-b8,peft-prompt-b8 --peer python3
  fute bench --only arch --peer /path/to/venv/bin/python --json-out arch.json
  fute bench --from-json bench.json --markdown     # the README table from a saved run")]
pub struct BenchArgs {
    /// Python with torch + transformers to run the same workloads as the peer.
    #[arg(long, value_name = "PYTHON")]
    peer: Option<PathBuf>,
    /// URL of a llama.cpp (OpenAI-compatible) server serving the packaged SmolLM2 GGUF.
    #[arg(long, value_name = "URL")]
    llm_server: Option<String>,
    /// Threads of each side: fute's matmul pool, Fisher workers and GGUF backend workers
    /// (LLM calls at once), torch's intra-op threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Only these rows (comma-separated ids; see below).
    #[arg(long, value_delimiter = ',', value_name = "ROWS")]
    only: Option<Vec<String>>,
    /// Reviews per prompt in the LLM rows (13 prompts each).
    #[arg(long, default_value_t = 2)]
    llm_inputs: usize,
    /// BERT folder to run instead of the packaged MiniLM.
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Also run the arch rows (per architecture; see below), after the default rows.
    #[arg(long)]
    arch_rows: bool,
    /// Model folder for the arch rows of one architecture instead of the
    /// base-size one fute writes (repeatable), e.g. `gpt2=/models/tiny-gpt2`.
    #[arg(long, value_name = "ARCH=DIR", value_parser = parse_arch_model)]
    arch_model: Vec<(String, PathBuf)>,
    /// One timed unit per row and no warm-up: a smoke test, not a measurement.
    #[arg(long)]
    quick: bool,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report here.
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,
    /// Print the Markdown table (the README's performance section).
    #[arg(long)]
    markdown: bool,
    /// Render a saved JSON report instead of running (with --markdown or --json).
    #[arg(long, value_name = "FILE")]
    from_json: Option<PathBuf>,
}

/// Runs `fute bench`.
pub fn run(ctx: &Context, args: BenchArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.from_json {
        let text = std::fs::read_to_string(path)
            .map_err(|e| user(format!("cannot read {}: {e}", path.display())))?;
        let report: fute::bench::BenchReport = serde_json::from_str(&text).map_err(|e| {
            user(format!(
                "{} is not a `fute bench --json` report: {e}",
                path.display()
            ))
        })?;
        return show(&report, &args);
    }
    if args.threads == 0 {
        return Err(user("--threads must be at least 1"));
    }
    // Before the first candle or rayon op: the matmul pool's size. candle
    // otherwise counts *physical* cores, which a VM with hyper-threads
    // reports as half the vCPUs.
    std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
    let model_dir = match &args.model {
        Some(d) => d.clone(),
        None => ctx.assets.dir("minilm").map_err(|e| user(e.to_string()))?,
    };
    let reviews = ctx
        .assets
        .dir("imdb")
        .map_err(|e| user(e.to_string()))?
        .join("reviews.json");
    let gguf = ctx
        .assets
        .dir("smollm2")
        .ok()
        .map(|d| d.join(fute_llm::gguf::SMOLLM2_FILE));
    let opts = fute::bench::BenchOptions {
        model_dir,
        reviews,
        gguf,
        threads: args.threads,
        peer_python: args.peer.clone(),
        llm_server: args.llm_server.clone(),
        only: args.only.clone(),
        llm_inputs: args.llm_inputs.max(1),
        quick: args.quick,
        arch_rows: args.arch_rows,
        arch_models: args.arch_model.clone(),
    };
    let report = fute::bench::run(&opts, &mut |line| eprintln!("{line}"))?;
    if let Some(path) = &args.json_out {
        let text = serde_json::to_string_pretty(&report)?;
        fute_core::fsutil::write_atomic(path, text.as_bytes())?;
    }
    show(&report, &args)
}

/// `ARCH=DIR` of `--arch-model`.
fn parse_arch_model(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((a, d)) if !a.is_empty() && !d.is_empty() => Ok((a.to_string(), PathBuf::from(d))),
        _ => Err(format!("`{s}` is not ARCH=DIR (e.g. gpt2=/models/gpt2)")),
    }
}

fn show(report: &fute::bench::BenchReport, args: &BenchArgs) -> anyhow::Result<()> {
    if args.json {
        print_json(report)
    } else {
        // The table is the same either way; --markdown is accepted for clarity.
        print!("{}", report.markdown());
        Ok(())
    }
}
