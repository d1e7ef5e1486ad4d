//! `fute train`: fine-tune a model of any registered architecture (or a
//! Llama-family GGUF such as the packaged SmolLM2) on a dataset.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{print_json, user};
use crate::Context;
use clap::Args;
use fute::finetune::{finetune, state_dir_for, Control, Event, FinetuneOptions, Tuning};
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `fute train`.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
        fute train --base minilm --dataset imdb --out runs/imdb-minilm --limit 2000 --epochs 1 --batch 16 --lr 5e-5\n  \
        fute train --base ./my-bert --dataset my-qa --out qa-model --max-len 256 --patience 2\n  \
        fute train --base smollm2 --dataset imdb --out runs/imdb-smollm2 --limit 2000 --epochs 1 --batch 8\n\n\
        The model is saved as a Hugging Face folder (config.json with id2label/label2id/problem_type, \
        model.safetensors, tokenizer files) that `transformers` loads as its architecture's \
        …ForSequenceClassification or …ForQuestionAnswering. A GGUF base (the `smollm2` asset, or a \
        Llama-family .gguf file) is converted once into a Hugging Face folder under .fute/bases/ \
        (weights dequantised to f32, the GGUF's own tokenizer) and trained with LoRA unless \
        --method full is given; the adapters are merged into the saved weights. Training state is checkpointed every epoch in a hidden folder \
        beside --out: rerun the same command after an interruption to resume.")]
