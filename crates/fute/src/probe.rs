//! Probe sets: the (input, target) pairs the surrogate is trained on.
//!
//! A DTE's probe set holds a dataset's gold pairs; an MTE's holds the corpus U
//! with the subject model's outputs as targets.

use fute_core::dataset::{Dataset, Split, Target, TaskSchema};
use fute_core::rng::SplitMix64;
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// The tokenizer input of 1 or 2 segments (more are ignored; none is an empty text).
pub fn text_input(segments: &[String]) -> fute_nn::TextInput<'_> {
    match segments {
        [a] => fute_nn::TextInput::Single(a),
        [a, b, ..] => fute_nn::TextInput::Pair(a, b),
        [] => fute_nn::TextInput::Single(""),
    }
}

/// Targets of a probe set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeTargets {
    /// Gold class indices.
    Labels(Vec<usize>),
    /// A model's class distribution per input (soft labels).
    Soft(Vec<Vec<f32>>),
    /// Regression values.
    Values(Vec<f32>),
    /// Answer spans `[start, end)` in characters of the second segment; `None` = no answer.
    Spans(Vec<Option<(usize, usize)>>),
}

impl ProbeTargets {
    /// Number of targets.
    pub fn len(&self) -> usize {
        match self {
            ProbeTargets::Labels(v) => v.len(),
            ProbeTargets::Soft(v) => v.len(),
            ProbeTargets::Values(v) => v.len(),
            ProbeTargets::Spans(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What kind of head the surrogate needs for a probe set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeHead {
    /// Classification into this many classes.
    Classification(usize),
    /// One real value.
    Regression,
    /// Extractive QA.
    QuestionAnswering,
}

/// The (input, target) pairs for one embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeSet {
    /// Inputs: 1 or 2 segments each.
    pub inputs: Vec<Vec<String>>,
    /// Targets, one per input.
    pub targets: ProbeTargets,
    /// The head the surrogate gets.
    pub head: ProbeHead,
}

impl ProbeSet {
    /// sha256 of inputs and targets.
    pub fn hash(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("probe set serialises");
        hex::encode(sha2::Sha256::digest(&bytes))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// The gold pairs of one split of a dataset; at most `limit` of them, chosen by a
    /// seeded shuffle (the same seed picks the same examples).
    pub fn from_dataset(
        ds: &Dataset,
        split: Split,
        limit: Option<usize>,
        seed: u64,
    ) -> anyhow::Result<ProbeSet> {
        let mut examples = ds.split(split);
        if examples.is_empty() {
            anyhow::bail!(fute_core::Error::Invalid(format!(
                "dataset `{}` has no {split} examples to embed",
                ds.card.name
            )));
        }
        if let Some(n) = limit {
            SplitMix64::new(seed).shuffle(&mut examples);
            examples.truncate(n);
        }
        let inputs = examples
            .iter()
            .map(|e| e.input.segments().iter().map(|s| s.to_string()).collect())
            .collect();
        let (targets, head) = match &ds.card.schema {
            TaskSchema::Classification { labels, .. } => (
                ProbeTargets::Labels(
                    examples
                        .iter()
                        .map(|e| {
                            if let Target::Label(l) = e.target {
                                l
                            } else {
                                0
                            }
                        })
                        .collect(),
                ),
                ProbeHead::Classification(labels.len()),
            ),
            TaskSchema::Regression { .. } => (
                ProbeTargets::Values(
                    examples
                        .iter()
                        .map(|e| {
                            if let Target::Value(v) = e.target {
                                v as f32
                            } else {
                                0.0
                            }
                        })
                        .collect(),
                ),
                ProbeHead::Regression,
            ),
            TaskSchema::ExtractiveQa => (
                ProbeTargets::Spans(
                    examples
                        .iter()
                        .map(|e| match &e.target {
                            Target::Span(Some(s)) => {
                                Some((s.start, s.start + s.text.chars().count()))
                            }
                            _ => None,
                        })
                        .collect(),
                ),
                ProbeHead::QuestionAnswering,
            ),
        };
        Ok(ProbeSet {
            inputs,
            targets,
            head,
        })
    }
}
