//! `fute predict`: run a fine-tuned model on a dataset split and score it.

use std::path::PathBuf;

use super::{print_json, spinner};
use crate::Context;
use clap::Args;
use fute::finetune::{predict_with, write_jsonl, PredictOptions};
use fute_core::dataset::Split;

/// Arguments of `fute predict`.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    fute predict --model runs/imdb-minilm --dataset imdb --split dev --limit 500 --max-len 128\n  \
    fute predict --model qa-model --dataset disfl-qa --out preds.jsonl --json\n\n\
    A classifier's outputs are read as the dataset's labels by name (config.json's id2label); \
    a model whose labels differ from the dataset's is refused.\n\n\
    Metrics: accuracy, macro-F1 and Matthews correlation (classification); Pearson, Spearman \
    and MSE (regression); SQuAD exact match and F1 (extractive QA). --out writes one JSON \
    object per example: id, input texts, gold, prediction (and logits for classification).")]
pub struct PredictArgs {
    /// Fine-tuned model folder (from `fute train`, or any HF BertForSequenceClassification / BertForQuestionAnswering folder).
    #[arg(long, value_name = "DIR")]
    pub model: String,
    /// Dataset to predict on (see `fute data list`).
    #[arg(long)]
    pub dataset: String,
    /// Split: train, dev or test.
    #[arg(long, default_value = "dev")]
    pub split: Split,
    /// Predict at most N examples (a fixed seeded sample, kept in file order).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Longest input in tokens (default: the model's maximum, at most 512); use the
    /// --max-len the model was trained with to predict as in training.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Extractive QA: most question tokens kept (as in `fute train`).
    #[arg(long, default_value_t = fute_nn::tokenize::DEFAULT_MAX_QUESTION_LEN, value_name = "N")]
    pub max_question_len: usize,
    /// Examples per batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Write the predictions as JSON lines to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the metrics as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `fute predict`.
pub fn run(ctx: &Context, a: PredictArgs) -> anyhow::Result<()> {
    let model = super::train::resolve_model(ctx, &a.model)?;
    let dataset = ctx.workspace.load_dataset(&a.dataset)?;
    let sp = spinner(format!("predicting {} {}", a.dataset, a.split));
    let opts = PredictOptions {
        split: a.split,
        limit: a.limit,
        batch_size: a.batch.max(1),
        max_len: a.max_len,
        max_question_len: a.max_question_len.max(1),
    };
    let result = predict_with(&dataset, &model, &opts);
    sp.finish_and_clear();
    let report = result?;
    if let Some(how) = report.labels_matched.as_deref() {
        if how.starts_with("by position") {
            eprintln!(
                "warning: labels matched {how}; output i is taken as the dataset's label i ({})",
                dataset.card.schema.labels().unwrap_or_default().join(", ")
            );
        }
    }
    if let Some(out) = &a.out {
        write_jsonl(out, &report.records)?;
    }
    if a.json {
        return print_json(&report);
    }
    println!(
        "{} on {} {} ({} examples, {:.1} s):",
        model.display(),
        report.dataset,
        report.split,
        report.examples,
        report.seconds
    );
    for (k, v) in &report.metrics {
        println!("  {k:<12} {v:.4}");
    }
    if let Some(out) = &a.out {
        println!("predictions written to {}", out.display());
    }
    Ok(())
}
