//! Fine-tuning a Hugging Face model folder (any architecture of
//! [`fute_nn::models`]; a Llama-family GGUF file goes through [`gguf_base`]
//! first) on a [`Dataset`] and predicting with the result: the glue between
//! `fute-core` datasets and `fute-nn` training.
//!
//! * [`finetune`]: dataset + base folder → tokenised examples (single text,
//!   pair, or QA with the question capped and the context truncated) →
//!   [`fute_nn::train::train`] → an HF folder at `out` (`config.json` with
//!   `num_labels`, `id2label`, `label2id`, `problem_type`; tokenizer files
//!   copied; `fute_train.json` with the run's options and the dev score against
//!   chance), written atomically. A base that already has a classifier keeps it
//!   only for the same label names, its rows matched by name ([`labels`]).
//!   Training state is checkpointed beside `out` (see [`state_dir_for`]) so a
//!   rerun with the same options resumes an interrupted run; it is removed once
//!   the model is saved. Every weight is trained, or with [`Tuning::Lora`]
//!   only LoRA adapters and the head, merged into the weights before saving.
//! * [`predict`]: a saved task folder on a dataset split → metrics (accuracy,
//!   macro-F1, MCC; Pearson, Spearman, MSE; SQuAD EM and F1) and one JSON record
//!   per example; outputs are read as the dataset's labels by name.
//!
//! Errors a user can fix (missing files, labels that do not match, a maximum
//! length beyond the model's positions, empty split) are
//! [`fute_core::Error::Invalid`], so the CLI reports them with exit code 1.

pub mod gguf_base;
pub mod labels;
mod prediction;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use fute_core::dataset::{Dataset, Example, Input, Split, Target, TaskSchema};
use fute_nn::checkpoint::SaveOptions;
use fute_nn::params::Checkpoint;
use fute_nn::peft::{LoraConfig, Peft, PeftConfig};
use fute_nn::train::{self, answer_positions, TrainConfig, TrainExample, TrainReport, TrainTarget};
use fute_nn::{
    models, BuildOptions, Encoding, HeadSpec, TaskModel, TextInput, TextTokenizer, Truncation,
};
use serde::Serialize;

use crate::fit::{check_accuracy, check_mse, FitCheck};
use labels::{align_head, match_labels, model_label_names, HeadInit};
pub use prediction::{
    check_head_fits, predict, predict_with, write_jsonl, PredictOptions, PredictReport,
};

pub use fute_nn::train::{Control, EpochRecord, Event};

/// File in a fine-tuned model folder recording how it was trained and whether it learned.
pub const TRAIN_RECORD_FILE: &str = "fute_train.json";

/// Longest answer (in tokens) a QA prediction may have (HF's `max_answer_length`).
pub const MAX_ANSWER_TOKENS: usize = 30;

/// Files a base or saved model folder must hold, with what each is for.
pub const MODEL_FILES: [(&str, &str); 3] = [
    ("config.json", "model configuration"),
    ("model.safetensors", "weights"),
    ("tokenizer.json", "tokenizer"),
];

/// Which weights fine-tuning changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "method")]
pub enum Tuning {
    /// Every parameter.
    Full,
    /// LoRA adapters (Hu et al. 2021) on the architecture's default targets
    /// plus the task head; the backbone stays frozen. The trained adapters are
    /// merged into the weights before saving, so the saved folder is a plain
    /// task model.
    Lora {
        /// Rank `r`.
        rank: usize,
        /// Scale numerator (`alpha / r`).
        alpha: f64,
    },
}

impl Tuning {
    /// LoRA with rank 8 and alpha 16 (HF peft's usual setting).
    pub fn lora() -> Self {
        Self::Lora {
            rank: 8,
            alpha: 16.0,
        }
    }
}

