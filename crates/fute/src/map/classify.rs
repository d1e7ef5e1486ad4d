//! What a point on a task map is: its task class (the colour) and its kind (the marker).
//!
//! The class comes from the data, never from a name: a dataset's schema and labels, a
//! fine-tuned model's head and `id2label`, a prompt set's task and labels.

use fute_core::dataset::TaskSchema;
use fute_core::embedding::{EmbeddingKind, EmbeddingRecord, SubjectKind};
use fute_core::workspace::Workspace;
use fute_llm::prompts::PromptMode;
use fute_llm::PromptSet;
use serde::Serialize;
use std::path::Path;

/// A task class, the colour of a point (serialised as `SA`, `NLI`, `CR`, `QA`, `UNKNOWN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TaskClass {
    /// Sentiment analysis: labels such as positive / negative (/ neutral).
    Sa,
    /// Natural-language inference: entailment-style labels over a text pair.
    Nli,
    /// Any other classification or regression (the paper's CR class holds SA and NLI too).
    Cr,
    /// Extractive question answering.
    Qa,
    /// Not known (a model folder that is gone, a prompt set that is not built in).
    Unknown,
}

impl TaskClass {
    /// Short name for legends: `SA`, `NLI`, `CR`, `QA`, `?`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskClass::Sa => "SA",
            TaskClass::Nli => "NLI",
            TaskClass::Cr => "CR",
            TaskClass::Qa => "QA",
            TaskClass::Unknown => "?",
        }
    }

    /// Legend text.
    pub fn describe(self) -> &'static str {
        match self {
            TaskClass::Sa => "SA: sentiment",
            TaskClass::Nli => "NLI: inference",
            TaskClass::Cr => "CR: other classification/regression",
            TaskClass::Qa => "QA: extractive QA",
            TaskClass::Unknown => "?: class unknown",
        }
    }

    /// The class a set of label names implies: entailment-style labels are NLI,
    /// polarity labels (positive, negative, optionally neutral) are SA, others CR.
    pub fn of_labels<S: AsRef<str>>(labels: &[S]) -> TaskClass {
        let lower: Vec<String> = labels.iter().map(|l| l.as_ref().to_lowercase()).collect();
        if lower
            .iter()
            .any(|l| l.contains("entail") || l.contains("contradict"))
        {
            return TaskClass::Nli;
        }
        let polar = |l: &str| {
            matches!(
                l,
                "positive" | "negative" | "neutral" | "pos" | "neg" | "fresh" | "rotten"
            )
        };
        if lower
            .iter()
            .any(|l| l == "positive" || l == "pos" || l == "fresh")
            && lower.iter().all(|l| polar(l))
        {
            return TaskClass::Sa;
        }
        TaskClass::Cr
    }

    /// The class of a dataset schema.
    pub fn of_schema(schema: &TaskSchema) -> TaskClass {
        match schema {
            TaskSchema::ExtractiveQa => TaskClass::Qa,
            TaskSchema::Classification { labels, .. } => TaskClass::of_labels(labels),
            TaskSchema::Regression { .. } => TaskClass::Cr,
        }
    }

    /// The class of a fine-tuned model folder, from its `config.json`
    /// (`architectures` for QA, `id2label` for the labels).
    pub fn of_model_folder(dir: &Path) -> Option<TaskClass> {
        let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
        let cfg: serde_json::Value = serde_json::from_str(&text).ok()?;
        let qa = cfg["architectures"].as_array().is_some_and(|a| {
            a.iter()
                .any(|s| s.as_str().is_some_and(|s| s.contains("QuestionAnswering")))
        });
        if qa {
            return Some(TaskClass::Qa);
        }
        match cfg["id2label"].as_object() {
            Some(m) => {
                let labels: Vec<&str> = m.values().filter_map(|v| v.as_str()).collect();
                Some(TaskClass::of_labels(&labels))
            }
            None => Some(TaskClass::Cr),
        }
    }

    /// The class of a prompt set: its task, else its labels.
    pub fn of_prompt_set(set: &PromptSet) -> TaskClass {
        match set.task.to_lowercase().as_str() {
            "sentiment" | "sa" => TaskClass::Sa,
            "nli" | "inference" => TaskClass::Nli,
            _ => TaskClass::of_labels(&set.labels),
        }
    }
}

/// The kind of a point, its marker (serialised as its [`Marker::key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Marker {
    /// A dataset's task embedding.
    Dte,
    /// A fine-tuned (small) model's task embedding.
    #[serde(rename = "model")]
    ModelMte,
    /// An LLM with a vanilla prompt.
    LlmVanilla,
    /// An LLM with a chain-of-thought prompt.
    LlmCot,
}

impl Marker {
    /// Legend text.
    pub fn describe(self) -> &'static str {
        match self {
            Marker::Dte => "DTE (dataset)",
            Marker::ModelMte => "MTE (fine-tuned model)",
            Marker::LlmVanilla => "MTE (LLM + vanilla prompt)",
            Marker::LlmCot => "MTE (LLM + CoT prompt)",
        }
    }

    /// Short legend text: `DTE`, `model MTE`, `LLM vanilla`, `LLM CoT`.
    pub fn short(self) -> &'static str {
        match self {
            Marker::Dte => "DTE",
            Marker::ModelMte => "model MTE",
            Marker::LlmVanilla => "LLM vanilla",
            Marker::LlmCot => "LLM CoT",
        }
    }

    /// A short key for filters and files: `dte`, `model`, `llm-vanilla`, `llm-cot`.
    pub fn key(self) -> &'static str {
        match self {
            Marker::Dte => "dte",
            Marker::ModelMte => "model",
            Marker::LlmVanilla => "llm-vanilla",
            Marker::LlmCot => "llm-cot",
        }
    }

    /// All markers, in legend order.
    pub const ALL: [Marker; 4] = [
        Marker::Dte,
        Marker::ModelMte,
        Marker::LlmVanilla,
        Marker::LlmCot,
    ];
}