pub struct TrainArgs {
    /// Base model: a Hugging Face folder (config.json, model.safetensors, tokenizer.json), a Llama-family .gguf file, or a fetched asset name (e.g. minilm, smollm2).
    #[arg(long, value_name = "DIR|ASSET")]
    pub base: String,
    /// Dataset to train on (its train split; dev split for evaluation). See `fute data list`.
    #[arg(long)]
    pub dataset: String,
    /// Folder to save the fine-tuned model in (replaced atomically at the end).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Passes over the training data.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Peak learning rate (AdamW) [default: 2e-5 with --method full, 2e-4 with lora].
    #[arg(long)]
    pub lr: Option<f64>,
    /// What to train: `full` (every weight) or `lora` (rank-8 adapters and the head; merged into
    /// the weights when saved) [default: lora for a GGUF base, full otherwise].
    #[arg(long, value_name = "full|lora")]
    pub method: Option<String>,
    /// Examples per batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Longest input in tokens; longer inputs are truncated. At most the base model's positions.
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Extractive QA: most question tokens kept (longer questions are cut, as HF's
    /// max_query_length; a question also keeps at most half of --max-len).
    #[arg(long, default_value_t = fute_nn::tokenize::DEFAULT_MAX_QUESTION_LEN, value_name = "N")]
    pub max_question_len: usize,
    /// Seed of sampling, shuffling, dropout and the new head.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Train on at most N training examples (a seeded sample).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Evaluate on at most N dev examples each epoch (a seeded sample).
    #[arg(long, value_name = "N")]
    pub eval_limit: Option<usize>,
    /// Stop after P epochs without dev improvement (the best weights are kept).
    #[arg(long, value_name = "P")]
    pub patience: Option<usize>,
    /// Accumulate gradients over K batches per optimiser step.
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub grad_accum: usize,
    /// Fraction of steps spent warming the learning rate up.
    #[arg(long, default_value_t = 0.05)]
    pub warmup: f64,
    /// Decoupled weight decay (not applied to biases and LayerNorm).
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0 = no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Also checkpoint every N optimiser steps (epoch ends always are).
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A model folder given as a path, or the folder of a fetched asset.
pub fn resolve_model(ctx: &Context, spec: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    if !spec.contains(['/', '\\']) && fute_core::assets::catalogue::find(spec).is_ok() {
        return Ok(ctx.assets.dir(spec)?);
    }
    Err(user(format!(
        "model `{spec}` is neither a folder nor a known asset name (e.g. minilm; see `fute assets list`)"
    )))
}

/// Runs `fute train`.
pub fn run(ctx: &Context, a: TrainArgs) -> anyhow::Result<()> {
    if a.epochs == 0 || a.batch == 0 || a.grad_accum == 0 || a.max_question_len == 0 {
        return Err(user(
            "--epochs, --batch, --grad-accum and --max-question-len must be at least 1",
        ));
    }
    if !(0.0..1.0).contains(&a.warmup) {
        return Err(user("--warmup is a fraction in [0, 1)"));
    }
    let base = resolve_model(ctx, &a.base)?;
    let gguf = fute::finetune::gguf_base::gguf_file_of(&base)?;
    let tuning = match (a.method.as_deref(), &gguf) {
        (Some("full"), _) | (None, None) => Tuning::Full,
        (Some("lora"), _) | (None, Some(_)) => Tuning::lora(),
        (Some(other), _) => {
            return Err(user(format!("--method `{other}`: use full or lora")));
        }
    };
    let lr = a.lr.unwrap_or(match tuning {
        Tuning::Full => 2e-5,
        Tuning::Lora { .. } => 2e-4,
    });
    let dataset = ctx.workspace.load_dataset(&a.dataset)?;
    let base = match &gguf {
        Some(file) => fute::finetune::gguf_base::prepare(
            file,
            &ctx.workspace.state_dir().join("bases"),
            &mut |dir| {
                eprintln!(
                    "converting {} to a Hugging Face folder in {} (once)",
                    file.display(),
                    dir.display()
                )
            },
        )?,
        None => base,
    };
    let opts = FinetuneOptions {
        epochs: a.epochs,
        lr,
        batch_size: a.batch,
        max_len: a.max_len,
        seed: a.seed,
        limit: a.limit,
        eval_limit: a.eval_limit,
        patience: a.patience,
        grad_accum: a.grad_accum,
        warmup: a.warmup,
        weight_decay: a.weight_decay,
        max_grad_norm: (a.max_grad_norm > 0.0).then_some(a.max_grad_norm),
        checkpoint_every: a.checkpoint_every,
        fresh_head: false,
        max_question_len: a.max_question_len,
        tuning,
    };
    let started = Instant::now();
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "{bar:30.cyan/blue} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let mut ema: Option<f64> = None;
    let epochs = a.epochs;
    let say = |pb: &ProgressBar, line: String| {
        if pb.is_hidden() {
            eprintln!("{line}");
        } else {
            pb.println(line);
        }
    };
    let mut on_event = |e: &Event| {
        match e {
            Event::Start {
                total_steps,
                done_steps,
                examples_per_epoch,
                resumed,
            } => {
                pb.set_length(*total_steps as u64);
                pb.set_position(*done_steps as u64);
                pb.reset_eta();
                if *resumed {
                    say(
                        &pb,
                        format!(
                            "resuming from the checkpoint in {} at step {done_steps}/{total_steps}",
                            state_dir_for(&a.out).display()
                        ),
                    );
                }
                say(&pb, format!(
                    "training on {examples_per_epoch} examples × {epochs} epochs ({total_steps} steps)"
                ));
            }
            Event::Step {
                step,
                epoch,
                loss,
                examples,
                elapsed,
                ..
            } => {
                let smooth = ema.map_or(*loss, |m| 0.9 * m + 0.1 * loss);
                ema = Some(smooth);
                pb.set_position(*step as u64);
                pb.set_message(format!(
                    "epoch {}/{epochs}  loss {smooth:.4}  {:.1} ex/s",
                    epoch + 1,
                    *examples as f64 / elapsed.max(1e-9)
                ));
            }
            Event::Epoch(r) => {
                let dev = match (r.dev_loss, r.dev_score) {
                    (Some(l), Some(s)) => format!("  dev loss {l:.4}  dev score {s:.4}"),
                    _ => String::new(),
                };
                say(
                    &pb,
                    format!("epoch {}: train loss {:.4}{dev}", r.epoch, r.train_loss),
                );
            }
            Event::Checkpoint { .. } => {}
        }
        Control::Continue
    };
    let result = finetune(&dataset, &base, &a.out, &opts, &mut on_event);
    pb.finish_and_clear();
    let report = result?;
    if let Some(w) = &report.warning {
        // On stderr whatever the output format; also in the model folder's fute_train.json.
        eprintln!("warning: {w}");
    }
    if a.json {
        return print_json(&report);
    }
    let t = &report.train;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "trained {} on {} ({} train / {} dev examples): {} epochs, {} steps in {:.0} s ({:.1} ex/s)",
        a.base,
        a.dataset,
        report.train_examples,
        report.dev_examples,
        t.epochs_done,
        t.steps,
        secs,
        t.examples as f64 / t.seconds.max(1e-9)
    );
    if let (Some(e), Some(s)) = (t.best_epoch, t.best_score) {
        println!(
            "best dev score {s:.4} at epoch {e}{}",
            if t.stopped_early {
                " (stopped early)"
            } else {
                ""
            }
        );
    }
    println!("{}", report.head_init);
    if let Some(c) = &report.dev_check {
        println!("{}", c.summary());
    }
    if let Some(out) = &report.out {
        println!("saved to {}", out.display());
        println!(
            "next: fute predict --model {} --dataset {} --split dev",
            out.display(),
            a.dataset
        );
    }
    Ok(())
}