/// Options of [`finetune`] (defaults as `fute train`).
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// Most question tokens kept for extractive QA (HF's `max_query_length`).
    pub max_question_len: usize,
    /// Always start from a freshly initialised head, even when `base` is a task
    /// model with a head of the right shape (intermediate-task transfer; see
    /// [`fute_nn::BuildOptions::fresh_head`]). `false` reuses a head trained on
    /// the same labels.
    pub fresh_head: bool,
    /// Full fine-tuning or LoRA.
    pub tuning: Tuning,
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
            max_question_len: fute_nn::tokenize::DEFAULT_MAX_QUESTION_LEN,
            fresh_head: false,
            tuning: Tuning::Full,
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
    /// How the classification head started (fresh, or the base's matched by name).
    pub head_init: String,
    /// The best dev score against a model that learned nothing (`None`
    /// without a dev split, and for QA, whose dev score is a loss).
    pub dev_check: Option<FitCheck>,
    /// What to try when `dev_check` is at chance.
    pub warning: Option<String>,
    /// The training loop's report.
    pub train: TrainReport,
}

pub(crate) fn invalid(msg: impl Into<String>) -> anyhow::Error {
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

/// Refuses a maximum length the model has no positions for, before any work
/// (otherwise only the first long text would fail, mid-run).
///
/// # Errors
/// A user error naming the model folder, both numbers and the fix.
pub fn check_max_len(max_len: usize, max_positions: usize, model_dir: &Path) -> Result<()> {
    if max_len > max_positions {
        return Err(invalid(format!(
            "--max-len {max_len} exceeds the {max_positions} positions of {} \
             (max_position_embeddings in its config.json); use --max-len {max_positions} or less",
            model_dir.display()
        )));
    }
    Ok(())
}

fn text_input(input: &Input, max_question: usize) -> (TextInput<'_>, Truncation) {
    match input {
        Input::Single(t) => (TextInput::Single(t), Truncation::LongestFirst),
        Input::Pair(a, b) => (TextInput::Pair(a, b), Truncation::LongestFirst),
        Input::Qa { question, context } => (
            TextInput::Pair(question, context),
            Truncation::Question { max_question },
        ),
    }
}

/// Tokenises one example's input (QA cuts the question to `max_question`
/// tokens, then the context).
pub fn encode_input(
    tok: &TextTokenizer,
    input: &Input,
    max_len: usize,
    max_question: usize,
) -> Result<Encoding> {
    let (t, trunc) = text_input(input, max_question);
    Ok(tok.encode(t, max_len, trunc)?)
}

/// Tokenises examples and maps their targets for the head: class index, value,
/// or the answer's token span (`(0, 0)` when unanswerable or truncated away).
pub fn encode_examples(
    tok: &TextTokenizer,
    examples: &[&Example],
    max_len: usize,
    max_question: usize,
) -> Result<Vec<TrainExample>> {
    examples
        .iter()
        .map(|ex| {
            let encoding = encode_input(tok, &ex.input, max_len, max_question)
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

/// Decides how the classification head starts from `base`: the base's head is
/// kept only when it was trained on the same label names (its rows are then
/// reordered to the dataset's order by [`align_head`]), kept by position when
/// the base names no labels, and fresh (seeded) otherwise or when
/// `fresh_head` asks for it.
fn head_init(base: &Path, schema: &TaskSchema, fresh_head: bool) -> Result<HeadInit> {
    let (HeadSpec::Classification { num_labels }, Some(labels)) =
        (head_for(schema)?, schema.labels())
    else {
        return Ok(HeadInit::AsBase);
    };
    if fresh_head {
        return Ok(HeadInit::Fresh);
    }
    let cfg_path = base.join("config.json");
    let (raw, arch) = models::read_config(&cfg_path)?;
    let output = arch.sequence_output;
    let ckpt = Checkpoint::open(base.join("model.safetensors"))?;
    let reused = ckpt
        .resolve(&format!("{output}.weight"))
        .and_then(|n| ckpt.shape(&n))
        .is_some_and(|s| s.first() == Some(&num_labels));
    if !reused {
        return Ok(HeadInit::Fresh);
    }
    Ok(match model_label_names(&raw, &cfg_path)? {
        None => HeadInit::FromBaseByPosition,
        Some(names) => match match_labels(&names, labels, "the base model", "the dataset") {
            Ok(map) => HeadInit::FromBaseByName(map),
            Err(_) => HeadInit::ReplacedOtherLabels(format!(
                "{} vs the dataset's {}",
                names.join(", "),
                labels.join(", ")
            )),
        },
    })
}

/// The best dev score against chance, and advice when it is at chance.
fn dev_check(
    schema: &TaskSchema,
    dev: &[&Example],
    report: &TrainReport,
    opts: &FinetuneOptions,
) -> (Option<FitCheck>, Option<String>) {
    let Some(best) = report.best_score else {
        return (None, None);
    };
    let check = match schema {
        TaskSchema::Classification { labels, .. } => {
            let gold: Vec<usize> = dev
                .iter()
                .filter_map(|e| match e.target {
                    Target::Label(l) => Some(l),
                    _ => None,
                })
                .collect();
            check_accuracy("best dev accuracy", best, &gold, labels)
        }
        TaskSchema::Regression { .. } => {
            let gold: Vec<f64> = dev
                .iter()
                .filter_map(|e| match e.target {
                    Target::Value(v) => Some(v),
                    _ => None,
                })
                .collect();
            // The trainer's dev score is −MSE (higher is better).
            check_mse("best dev MSE", -best, &gold)
        }
        TaskSchema::ExtractiveQa => None,
    };
    let warning = check.as_ref().filter(|c| c.at_chance).map(|c| {
        format!(
            "the model did not learn: {}. Try a larger learning rate with smaller batches \
             (e.g. --batch 16 --lr 5e-5; this run: --batch {} --lr {}), more epochs \
             (--epochs, this run {}), or more training data (--limit)",
            c.summary(),
            opts.batch_size,
            opts.lr,
            opts.epochs
        )
    });
    (check, warning)
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
    let head_init = head_init(base, &dataset.card.schema, opts.fresh_head)?;
    let build = BuildOptions {
        seed: opts.seed,
        fresh_head: opts.fresh_head || head_init.is_fresh(),
        ..Default::default()
    };
    let model = models::load(base, head, &build)?;
    check_max_len(opts.max_len, model.describe().max_positions, base)?;
    if let HeadInit::FromBaseByName(map) = &head_init {
        // The model already knows its architecture: no second read of config.json.
        let arch = models::architecture(model.describe().model_type, base)?;
        align_head(model.as_ref(), arch.sequence_output, map)?;
    }

    let tok = TextTokenizer::from_folder(base)?;
    let train_set = encode_examples(&tok, &train_split, opts.max_len, opts.max_question_len)?;
    let dev_set = encode_examples(&tok, &dev_split, opts.max_len, opts.max_question_len)?;
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
    let (model, report) = match &opts.tuning {
        Tuning::Full => {
            let r = train::train(&model, &train_set, dev_ref, tok.pad_id(), &cfg, on_event)?;
            (model, r)
        }
        Tuning::Lora { rank, alpha } => {
            let lora = PeftConfig::Lora(LoraConfig {
                rank: *rank,
                alpha: *alpha,
                targets: Vec::new(),
            });
            let adapted = Peft::adapt(model, &lora, opts.seed)?;
            let cfg = TrainConfig {
                trainable: Some(adapted.peft.trainable_names(&adapted)),
                ..cfg
            };
            let r = train::train(&adapted, &train_set, dev_ref, tok.pad_id(), &cfg, on_event)?;
            if !r.interrupted {
                adapted.peft.merge_into(&adapted.model)?;
            }
            (adapted.model, r)
        }
    };
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
    let (dev_check, warning) = dev_check(&dataset.card.schema, &dev_split, &report, opts);
    let result = FinetuneReport {
        out: saved,
        train_examples: train_set.len(),
        dev_examples: dev_set.len(),
        head: format!("{head:?}"),
        head_init: head_init.describe(),
        dev_check,
        warning,
        train: report,
    };
    if result.out.is_some() {
        // Beside the weights, so whoever uses the model later sees whether it learned.
        let record = serde_json::json!({
            "dataset": name,
            "dataset_hash": dataset.content_hash(),
            "options": opts,
            "report": &result,
        });
        // In config.json too: what `fute embed model` and `fute rank --by datasize` read
        // (input shape, DataSize), for every model fute fine-tunes, not only the CLI's.
        crate::model_outputs::record_training(
            out,
            name,
            &dataset.card.schema,
            result.train_examples,
        )?;
        // Written last: its presence means the folder is complete.
        let text = serde_json::to_string_pretty(&record)? + "\n";
        fute_core::fsutil::write_atomic(&out.join(TRAIN_RECORD_FILE), text.as_bytes())?;
    }
    Ok(result)
}