/// Task class and marker of a stored embedding.
///
/// An explicit `task_class` (`SA`, `NLI`, `CR`, `QA`) in the embedding's provenance wins;
/// else a DTE's class comes from the schema kept with it (`schema`), or the dataset's
/// schema in `workspace`, a model's from its
/// folder, a prompted LLM's from its prompt set (`prompt_task`/`prompt_mode` kept with
/// the MTE, or the built-in set of that name).
pub fn classify(rec: &EmbeddingRecord, workspace: Option<&Workspace>) -> (TaskClass, Marker) {
    let extra = &rec.meta.extra;
    let explicit = extra
        .get("task_class")
        .and_then(|v| v.as_str())
        .and_then(parse_class);
    let subject = &rec.meta.subject;
    match (rec.meta.kind, subject.kind) {
        (EmbeddingKind::Dte, _) | (_, SubjectKind::Dataset) => {
            let recorded = extra
                .get("schema")
                .and_then(|v| serde_json::from_value::<TaskSchema>(v.clone()).ok());
            let class = explicit
                .or_else(|| recorded.as_ref().map(TaskClass::of_schema))
                .unwrap_or_else(|| {
                    workspace
                        .and_then(|w| w.load_dataset(&subject.name).ok())
                        .map_or(TaskClass::Unknown, |ds| {
                            TaskClass::of_schema(&ds.card.schema)
                        })
                });
            (class, Marker::Dte)
        }
        (_, SubjectKind::Model) => {
            let class = explicit.unwrap_or_else(|| {
                TaskClass::of_model_folder(Path::new(&subject.name)).unwrap_or(TaskClass::Unknown)
            });
            (class, Marker::ModelMte)
        }
        (_, SubjectKind::PromptedLlm) => {
            let set_name = extra.get("prompt_set").and_then(|v| v.as_str());
            let builtin = set_name.and_then(|s| PromptSet::builtin(s).ok());
            let prompt = extra.get("prompt").and_then(|v| v.as_u64());
            let class = explicit
                .or_else(|| {
                    extra
                        .get("prompt_task")
                        .and_then(|v| v.as_str())
                        .and_then(|t| match t.to_lowercase().as_str() {
                            "sentiment" | "sa" => Some(TaskClass::Sa),
                            "nli" => Some(TaskClass::Nli),
                            _ => None,
                        })
                })
                .or_else(|| builtin.as_ref().map(TaskClass::of_prompt_set))
                .unwrap_or(TaskClass::Unknown);
            let cot = match extra.get("prompt_mode").and_then(|v| v.as_str()) {
                Some(m) => m == "cot",
                None => builtin
                    .as_ref()
                    .zip(prompt)
                    .and_then(|(s, p)| s.prompts.get(p as usize))
                    .is_some_and(|p| p.mode == PromptMode::Cot),
            };
            (
                class,
                if cot {
                    Marker::LlmCot
                } else {
                    Marker::LlmVanilla
                },
            )
        }
    }
}

fn parse_class(s: &str) -> Option<TaskClass> {
    match s.to_uppercase().as_str() {
        "SA" => Some(TaskClass::Sa),
        "NLI" => Some(TaskClass::Nli),
        "CR" => Some(TaskClass::Cr),
        "QA" => Some(TaskClass::Qa),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_labels_not_names() {
        assert_eq!(
            TaskClass::of_labels(&["negative", "positive"]),
            TaskClass::Sa
        );
        assert_eq!(
            TaskClass::of_labels(&["negative", "neutral", "positive"]),
            TaskClass::Sa
        );
        assert_eq!(
            TaskClass::of_labels(&["entailment", "neutral", "contradiction"]),
            TaskClass::Nli
        );
        assert_eq!(TaskClass::of_labels(&["ham", "spam"]), TaskClass::Cr);
        // "neutral" alone is not a sentiment task.
        assert_eq!(TaskClass::of_labels(&["neutral", "other"]), TaskClass::Cr);
        assert_eq!(
            TaskClass::of_schema(&TaskSchema::ExtractiveQa),
            TaskClass::Qa
        );
        assert_eq!(
            TaskClass::of_prompt_set(&PromptSet::builtin("nli").unwrap()),
            TaskClass::Nli
        );
        assert_eq!(
            TaskClass::of_prompt_set(&PromptSet::builtin("sa").unwrap()),
            TaskClass::Sa
        );
    }

    #[test]
    fn model_class_from_config() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("config.json"),
            r#"{"architectures":["BertForSequenceClassification"],"id2label":{"0":"negative","1":"positive"}}"#,
        )
        .unwrap();
        assert_eq!(TaskClass::of_model_folder(d.path()), Some(TaskClass::Sa));
        std::fs::write(
            d.path().join("config.json"),
            r#"{"architectures":["BertForQuestionAnswering"]}"#,
        )
        .unwrap();
        assert_eq!(TaskClass::of_model_folder(d.path()), Some(TaskClass::Qa));
        assert_eq!(TaskClass::of_model_folder(&d.path().join("gone")), None);
    }
}
