//! Predicting with a saved task model on a dataset split: metrics and one
//! record per example. Classifier outputs are read as the dataset's labels by
//! name (see [`super::labels`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result};
use fute_core::dataset::{Dataset, Input, Split, Target, TaskSchema};
use fute_core::metrics;
use fute_nn::train::{self, best_span, RawPrediction};
use fute_nn::{models, BuildOptions, HeadSpec, TextTokenizer};
use serde::Serialize;
use serde_json::{json, Value};

use super::labels::{match_labels, model_label_names, LabelMap};
use super::{
    check_max_len, check_model_folder, encode_input, head_for, invalid, sample, MAX_ANSWER_TOKENS,
};

/// Options of [`predict_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictOptions {
    /// The split to predict.
    pub split: Split,
    /// At most this many examples (a fixed seeded sample kept in file order).
    pub limit: Option<usize>,
    /// Examples per batch.
    pub batch_size: usize,
    /// Longest input in tokens (default: the model's positions, at most 512).
    pub max_len: Option<usize>,
    /// Most question tokens kept for extractive QA (HF's `max_query_length`).
    pub max_question_len: usize,
}

/// Metrics and per-example predictions of a model on a dataset split.
#[derive(Debug, Clone, Serialize)]
pub struct PredictReport {
    /// Dataset name.
    pub dataset: String,
    /// The split.
    pub split: Split,
    /// Examples predicted.
    pub examples: usize,
    /// Metric name → value (fractions in `[0, 1]`, correlations in `[−1, 1]`).
    pub metrics: BTreeMap<String, f64>,
    /// Seconds spent (tokenising and predicting).
    pub seconds: f64,
    /// How the model's outputs were read as the dataset's labels
    /// (classification): by name, or by position when the model names none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels_matched: Option<String>,
    /// One JSON object per example: id, input texts, gold, prediction (and
    /// logits for classification, in the dataset's label order).
    #[serde(skip)]
    pub records: Vec<Value>,
}

