//! Task embeddings: what was embedded, in which space, and with what provenance.
//!
//! Two embeddings can be compared only when their [`Space`]s are compatible:
//! the same surrogate, method and hyper-parameters, and, when both name one,
//! the same unlabelled corpus U.

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

impl Space {
    /// Identity of the space without the corpus: equal keys ⇔ same surrogate, method, parameters.
    pub fn key(&self) -> String {
        let v = serde_json::json!({"surrogate": self.surrogate, "method": self.method, "params": self.params});
        sha256_hex(v.to_string().as_bytes())[..16].to_owned()
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
        if self.params != other.params {
            let diff: Vec<String> = self
                .params
                .keys()
                .chain(other.params.keys())
                .filter(|k| self.params.get(*k) != other.params.get(*k))
                .map(|k| {
                    format!(
                        "{k}: {} vs {}",
                        show(self.params.get(k)),
                        show(other.params.get(k))
                    )
                })
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
