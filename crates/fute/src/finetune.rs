//! Fine-tuning a Hugging Face BERT folder on a [`Dataset`] and predicting with
//! the result: the glue between `fute-core` datasets and `fute-nn` training.
//!
//! * [`finetune`]: dataset + base folder → tokenised examples (single text,
//!   pair, or QA with the context truncated) → [`fute_nn::train::train`] →
//!   an HF folder at `out` (`config.json` with `num_labels`, `id2label`,
//!   `label2id`, `problem_type`; tokenizer files copied), written atomically.
//!   Training state is checkpointed beside `out` (see [`state_dir_for`]) so a
//!   rerun with the same options resumes an interrupted run; it is removed once
//!   the model is saved.
//! * [`predict`]: a saved task folder on a dataset split → metrics (accuracy,
//!   macro-F1, MCC; Pearson, Spearman, MSE; SQuAD EM and F1) and one JSON record
//!   per example.
//!
//! Errors a user can fix (missing files, label count mismatch, empty split)
//! are [`fute_core::Error::Invalid`], so the CLI reports them with exit code 1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result};
use fute_core::dataset::{Dataset, Example, Input, Split, Target, TaskSchema};
use fute_core::metrics;
use fute_nn::checkpoint::SaveOptions;
use fute_nn::train::{
    self, answer_positions, best_span, RawPrediction, TrainConfig, TrainExample, TrainReport,
    TrainTarget,
};
use fute_nn::{
    models, BuildOptions, Encoding, HeadSpec, TaskModel, TextInput, TextTokenizer, Truncation,
};
use serde::Serialize;
use serde_json::{json, Value};

pub use fute_nn::train::{Control, EpochRecord, Event};

/// Longest answer (in tokens) a QA prediction may have (HF's `max_answer_length`).
pub const MAX_ANSWER_TOKENS: usize = 30;

/// Files a base or saved model folder must hold, with what each is for.
pub const MODEL_FILES: [(&str, &str); 3] = [
    ("config.json", "model configuration"),
    ("model.safetensors", "weights"),
    ("tokenizer.json", "tokenizer"),
];

/// Options of [`finetune`] (defaults as `fute train`).
#[derive(Debug, Clone, PartialEq)]
pub struct FinetuneOptions {
    /// Passes over the training data.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Examples per batch.
    pub batch_size: usize,
    /// Longest input in tokens (special tokens included).
    pub max_len: usize,
    /// Seed of sampling, shuffling, dropout and the fresh head.
    pub seed: u64,
    /// Train on at most this many training examples (a seeded sample).
    pub limit: Option<usize>,
    /// Evaluate on at most this many dev examples (a seeded sample).
    pub eval_limit: Option<usize>,
    /// Early-stopping patience in epochs; `None` = train all epochs.
    pub patience: Option<usize>,
    /// Micro-batches per optimiser step.
    pub grad_accum: usize,
    /// Warm-up fraction of all steps.
    pub warmup: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Gradient-norm limit (`None` = no clipping).
    pub max_grad_norm: Option<f64>,
    /// Checkpoint every this many steps besides every epoch end.
    pub checkpoint_every: Option<usize>,
    /// Always start from a freshly initialised head, even when `base` is a task
    /// model with a head of the right shape (intermediate-task transfer; see
    /// [`fute_nn::BuildOptions::fresh_head`]). `false` reuses a matching head.
    pub fresh_head: bool,
}

impl Default for FinetuneOptions {
    fn default() -> Self {
        Self {
            epochs: 3,
            lr: 2e-5,
            batch_size: 32,
            max_len: 128,
            seed: 42,
            limit: None,
            eval_limit: None,
            patience: None,
            grad_accum: 1,
            warmup: 0.05,
            weight_decay: 0.01,
            max_grad_norm: Some(1.0),
            checkpoint_every: None,
            fresh_head: false,
        }
    }
}

/// What [`finetune`] did.
#[derive(Debug, Clone, Serialize)]
pub struct FinetuneReport {
    /// Where the model was saved (absent when the run was interrupted).
    pub out: Option<PathBuf>,
    /// Training examples used.
    pub train_examples: usize,
    /// Dev examples evaluated every epoch (0 = no dev split).
    pub dev_examples: usize,
    /// The head trained.
    pub head: String,
    /// The training loop's report.
    pub train: TrainReport,
}

fn invalid(msg: impl Into<String>) -> anyhow::Error {
    fute_core::Error::Invalid(msg.into()).into()
}