fn input_json(input: &Input) -> Value {
    match input {
        Input::Single(t) => json!({ "text": t }),
        Input::Pair(a, b) => json!({ "text": a, "text_pair": b }),
        Input::Qa { question, context } => json!({ "question": question, "context": context }),
    }
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// Checks that a saved model's head fits a dataset's task and, for a
/// classifier, how its outputs map onto the dataset's labels: by the names in
/// `config.json`'s `id2label` ([`LabelMap::ByName`]), or by position when the
/// model names no labels and the counts agree.
///
/// # Errors
/// A user error when the head kind differs, when the label names differ (each
/// side's extra labels named), or when an unnamed head has another label count.
pub fn check_head_fits(
    head: HeadSpec,
    config: &serde_json::Value,
    schema: &TaskSchema,
    model_dir: &Path,
    name: &str,
) -> Result<Option<LabelMap>> {
    let want = head_for(schema)?;
    match (head, want) {
        (
            HeadSpec::Classification { num_labels: m },
            HeadSpec::Classification { num_labels: d },
        ) => {
            let dataset_labels = schema.labels().unwrap_or_default();
            let cfg_path = model_dir.join("config.json");
            match model_label_names(config, &cfg_path)? {
                Some(names) if names.len() == m => Ok(Some(match_labels(
                    &names,
                    dataset_labels,
                    &format!("model {}", model_dir.display()),
                    &format!("dataset `{name}`"),
                )?)),
                Some(names) => Err(invalid(format!(
                    "{}: id2label names {} labels but the classifier has {m} outputs",
                    cfg_path.display(),
                    names.len()
                ))),
                None if m == d => Ok(Some(LabelMap::ByPosition)),
                None => Err(invalid(format!(
                    "model {} has {m} labels (num_labels in config.json) but dataset `{name}` has {d} \
                     ({}); use a model trained on this dataset or one with the same labels",
                    model_dir.display(),
                    dataset_labels.join(", ")
                ))),
            }
        }
        (h, w) if h == w => Ok(None),
        (h, _) => Err(invalid(format!(
            "model {} has a {} head but dataset `{name}` is a {} task",
            model_dir.display(),
            describe(h),
            schema.short_name()
        ))),
    }
}

fn describe(h: HeadSpec) -> String {
    match h {
        HeadSpec::Classification { num_labels } => format!("{num_labels}-class classification"),
        HeadSpec::Regression => "regression".into(),
        HeadSpec::QuestionAnswering => "question-answering".into(),
    }
}

/// Runs the task model saved in `model_dir` on `split` of `dataset` (at most
/// `limit` examples, a fixed seeded sample kept in file order), truncating
/// inputs to `max_len` tokens (default: the model's positions, at most 512).
/// [`predict_with`] with HF's default question cap for QA.
pub fn predict(
    dataset: &Dataset,
    model_dir: &Path,
    split: Split,
    limit: Option<usize>,
    batch_size: usize,
    max_len: Option<usize>,
) -> Result<PredictReport> {
    let opts = PredictOptions {
        split,
        limit,
        batch_size,
        max_len,
        max_question_len: fute_nn::tokenize::DEFAULT_MAX_QUESTION_LEN,
    };
    predict_with(dataset, model_dir, &opts)
}

/// Runs the task model saved in `model_dir` on a split of `dataset` as
/// `opts` say: metrics and one record per example.
///
/// # Errors
/// User errors for a model folder that lacks a file or a task head, a head
/// that does not fit the dataset (kind, label names), a `max_len` beyond the
/// model's positions, or an empty split.
pub fn predict_with(
    dataset: &Dataset,
    model_dir: &Path,
    opts: &PredictOptions,
) -> Result<PredictReport> {
    let (split, limit) = (opts.split, opts.limit);
    let started = Instant::now();
    let name = &dataset.card.name;
    check_model_folder(model_dir, "model")?;
    let cfg_path = model_dir.join("config.json");
    let (config, _) = models::read_config(&cfg_path)?;
    let head = models::task_head(model_dir)
        .map_err(anyhow::Error::from)
        .context("train a task model with `fute train`")?;
    let schema = &dataset.card.schema;
    let label_map = check_head_fits(head, &config, schema, model_dir, name)?;
    let model = models::load(model_dir, head, &BuildOptions::default())?;
    let max_pos = model.describe().max_positions;
    let max_len = opts.max_len.unwrap_or(max_pos.min(512));
    check_max_len(max_len, max_pos, model_dir)?;
    let examples = sample(dataset.split(split), limit, 0);
    if examples.is_empty() {
        return Err(invalid(format!(
            "split `{split}` of dataset `{name}` has no examples{}",
            if limit == Some(0) { " (--limit 0)" } else { "" }
        )));
    }
    let tok = TextTokenizer::from_folder(model_dir)?;
    let encodings = examples
        .iter()
        .map(|ex| encode_input(&tok, &ex.input, max_len, opts.max_question_len))
        .collect::<Result<Vec<_>>>()?;
    let raw = train::predict(model.as_ref(), &encodings, tok.pad_id(), opts.batch_size)?;

    let mut metrics_out = BTreeMap::new();
    let mut records = Vec::with_capacity(examples.len());
    match schema {
        TaskSchema::Classification { labels, .. } => {
            let (mut pred, mut gold) = (Vec::new(), Vec::new());
            for (ex, r) in examples.iter().zip(&raw) {
                let (RawPrediction::Logits(l), Target::Label(g)) = (r, &ex.target) else {
                    return Err(invalid(format!("example `{}` has no class label", ex.id)));
                };
                // Output i of the model is the dataset label its name says.
                let map = label_map.as_ref().unwrap_or(&LabelMap::ByPosition);
                let l = map.to_dataset_order(l);
                let p = argmax(&l);
                let mut rec = input_json(&ex.input);
                rec["id"] = json!(ex.id);
                rec["gold"] = json!(g);
                rec["gold_label"] = json!(labels[*g]);
                rec["pred"] = json!(p);
                rec["pred_label"] = json!(labels[p]);
                rec["logits"] = json!(l);
                records.push(rec);
                pred.push(p);
                gold.push(*g);
            }
            let k = labels.len();
            metrics_out.insert("accuracy".into(), metrics::accuracy(&pred, &gold));
            metrics_out.insert("macro_f1".into(), metrics::macro_f1(&pred, &gold, k));
            metrics_out.insert("mcc".into(), metrics::matthews(&pred, &gold, k));
        }
        TaskSchema::Regression { .. } => {
            let (mut pred, mut gold) = (Vec::new(), Vec::new());
            for (ex, r) in examples.iter().zip(&raw) {
                let (RawPrediction::Score(s), Target::Value(g)) = (r, &ex.target) else {
                    return Err(invalid(format!("example `{}` has no value", ex.id)));
                };
                let mut rec = input_json(&ex.input);
                rec["id"] = json!(ex.id);
                rec["gold"] = json!(g);
                rec["pred"] = json!(s);
                records.push(rec);
                pred.push(f64::from(*s));
                gold.push(*g);
            }
            let mse = pred
                .iter()
                .zip(&gold)
                .map(|(p, g)| (p - g).powi(2))
                .sum::<f64>()
                / pred.len() as f64;
            metrics_out.insert("pearson".into(), metrics::pearson(&pred, &gold));
            metrics_out.insert("spearman".into(), metrics::spearman(&pred, &gold));
            metrics_out.insert("mse".into(), mse);
        }
        TaskSchema::ExtractiveQa => {
            let (mut em, mut f1) = (0.0, 0.0);
            for ((ex, r), enc) in examples.iter().zip(&raw).zip(&encodings) {
                let (
                    RawPrediction::Span { start, end },
                    Target::Span(g),
                    Input::Qa { context, .. },
                ) = (r, &ex.target, &ex.input)
                else {
                    return Err(invalid(format!("example `{}` is not a QA example", ex.id)));
                };
                let pred_text = best_span(enc, start, end, MAX_ANSWER_TOKENS)
                    .and_then(|(s, e)| enc.token_span_to_char_span(s, e))
                    .map(|(a, b)| context.chars().skip(a).take(b - a).collect::<String>())
                    .unwrap_or_default();
                let gold_text = g.as_ref().map(|a| a.text.clone()).unwrap_or_default();
                em += metrics::squad_exact_match(&pred_text, &gold_text);
                f1 += metrics::squad_f1(&pred_text, &gold_text);
                let mut rec = input_json(&ex.input);
                rec["id"] = json!(ex.id);
                rec["gold"] = json!(gold_text);
                rec["pred"] = json!(pred_text);
                records.push(rec);
            }
            let n = examples.len() as f64;
            metrics_out.insert("exact_match".into(), em / n);
            metrics_out.insert("f1".into(), f1 / n);
        }
    }
    Ok(PredictReport {
        dataset: name.clone(),
        split,
        examples: examples.len(),
        metrics: metrics_out,
        seconds: started.elapsed().as_secs_f64(),
        labels_matched: label_map.map(|m| m.describe().to_owned()),
        records,
    })
}

/// Writes `records` as JSON lines to `path` atomically.
pub fn write_jsonl(path: &Path, records: &[Value]) -> Result<()> {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    fute_core::fsutil::write_atomic(path, text.as_bytes())?;
    Ok(())
}
