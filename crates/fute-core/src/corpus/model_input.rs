//! How a model reads a corpus row (`paper.md` §2.4): U's rows have one or two
//! segments whatever the model, and each model M is given them in the shape of
//! the data it was trained on, as the FUTE reference does.

use crate::dataset::{InputShape, TaskSchema};
use serde::{Deserialize, Serialize};

/// The input schema of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelInput {
    /// One text (sentiment, topic, …).
    Single,
    /// A text pair (NLI, paraphrase, similarity).
    Pair,
    /// Extractive QA: (question, context).
    Qa,
}

impl ModelInput {
    /// The input schema of a model trained on data of `schema`.
    pub fn of_schema(schema: &TaskSchema) -> ModelInput {
        match schema {
            TaskSchema::ExtractiveQa => ModelInput::Qa,
            other => match other.input_shape() {
                InputShape::Single => ModelInput::Single,
                InputShape::Pair => ModelInput::Pair,
            },
        }
    }

    /// `single`, `pair` or `qa` (command line, metadata, cache keys).
    pub fn name(self) -> &'static str {
        match self {
            ModelInput::Single => "single",
            ModelInput::Pair => "pair",
            ModelInput::Qa => "qa",
        }
    }

    /// Parses [`ModelInput::name`].
    pub fn parse(s: &str) -> Option<ModelInput> {
        match s {
            "single" => Some(ModelInput::Single),
            "pair" => Some(ModelInput::Pair),
            "qa" => Some(ModelInput::Qa),
            _ => None,
        }
    }

    /// A corpus row as this model sees it (§2.4): a single-input model gets the
    /// last segment; a pair model gets a pair as it is and a single text as
    /// (text, ""); a QA model gets (question = segment 0, context = segment 1 or "").
    /// Segments past the second are dropped, as the reference keeps two.
    pub fn shape(self, segments: &[String]) -> Vec<String> {
        let first = segments.first().cloned().unwrap_or_default();
        let second = segments.get(1).cloned().unwrap_or_default();
        match self {
            ModelInput::Single => vec![last_segment(segments)],
            ModelInput::Pair | ModelInput::Qa => vec![first, second],
        }
    }
}

/// The text a single-input reader takes from a row: its last segment (§2.4;
/// also what a prompt with one `{{text}}` slot is filled with).
pub fn last_segment(segments: &[String]) -> String {
    segments.last().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn each_model_sees_its_own_shape() {
        let one = row(&["a film"]);
        let two = row(&["premise p", "hypothesis h"]);
        assert_eq!(ModelInput::Single.shape(&one), row(&["a film"]));
        assert_eq!(ModelInput::Single.shape(&two), row(&["hypothesis h"]));
        assert_eq!(ModelInput::Pair.shape(&one), row(&["a film", ""]));
        assert_eq!(ModelInput::Pair.shape(&two), two);
        assert_eq!(ModelInput::Qa.shape(&one), row(&["a film", ""]));
        assert_eq!(ModelInput::Qa.shape(&two), two);
        for m in [ModelInput::Single, ModelInput::Pair, ModelInput::Qa] {
            assert_eq!(ModelInput::parse(m.name()), Some(m));
        }
    }
}
