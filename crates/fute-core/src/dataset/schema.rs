//! What a dataset's examples look like.

use serde::{Deserialize, Serialize};

/// How many text segments an input has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputShape {
    /// One text (`text`).
    Single,
    /// Two texts (`text`, `text_pair`): premise/hypothesis, sentence pairs, …
    Pair,
}

/// The task a dataset poses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TaskSchema {
    /// Pick one of `labels`.
    Classification {
        /// Single text or text pair.
        inputs: InputShape,
        /// Label names; a label's index is its position here.
        labels: Vec<String>,
    },
    /// Predict a real value.
    Regression {
        /// Single text or text pair.
        inputs: InputShape,
        /// Inclusive bounds every value must respect, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range: Option<[f64; 2]>,
    },
    /// Find the answer span (by characters) of `question` in `context`; may be unanswerable.
    ExtractiveQa,
}

impl TaskSchema {
    /// A short name: `classification`, `pair-classification`, `regression`, `pair-regression`, `extractive-qa`.
    pub fn short_name(&self) -> &'static str {
        match self {
            TaskSchema::Classification {
                inputs: InputShape::Single,
                ..
            } => "classification",
            TaskSchema::Classification {
                inputs: InputShape::Pair,
                ..
            } => "pair-classification",
            TaskSchema::Regression {
                inputs: InputShape::Single,
                ..
            } => "regression",
            TaskSchema::Regression {
                inputs: InputShape::Pair,
                ..
            } => "pair-regression",
            TaskSchema::ExtractiveQa => "extractive-qa",
        }
    }

    /// Checks that some data could satisfy the schema: a classification needs at
    /// least two distinct, visible label names (one class gives every model the
    /// same answer and makes every score meaningless); a regression range needs
    /// `low < high`.
    ///
    /// # Errors
    /// What is wrong and how to fix it, as a sentence.
    pub fn check(&self) -> Result<(), String> {
        match self {
            TaskSchema::Classification { labels, .. } => {
                if labels.len() < 2 {
                    return Err(format!(
                        "a classification needs at least two labels, the schema has {} ({});                          list every class, e.g. --labels negative,positive (a one-class                          detector is a binary task: add the `other` class)",
                        labels.len(),
                        if labels.is_empty() {
                            "none".to_owned()
                        } else {
                            labels.join(", ")
                        }
                    ));
                }
                for (i, l) in labels.iter().enumerate() {
                    if !crate::textfile::has_visible_text(l) {
                        return Err(format!(
                            "label {} is {l:?}, which shows no characters; give every label a name",
                            i + 1
                        ));
                    }
                    if labels[..i].contains(l) {
                        return Err(format!(
                            "label `{l}` is listed twice; each label must be named once"
                        ));
                    }
                }
                Ok(())
            }
            TaskSchema::Regression {
                range: Some([lo, hi]),
                ..
            } if lo.partial_cmp(hi) != Some(std::cmp::Ordering::Less) => Err(format!(
                "the value range [{lo}, {hi}] is empty; give the lower bound first"
            )),
            _ => Ok(()),
        }
    }

    /// Label names of a classification schema, else `None`.
    pub fn labels(&self) -> Option<&[String]> {
        match self {
            TaskSchema::Classification { labels, .. } => Some(labels),
            _ => None,
        }
    }

    /// Input shape; QA counts as a pair (question, context).
    pub fn input_shape(&self) -> InputShape {
        match self {
            TaskSchema::Classification { inputs, .. } | TaskSchema::Regression { inputs, .. } => {
                *inputs
            }
            TaskSchema::ExtractiveQa => InputShape::Pair,
        }
    }
}
