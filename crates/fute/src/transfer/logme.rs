//! LogME scores of every source model on every target (You et al. 2021; the
//! evidence itself is [`fute_core::metrics::logme`]).
//!
//! Features: the source model's input to a sequence head — the pooler output
//! `tanh(W h_[CLS])` — or, for a QA source (no pooler), the final [CLS] state,
//! on the target's LIMITED training sample (the same examples, seed by seed,
//! that the transfer fine-tunes on), truncated to the plan's max length.
//! Labels: the target's classes (one-hot) or values. Extractive-QA targets have
//! span labels, which LogME does not define: they get no scores (their cells
//! are left out of LogME's row).

use std::path::Path;

use anyhow::Result;
use candle_core::Device;
use fute_core::dataset::{Dataset, Split, Target, TaskSchema};
use fute_core::metrics::{logme, LogmeLabels};
use fute_nn::hooks::Tap;
use fute_nn::train::data::pad_batch;
use fute_nn::{BuildOptions, Hooks, Mode, TaskModel, TextTokenizer};

use super::collect::Matrix;
use super::evaluate::{MethodScores, Scores};
use super::job::source_model_dir;
use super::plan::source_job_id;
use crate::finetune::{encode_input, sample};

/// Feature vectors (row-major `n × hidden`) of `model` on `examples`: the
/// activation its sequence head reads (the model's `sequence_tap`, e.g. BERT's
/// pooler output), or for a model without one the first token's final state.
pub fn features(
    model: &dyn TaskModel,
    tok: &TextTokenizer,
    examples: &[&fute_core::dataset::Example],
    max_len: usize,
    batch: usize,
) -> Result<Vec<f64>> {
    let tap = Recorder {
        name: model.describe().sequence_tap.clone(),
        seen: std::sync::Mutex::new(None),
    };
    let hooks = Hooks {
        taps: Some(&tap),
        ..Default::default()
    };
    let mut out = Vec::new();
    for chunk in examples.chunks(batch.max(1)) {
        let encs = chunk
            .iter()
            .map(|ex| {
                encode_input(
                    tok,
                    &ex.input,
                    max_len,
                    fute_nn::tokenize::DEFAULT_MAX_QUESTION_LEN,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let input = pad_batch(encs, tok.pad_id()).to_input(&Device::Cpu)?;
        let fwd = model.forward_with(&input, &Mode::eval(), &hooks)?;
        let feats = match tap.seen.lock().expect("tap lock").take() {
            Some(t) => t,
            None => fwd.last_hidden_state.narrow(1, 0, 1)?.squeeze(1)?,
        };
        for row in feats.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()? {
            out.extend(row.into_iter().map(f64::from));
        }
    }
    Ok(out)
}

/// Keeps the activation of one named tap (unchanged) from the last forward pass.
struct Recorder {
    name: Option<String>,
    seen: std::sync::Mutex<Option<candle_core::Tensor>>,
}

impl Tap for Recorder {
    fn tap(&self, name: &str, x: &candle_core::Tensor) -> fute_nn::Result<candle_core::Tensor> {
        if self.name.as_deref() == Some(name) {
            *self.seen.lock().expect("tap lock") = Some(x.clone());
        }
        Ok(x.clone())
    }
}

fn labels_of(d: &Dataset, examples: &[&fute_core::dataset::Example]) -> Option<LabelsOwned> {
    match &d.card.schema {
        TaskSchema::Classification { labels, .. } => Some(LabelsOwned::Classes(
            examples
                .iter()
                .filter_map(|e| match e.target {
                    Target::Label(l) => Some(l),
                    _ => None,
                })
                .collect(),
            labels.len(),
        )),
        TaskSchema::Regression { .. } => Some(LabelsOwned::Values(
            examples
                .iter()
                .filter_map(|e| match e.target {
                    Target::Value(v) => Some(v),
                    _ => None,
                })
                .collect(),
        )),
        TaskSchema::ExtractiveQa => None,
    }
}

enum LabelsOwned {
    Classes(Vec<usize>, usize),
    Values(Vec<f64>),
}

/// LogME of every source model of `run_dir` (seed by seed) on every CR target
/// of `m`. `progress(done, total)` is called after each source model.
pub fn logme_scores(
    m: &Matrix,
    run_dir: &Path,
    load_dataset: &dyn Fn(&str) -> Result<Dataset>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<MethodScores> {
    let s = &m.settings;
    let datasets = m
        .tasks
        .iter()
        .map(|t| load_dataset(&t.name))
        .collect::<Result<Vec<_>>>()?;
    let total = s.seeds.len() * m.tasks.len();
    let mut done = 0;
    let mut per_seed = Vec::new();
    for &seed in &s.seeds {
        // Each target's limited training sample, as the transfer jobs draw it.
        let targets: Vec<_> = datasets
            .iter()
            .filter_map(|d| {
                let ex = sample(d.split(Split::Train), Some(s.target_limit), seed);
                labels_of(d, &ex).map(|l| (d, ex, l))
            })
            .collect();
        let mut scores = Scores::new();
        for src in &m.tasks {
            let dir = source_model_dir(run_dir, &source_job_id(&src.name, seed));
            crate::finetune::check_model_folder(&dir, "source model")?;
            let model = fute_nn::models::load_task_folder(&dir, &BuildOptions::default())?;
            let tok = TextTokenizer::from_folder(&dir)?;
            for (d, ex, labels) in &targets {
                if d.card.name == src.name {
                    continue;
                }
                let f = features(model.as_ref(), &tok, ex, s.max_len, 32)?;
                let dim = model.describe().hidden_size;
                let v = match labels {
                    LabelsOwned::Classes(l, k) => logme(
                        &f,
                        dim,
                        LogmeLabels::Classes {
                            labels: l,
                            num_classes: *k,
                        },
                    ),
                    LabelsOwned::Values(y) => logme(&f, dim, LogmeLabels::Values(y)),
                };
                scores
                    .entry(d.card.name.clone())
                    .or_default()
                    .insert(src.name.clone(), v);
            }
            done += 1;
            progress(done, total);
        }
        per_seed.push(scores);
    }
    Ok(MethodScores {
        method: "LogME".into(),
        note: format!(
            "evidence of the source model's pooled features on the target's {} training \
             examples (You et al. 2021); QA targets not covered",
            s.target_limit
        ),
        per_seed,
    })
}
