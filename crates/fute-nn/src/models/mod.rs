//! Model families, each written on candle ops with every op differentiable, and
//! the one registry that maps a `config.json`'s `model_type` to an architecture.
//!
//! [`ARCHITECTURES`] is the only place that knows which architectures exist: a
//! new one is a model file plus one line there. Nothing else in fute matches on
//! `model_type` or on HF class names; they ask [`architecture`],
//! [`architecture_of_config`] or [`class_head`].

pub mod bert;
pub mod distilbert;
pub mod gpt2;
pub mod llama;
pub mod roberta;
pub mod t5;

use std::path::Path;

use candle_nn::VarMap;

use crate::params::{Checkpoint, Params};
use crate::task::{BuildOptions, HeadSpec, TaskModel};
use crate::{Error, Result};

/// The kind of task head an HF class holds, independent of the architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadKind {
    /// `…ForSequenceClassification`: classification or regression on the sequence.
    Sequence,
    /// `…ForQuestionAnswering`: start/end logits on every token.
    QuestionAnswering,
}

/// One registered architecture.
#[derive(Debug)]
pub struct Architecture {
    /// The `model_type` of its `config.json` (`bert`, `roberta`, …).
    pub model_type: &'static str,
    /// The name prefix of the encoder's parameters inside a task model (`bert`);
    /// checkpoints of a bare encoder store them without it.
    pub base_prefix: &'static str,
    /// The HF class of its sequence classification/regression model.
    pub sequence_class: &'static str,
    /// The HF class of its extractive-QA model.
    pub qa_class: &'static str,
    /// The output layer of its sequence head (`classifier` in BERT,
    /// `classifier.out_proj` in RoBERTa): row `i` of its weight is label `i`.
    pub sequence_output: &'static str,
    /// `config.json` fields that fix tensor shapes: a config without one is
    /// refused rather than filled with a default that then disagrees with the
    /// checkpoint.
    pub required_fields: &'static [&'static str],
    /// First components (after [`Architecture::base_prefix`]) of the encoder
    /// tensors every checkpoint of it holds; a tensor under them that the model
    /// does not use means the checkpoint and its config disagree.
    pub encoder_roots: &'static [&'static str],
    /// Loads a local HF folder (`config.json`, `model.safetensors`) with head
    /// `spec` (taken from the checkpoint where it holds one of that shape,
    /// fresh otherwise).
    pub load: fn(&Path, HeadSpec, &BuildOptions) -> Result<Box<dyn TaskModel>>,
}

