//! One labelled example.

use serde::{Deserialize, Serialize};

/// Which part of a dataset an example belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training data.
    Train,
    /// Development (validation) data: early stopping, model selection.
    Dev,
    /// Held-out test data.
    Test,
}

impl Split {
    /// All splits in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Dev, Split::Test];

    /// `train`, `dev` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "train" => Ok(Split::Train),
            "dev" | "validation" | "valid" => Ok(Split::Dev),
            "test" => Ok(Split::Test),
            other => Err(format!(
                "unknown split `{other}`; expected train, dev or test"
            )),
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text(s) a model reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// One text.
    Single(String),
    /// Two texts.
    Pair(String, String),
    /// A question about a context.
    Qa {
        /// The question.
        question: String,
        /// The passage that may hold the answer.
        context: String,
    },
}

impl Input {
    /// The segments in reading order (1 or 2).
    pub fn segments(&self) -> Vec<&str> {
        match self {
            Input::Single(a) => vec![a],
            Input::Pair(a, b) => vec![a, b],
            Input::Qa { question, context } => vec![question, context],
        }
    }

    /// Total length in characters.
    pub fn char_len(&self) -> usize {
        self.segments().iter().map(|s| s.chars().count()).sum()
    }
}

/// An answer span: its text and where it starts in the context, in characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerSpan {
    /// The answer text, exactly as in the context.
    pub text: String,
    /// Character (not byte) offset of the answer in the context.
    pub start: usize,
}

/// What the model should output.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Index into the schema's labels.
    Label(usize),
    /// A regression value.
    Value(f64),
    /// A QA answer; `None` = unanswerable.
    Span(Option<AnswerSpan>),
}

/// One labelled example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Unique, stable id (splits are derived from it).
    pub id: String,
    /// The input text(s).
    pub input: Input,
    /// The gold target.
    pub target: Target,
    /// A split fixed by the data itself; `None` = assigned by the seeded hash.
    pub fixed_split: Option<Split>,
}