/// Checks that `dir` is a model folder with every file of [`MODEL_FILES`].
pub fn check_model_folder(dir: &Path, role: &str) -> Result<()> {
    if !dir.is_dir() {
        return Err(invalid(format!(
            "{role} {} is not a folder; give a Hugging Face model folder (config.json, \
             model.safetensors, tokenizer.json) or a fetched asset name such as `minilm`",
            dir.display()
        )));
    }
    for (file, what) in MODEL_FILES {
        if !dir.join(file).is_file() {
            return Err(invalid(format!(
                "{role} {} has no {file} ({what}); a model folder needs config.json, \
                 model.safetensors and tokenizer.json",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// The head a dataset's task needs.
pub fn head_for(schema: &TaskSchema) -> Result<HeadSpec> {
    match schema {
        TaskSchema::Classification { labels, .. } if labels.len() < 2 => Err(invalid(format!(
            "a classification dataset needs at least 2 labels, this one has {}",
            labels.len()
        ))),
        TaskSchema::Classification { labels, .. } => Ok(HeadSpec::Classification {
            num_labels: labels.len(),
        }),
        TaskSchema::Regression { .. } => Ok(HeadSpec::Regression),
        TaskSchema::ExtractiveQa => Ok(HeadSpec::QuestionAnswering),
    }
}

/// The folder where [`finetune`] keeps its resumable training state for output
/// folder `out`: the hidden sibling `.<name>.fute-train`.
pub fn state_dir_for(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    parent.join(format!(".{name}.fute-train"))
}

/// At most `limit` of `examples`: a sample seeded by `seed`, kept in file order.
pub fn sample(examples: Vec<&Example>, limit: Option<usize>, seed: u64) -> Vec<&Example> {
    match limit {
        Some(k) if k < examples.len() => {
            let mut idx = train::data::epoch_order(examples.len(), seed, usize::MAX);
            idx.truncate(k);
            idx.sort_unstable();
            idx.into_iter().map(|i| examples[i]).collect()
        }
        _ => examples,
    }
}

fn text_input(input: &Input) -> (TextInput<'_>, Truncation) {
    match input {
        Input::Single(t) => (TextInput::Single(t), Truncation::LongestFirst),
        Input::Pair(a, b) => (TextInput::Pair(a, b), Truncation::LongestFirst),
        Input::Qa { question, context } => {
            (TextInput::Pair(question, context), Truncation::OnlySecond)
        }
    }
}

/// Tokenises one example's input (QA keeps the question and cuts the context).
pub fn encode_input(tok: &TextTokenizer, input: &Input, max_len: usize) -> Result<Encoding> {
    let (t, trunc) = text_input(input);
    Ok(tok.encode(t, max_len, trunc)?)
}

/// Tokenises examples and maps their targets for the head: class index, value,
/// or the answer's token span (`(0, 0)` when unanswerable or truncated away).
pub fn encode_examples(
    tok: &TextTokenizer,
    examples: &[&Example],
    max_len: usize,
) -> Result<Vec<TrainExample>> {
    examples
        .iter()
        .map(|ex| {
            let encoding = encode_input(tok, &ex.input, max_len)
                .with_context(|| format!("example `{}`", ex.id))?;
            let target = match &ex.target {
                Target::Label(l) => TrainTarget::Label(*l as u32),
                Target::Value(v) => TrainTarget::Value(*v as f32),
                Target::Span(None) => TrainTarget::Span { start: 0, end: 0 },
                Target::Span(Some(a)) => {
                    answer_positions(&encoding, a.start, a.start + a.text.chars().count())
                }
            };
            Ok(TrainExample { encoding, target })
        })
        .collect()
}

/// Fine-tunes the model in `base` on `dataset`'s train split (evaluating on its
/// dev split every epoch) and saves it at `out`. See the module documentation.
pub fn finetune(
    dataset: &Dataset,
    base: &Path,
    out: &Path,
    opts: &FinetuneOptions,
    on_event: &mut dyn FnMut(&Event) -> Control,
) -> Result<FinetuneReport> {
    check_model_folder(base, "base model")?;
    let name = &dataset.card.name;
    let head = head_for(&dataset.card.schema)?;
    let train_split = sample(dataset.split(Split::Train), opts.limit, opts.seed);
    if train_split.is_empty() {
        return Err(invalid(format!(
            "dataset `{name}` has no training examples{}",
            if opts.limit == Some(0) {
                " (--limit 0)"
            } else {
                ""
            }
        )));
    }
    let dev_split = sample(dataset.split(Split::Dev), opts.eval_limit, opts.seed);

    let tok = TextTokenizer::from_folder(base)?;
    let train_set = encode_examples(&tok, &train_split, opts.max_len)?;
    let dev_set = encode_examples(&tok, &dev_split, opts.max_len)?;
    let build = BuildOptions {
        seed: opts.seed,
        fresh_head: opts.fresh_head,
        ..Default::default()
    };
    let model = models::load(base, head, &build)?;
    let max_pos = model.describe().max_positions;
    if opts.max_len > max_pos {
        return Err(invalid(format!(
            "--max-len {} exceeds the model's {max_pos} positions",
            opts.max_len
        )));
    }
    let state_dir = state_dir_for(out);
    let cfg = TrainConfig {
        epochs: opts.epochs,
        batch_size: opts.batch_size,
        grad_accum: opts.grad_accum,
        optimizer: train::AdamWConfig {
            lr: opts.lr,
            weight_decay: opts.weight_decay,
            ..Default::default()
        },
        warmup_fraction: opts.warmup,
        max_grad_norm: opts.max_grad_norm,
        seed: opts.seed,
        patience: opts.patience,
        eval_batch_size: opts.batch_size.max(8) * 2,
        checkpoint_dir: Some(state_dir.clone()),
        checkpoint_every: opts.checkpoint_every,
        // keep_best (true) and the soft-label loss (unused: gold labels) stay default.
        ..Default::default()
    };
    let dev_ref = (!dev_set.is_empty()).then_some(dev_set.as_slice());
    let report = train::train(&model, &train_set, dev_ref, tok.pad_id(), &cfg, on_event)?;
    let mut saved = None;
    if !report.interrupted {
        let save = SaveOptions {
            labels: dataset.card.schema.labels().map(<[String]>::to_vec),
            problem_type: None,
            tokenizer_dir: Some(base.to_path_buf()),
        };
        model.save_pretrained(out, &save)?;
        let _ = std::fs::remove_dir_all(&state_dir);
        saved = Some(out.to_path_buf());
    }
    Ok(FinetuneReport {
        out: saved,
        train_examples: train_set.len(),
        dev_examples: dev_set.len(),
        head: format!("{head:?}"),
        train: report,
    })
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
    /// One JSON object per example: id, input texts, gold, prediction (and
    /// logits for classification).
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

/// Checks that a saved model's head fits a dataset's task (kind and label count).
pub fn check_head_fits(
    head: HeadSpec,
    schema: &TaskSchema,
    model_dir: &Path,
    name: &str,
) -> Result<()> {
    let want = head_for(schema)?;
    if head == want {
        return Ok(());
    }
    Err(match (head, want) {
        (
            HeadSpec::Classification { num_labels: m },
            HeadSpec::Classification { num_labels: d },
        ) => invalid(format!(
            "model {} has {m} labels (num_labels in config.json) but dataset `{name}` has {d} \
                 ({}); use a model trained on this dataset or one with the same labels",
            model_dir.display(),
            schema.labels().unwrap_or_default().join(", ")
        )),
        _ => invalid(format!(
            "model {} has a {} head but dataset `{name}` is a {} task",
            model_dir.display(),
            describe(head),
            schema.short_name()
        )),
    })
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
pub fn predict(
    dataset: &Dataset,
    model_dir: &Path,
    split: Split,
    limit: Option<usize>,
    batch_size: usize,
    max_len: Option<usize>,
) -> Result<PredictReport> {
    let started = Instant::now();
    let name = &dataset.card.name;
    check_model_folder(model_dir, "model")?;
    let head = models::task_head(model_dir)
        .with_context(|| "train a task model with `fute train`".to_string())?;
    let schema = &dataset.card.schema;
    check_head_fits(head, schema, model_dir, name)?;
    let examples = sample(dataset.split(split), limit, 0);
    if examples.is_empty() {
        return Err(invalid(format!(
            "split `{split}` of dataset `{name}` has no examples{}",
            if limit == Some(0) { " (--limit 0)" } else { "" }
        )));
    }
    let tok = TextTokenizer::from_folder(model_dir)?;
    let model = models::load(model_dir, head, &BuildOptions::default())?;
    let max_pos = model.describe().max_positions;
    let max_len = max_len.unwrap_or(max_pos.min(512));
    if max_len > max_pos {
        return Err(invalid(format!(
            "max length {max_len} exceeds the model's {max_pos} positions"
        )));
    }
    let encodings = examples
        .iter()
        .map(|ex| encode_input(&tok, &ex.input, max_len))
        .collect::<Result<Vec<_>>>()?;
    let raw = train::predict(&model, &encodings, tok.pad_id(), batch_size)?;

    let mut metrics_out = BTreeMap::new();
    let mut records = Vec::with_capacity(examples.len());
    match schema {
        TaskSchema::Classification { labels, .. } => {
            let (mut pred, mut gold) = (Vec::new(), Vec::new());
            for (ex, r) in examples.iter().zip(&raw) {
                let (RawPrediction::Logits(l), Target::Label(g)) = (r, &ex.target) else {
                    return Err(invalid(format!("example `{}` has no class label", ex.id)));
                };
                let p = argmax(l);
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
