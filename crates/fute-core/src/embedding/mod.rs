//! Task embeddings: what was embedded, in which space, and with what provenance.
//!
//! Two embeddings can be compared only when their [`Space`]s are compatible:
//! the same surrogate, method and hyper-parameters, and, when both name one,
//! the same unlabelled corpus U.
//!
//! The training schedule ([`SCHEDULE_PARAMS`]: epochs, learning rate, batch) is
//! recorded with every vector and is part of its id, but not of its space. FUTE
//! itself trains DTEs and MTEs on different schedules (prefix: lr 1e-2 for up to
//! 120 epochs vs 1e-3 for one epoch; `paper.md` §2.6.1) and compares them, so one
//! space must hold both. What the coordinates of a vector *are* — surrogate,
//! method, Fisher variant, prefix shape, reduction, max length — stays in the
//! space. Rankings still refuse candidates of one kind whose schedules differ
//! (see [`candidates`]), so a candidate list never mixes two schedules.

pub mod candidates;
pub mod export;
pub mod store;
pub mod vectors;

use crate::fsutil::sha256_hex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub use store::{EmbeddingRecord, ListFilter, Store};
pub use vectors::{Component, StoredDType};

/// What kind of thing was embedded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubjectKind {
    /// A labelled dataset.
    Dataset,
    /// A fine-tuned model with a head.
    Model,
    /// An LLM driven by a prompt.
    PromptedLlm,
}

impl SubjectKind {
    /// `dataset`, `model` or `prompted-llm`.
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Dataset => "dataset",
            SubjectKind::Model => "model",
            SubjectKind::PromptedLlm => "prompted-llm",
        }
    }
}

/// The thing that was embedded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// Dataset, model or prompted LLM.
    pub kind: SubjectKind,
    /// Human name (`imdb`, a model folder, `smollm2+sa-3`).
    pub name: String,
    /// Content hash of the data or model (identity beyond the name).
    pub hash: String,
}

/// DTE (from a dataset's gold pairs) or MTE (from a model's outputs on U).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingKind {
    /// Dataset task embedding.
    Dte,
    /// Model task embedding.
    Mte,
}

impl EmbeddingKind {
    /// `dte` or `mte`.
    pub fn as_str(self) -> &'static str {
        match self {
            EmbeddingKind::Dte => "dte",
            EmbeddingKind::Mte => "mte",
        }
    }
}

/// The space an embedding lives in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Space {
    /// Hash of the surrogate model (weights + config + tokenizer).
    pub surrogate: String,
    /// Method name (`fim`, `prefix`, `textemb`, …).
    pub method: String,
    /// Every hyper-parameter that shapes the vector, canonically ordered.
    pub params: BTreeMap<String, Value>,
    /// Hash of the corpus U (MTEs; `None` for embeddings that use no corpus).
    pub corpus: Option<String>,
}

/// Parameters that set how long and how fast the surrogate is trained: part of
/// an embedding's id and provenance, not of its space (see the module notes).
pub const SCHEDULE_PARAMS: &[&str] = &["train_epochs", "train_lr", "train_batch"];

impl Space {
    /// Identity of the space without the corpus and the training schedule:
    /// equal keys ⇔ same surrogate, method and shaping parameters.
    pub fn key(&self) -> String {
        let v = serde_json::json!({"surrogate": self.surrogate, "method": self.method, "params": self.shape_params()});
        sha256_hex(v.to_string().as_bytes())[..16].to_owned()
    }

    /// The parameters that define the space (every parameter but the schedule).
    pub fn shape_params(&self) -> BTreeMap<String, Value> {
        self.params
            .iter()
            .filter(|(k, _)| !SCHEDULE_PARAMS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The training schedule (epochs, learning rate, batch) as `k=v` pairs, e.g.
    /// `train_epochs=1 train_lr=0.01`; empty for methods that train nothing.
    pub fn schedule(&self) -> String {
        self.params
            .iter()
            .filter(|(k, _)| SCHEDULE_PARAMS.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `Ok` when vectors of the two spaces may be compared; else why not.
    pub fn check_compatible(&self, other: &Space) -> Result<(), String> {
        if self.surrogate != other.surrogate {
            return Err(format!(
                "different surrogates ({} vs {}): each surrogate defines its own space; recompute one of them with the other's surrogate",
                short(&self.surrogate),
                short(&other.surrogate)
            ));
        }
        if self.method != other.method {
            return Err(format!(
                "different methods (`{}` vs `{}`)",
                self.method, other.method
            ));
        }
        let (mine, theirs) = (self.shape_params(), other.shape_params());
        if mine != theirs {
            let diff: Vec<String> = mine
                .keys()
                .chain(theirs.keys())
                .filter(|k| mine.get(*k) != theirs.get(*k))
                .map(|k| format!("{k}: {} vs {}", show(mine.get(k)), show(theirs.get(k))))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            return Err(format!("different hyper-parameters ({})", diff.join("; ")));
        }
        if let (Some(a), Some(b)) = (&self.corpus, &other.corpus) {
            if a != b {
                return Err(format!(
                    "different corpora U ({} vs {})",
                    short(a),
                    short(b)
                ));
            }
        }
        Ok(())
    }
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

fn show(v: Option<&Value>) -> String {
    v.map(Value::to_string).unwrap_or_else(|| "(unset)".into())
}

/// Everything known about how an embedding was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingMeta {
    /// What was embedded.
    pub subject: Subject,
    /// DTE or MTE.
    pub kind: EmbeddingKind,
    /// The space.
    pub space: Space,
    /// Seed of every random choice.
    pub seed: u64,
    /// Wall time to compute, in seconds.
    pub wall_seconds: f64,
    /// Versions of fute and its numerical dependencies.
    pub versions: BTreeMap<String, String>,
    /// Anything else worth keeping (data sizes, timings per stage, …).
    #[serde(default)]
    pub extra: BTreeMap<String, Value>,
}

impl EmbeddingMeta {
    /// The deterministic id: the same subject, kind, space and seed give the same id,
    /// so a repeated request finds the stored vector instead of recomputing it.
    pub fn id(&self) -> String {
        let v = serde_json::json!({
            "subject": self.subject, "kind": self.kind, "space": self.space, "seed": self.seed,
        });
        sha256_hex(v.to_string().as_bytes())[..12].to_owned()
    }
}