impl Architecture {
    /// The HF class holding `kind` in this architecture.
    pub fn class_name(&self, kind: HeadKind) -> &'static str {
        match kind {
            HeadKind::Sequence => self.sequence_class,
            HeadKind::QuestionAnswering => self.qa_class,
        }
    }

    /// Refuses a raw `config.json` object lacking one of
    /// [`Architecture::required_fields`].
    pub fn check_required(&self, raw: &serde_json::Value, path: &Path) -> Result<()> {
        for &field in self.required_fields {
            if raw.get(field).is_none_or(serde_json::Value::is_null) {
                return Err(Error::MissingField {
                    path: path.to_path_buf(),
                    field,
                    model_type: self.model_type.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Builds a task model of `arch`: `assemble` makes its modules with parameters
/// read from `checkpoint` where present (fresh and seeded by `opts` elsewhere,
/// or everywhere without a checkpoint, or in the head with
/// [`BuildOptions::fresh_head`]).
///
/// # Errors
/// [`Error::UnexpectedTensors`] when the checkpoint holds encoder tensors the
/// model did not use (its config and its weights disagree), and whatever
/// `assemble` reports (a missing tensor, a shape that disagrees).
pub(crate) fn build_checked<M>(
    arch: &Architecture,
    checkpoint: Option<&Checkpoint>,
    opts: &BuildOptions,
    assemble: impl FnOnce(&Params, VarMap) -> Result<M>,
) -> Result<M> {
    build_checked_under(arch, arch.base_prefix, &[], checkpoint, opts, assemble)
}

/// [`build_checked`] for a task class whose encoder sits under `base_prefix`
/// (not the architecture's usual one) and whose checkpoint may store it under
/// any of `aliases` instead ([`Params::with_base_aliases`]).
pub(crate) fn build_checked_under<M>(
    arch: &Architecture,
    base_prefix: &'static str,
    aliases: &'static [&'static str],
    checkpoint: Option<&Checkpoint>,
    opts: &BuildOptions,
    assemble: impl FnOnce(&Params, VarMap) -> Result<M>,
) -> Result<M> {
    let varmap = VarMap::new();
    let p = Params::new(&varmap, opts.dtype, &opts.device, checkpoint, opts.seed)
        .with_base_prefix(base_prefix)
        .with_base_aliases(aliases)
        .with_fresh_heads(opts.fresh_head);
    let model = assemble(&p, varmap.clone())?;
    if let Some(ckpt) = checkpoint {
        let mut unused = ckpt.unused_under(base_prefix, arch.encoder_roots);
        for alias in aliases {
            unused.extend(ckpt.unused_under(alias, arch.encoder_roots));
        }
        unused.sort();
        unused.dedup();
        if !unused.is_empty() {
            return Err(Error::UnexpectedTensors {
                path: ckpt.path().to_path_buf(),
                names: unused,
            });
        }
    }
    Ok(model)
}

/// Every architecture fute implements (one line per architecture).
pub static ARCHITECTURES: &[&Architecture] = &[
    &bert::ARCHITECTURE,
    &roberta::ARCHITECTURE,
    &distilbert::ARCHITECTURE,
    &gpt2::ARCHITECTURE,
    &llama::ARCHITECTURE,
    &t5::ARCHITECTURE,
];

/// The `model_type`s of [`ARCHITECTURES`].
pub fn supported_model_types() -> Vec<&'static str> {
    ARCHITECTURES.iter().map(|a| a.model_type).collect()
}

/// The architecture registered for `model_type`; an [`Error::Unsupported`]
/// naming `path` (the config it came from) and listing the supported types.
pub fn architecture(model_type: &str, path: &Path) -> Result<&'static Architecture> {
    ARCHITECTURES
        .iter()
        .copied()
        .find(|a| a.model_type == model_type)
        .ok_or_else(|| Error::Unsupported {
            path: path.to_path_buf(),
            model_type: model_type.to_string(),
            supported: supported_model_types(),
        })
}

/// The architecture a parsed `config.json` (`raw`, read from `path`) declares.
///
/// A config without `model_type` is taken as `bert`: BERT configs written
/// before `model_type` existed (and Google's original checkpoints) lack it, and
/// transformers' own fallback (matching the folder name) would pick BERT for them.
pub fn architecture_of_config(
    raw: &serde_json::Value,
    path: &Path,
) -> Result<&'static Architecture> {
    match raw.get("model_type") {
        None | Some(serde_json::Value::Null) => architecture("bert", path),
        Some(serde_json::Value::String(t)) => architecture(t, path),
        Some(other) => Err(Error::Config {
            path: path.to_path_buf(),
            message: format!("model_type must be a string, found {other}"),
        }),
    }
}

/// Reads `config.json` at `path` as JSON and returns it with its architecture.
pub fn read_config(path: &Path) -> Result<(serde_json::Value, &'static Architecture)> {
    if !path.is_file() {
        return Err(Error::MissingFile {
            path: path.to_path_buf(),
            what: "model configuration (config.json)",
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
    let raw: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        message: format!("not valid JSON: {e}"),
    })?;
    let arch = architecture_of_config(&raw, path)?;
    Ok((raw, arch))
}

/// The architecture and head kind of an HF class name such as
/// `BertForSequenceClassification`, if a registered architecture has it.
pub fn class_head(class: &str) -> Option<(&'static Architecture, HeadKind)> {
    ARCHITECTURES.iter().copied().find_map(|a| {
        [HeadKind::Sequence, HeadKind::QuestionAnswering]
            .into_iter()
            .find(|&k| a.class_name(k) == class)
            .map(|k| (a, k))
    })
}

/// Loads the HF folder `dir` with head `spec`, in the architecture its
/// `config.json` declares.
pub fn load(dir: &Path, spec: HeadSpec, opts: &BuildOptions) -> Result<Box<dyn TaskModel>> {
    let (_, arch) = read_config(&dir.join("config.json"))?;
    (arch.load)(dir, spec, opts)
}

/// The head a saved task model's folder declares in its `config.json`.
pub fn task_head(dir: &Path) -> Result<HeadSpec> {
    let path = dir.join("config.json");
    let (raw, arch) = read_config(&path)?;
    HeadSpec::from_hf_config(&raw).ok_or_else(|| Error::Config {
        path,
        message: format!(
            "declares no task head: `architectures` should name {} or {} \
             (a fine-tuned model, e.g. from `fute train`)",
            arch.sequence_class, arch.qa_class
        ),
    })
}

/// Loads a folder saved as a task model, with the head its config declares.
pub fn load_task_folder(dir: &Path, opts: &BuildOptions) -> Result<Box<dyn TaskModel>> {
    let spec = task_head(dir)?;
    load(dir, spec, opts)
}
