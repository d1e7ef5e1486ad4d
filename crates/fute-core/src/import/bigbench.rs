//! BIG-bench tasks (the `bigbench==1.0.0` sdist): each `task.json` holds
//! `{"examples": [{"input", "target_scores": {label: 0|1}} | {"input", "target"}]}`.
//! A per-task rule cuts the prompt-formatted `input` back into its text segments.

use super::builder::{squash_ws, Builder};
use crate::dataset::record::find_chars;
use crate::dataset::{AnswerSpan, DatasetCard, Input, InputShape, Target, TaskSchema};
use crate::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// How a BIG-bench task becomes a dataset.
pub(crate) struct BigBenchTask {
    /// Folder under `bigbench/` holding `task.json`.
    pub path: &'static str,
    /// Our dataset name.
    pub name: &'static str,
    /// Label names in index order (classification) or empty (QA).
    pub labels: &'static [&'static str],
    /// Cuts the formatted input into segments; `None` drops the row.
    pub parse: fn(&str) -> Option<Input>,
    /// Single text or pair (classification only).
    pub inputs: InputShape,
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let a = s.find(start)? + start.len();
    let b = a + s[a..].find(end)?;
    Some(&s[a..b])
}

fn pair(a: &str, b: &str) -> Option<Input> {
    let (a, b) = (squash_ws(a), squash_ws(b));
    (!a.is_empty() && !b.is_empty()).then_some(Input::Pair(a, b))
}

fn single(a: &str) -> Option<Input> {
    let a = squash_ws(a);
    (!a.is_empty()).then_some(Input::Single(a))
}

fn vitaminc(s: &str) -> Option<Input> {
    let (evidence, claim) = s.rsplit_once("\nClaim: ")?;
    pair(evidence, claim)
}

fn imppres(s: &str) -> Option<Input> {
    let first = between(s, "Sentence 1: ", "\nSentence 2: ")?;
    let rest = &s[s.find("\nSentence 2: ")? + "\nSentence 2: ".len()..];
    let second = rest.split("\n\nThe answer is:").next()?;
    pair(first, second)
}

fn epistemic(s: &str) -> Option<Input> {
    let s = s.strip_prefix("Premise: ")?;
    let (p, h) = s.split_once(" Hypothesis: ")?;
    pair(p, h)
}

fn fever(s: &str) -> Option<Input> {
    let claim = s.split_once("the following claim was made: ")?.1;
    single(claim.split("\nQ: Was this claim true or false?").next()?)
}

fn plain(s: &str) -> Option<Input> {
    single(s)
}

fn intent(s: &str) -> Option<Input> {
    single(s.strip_prefix("Utterance: ").unwrap_or(s))
}

fn metaphor(s: &str) -> Option<Input> {
    let (a, b) = s.split_once(" <--> ")?;
    pair(a, b)
}

fn disfl_qa(s: &str) -> Option<Input> {
    let (q, c) = s.split_once("\ncontext: ")?;
    qa(q, c)
}

fn nq_conflicts(s: &str) -> Option<Input> {
    let q = between(s, "Question: ", "\nContext: ")?;
    let c = &s[s.find("\nContext: ")? + "\nContext: ".len()..];
    qa(q, c)
}

fn qa(q: &str, c: &str) -> Option<Input> {
    let (question, context) = (squash_ws(q), squash_ws(c));
    (!question.is_empty() && !context.is_empty()).then_some(Input::Qa { question, context })
}

/// The BIG-bench tasks fute imports.
pub(crate) const TASKS: &[BigBenchTask] = &[
    BigBenchTask {
        path: "vitaminc_fact_verification",
        name: "vitaminc",
        labels: &["True", "False", "Neither"],
        parse: vitaminc,
        inputs: InputShape::Pair,
    },
    BigBenchTask {
        path: "presuppositions_as_nli",
        name: "imppres",
        labels: &["entailment", "neutral", "contradiction"],
        parse: imppres,
        inputs: InputShape::Pair,
    },
    BigBenchTask {
        path: "epistemic_reasoning",
        name: "epistemic-reasoning",
        labels: &["entailment", "non-entailment"],
        parse: epistemic,
        inputs: InputShape::Pair,
    },
    BigBenchTask {
        path: "fact_checker/fever",
        name: "fever",
        labels: &["true", "false"],
        parse: fever,
        inputs: InputShape::Single,
    },
    BigBenchTask {
        path: "disfl_qa",
        name: "disfl-qa",
        labels: &[],
        parse: disfl_qa,
        inputs: InputShape::Pair,
    },
    BigBenchTask {
        path: "contextual_parametric_knowledge_conflicts",
        name: "nq-conflicts",
        labels: &[],
        parse: nq_conflicts,
        inputs: InputShape::Pair,
    },
    BigBenchTask {
        path: "strategyqa",
        name: "strategyqa",
        labels: &["No", "Yes"],
        parse: plain,
        inputs: InputShape::Single,
    },
    BigBenchTask {
        path: "intent_recognition",
        name: "snips",
        labels: &[
            "add_to_playlist",
            "book_restaurant",
            "get_weather",
            "play_music",
            "search_screening_event",
            "search_creative_work",
            "rate_book",
        ],
        parse: intent,
        inputs: InputShape::Single,
    },
    BigBenchTask {
        path: "multiemo/all_text_en",
        name: "multiemo",
        labels: &["negative", "neutral", "positive", "ambivalent"],
        parse: plain,
        inputs: InputShape::Single,
    },
    BigBenchTask {
        path: "metaphor_boolean",
        name: "metaphor-paraphrase",
        labels: &["True", "False"],
        parse: metaphor,
        inputs: InputShape::Pair,
    },
];

impl BigBenchTask {
    fn is_qa(&self) -> bool {
        self.labels.is_empty()
    }

    /// Imports `raw/<path>/task.json`.
    pub fn import(&self, raw: &Path) -> Result<Builder> {
        let path = raw.join(self.path).join("task.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::io("reading", &path, e))?;
        let task: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::data(&path, Some(e.line()), None, format!("invalid JSON: {e}")))?;
        let examples = task
            .get("examples")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::data(&path, None, Some("examples"), "no `examples` array"))?;
        let schema = if self.is_qa() {
            TaskSchema::ExtractiveQa
        } else {
            TaskSchema::Classification {
                inputs: self.inputs,
                labels: self.labels.iter().map(|s| s.to_string()).collect(),
            }
        };
        let mut card = DatasetCard::new(self.name, schema);
        card.description = task
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut bld = Builder::new(card);
        for (i, ex) in examples.iter().enumerate() {
            bld.row();
            let Some(input) = ex.get("input").and_then(Value::as_str).and_then(self.parse) else {
                bld.drop_row("input not in the task's expected format");
                continue;
            };
            let id = format!("{}-{i:05}", self.name);
            if self.is_qa() {
                let Some(answer) = ex.get("target").and_then(target_text) else {
                    bld.drop_row("no target answer");
                    continue;
                };
                let Input::Qa { context, .. } = &input else {
                    unreachable!("QA parsers return Input::Qa")
                };
                let answer = squash_ws(&answer);
                let span = if answer.eq_ignore_ascii_case("unknown") {
                    None
                } else if let Some(start) = find_chars(context, &answer) {
                    Some(AnswerSpan {
                        text: answer,
                        start,
                    })
                } else {
                    bld.drop_row("answer not found in the context");
                    continue;
                };
                bld.push(id, input, Target::Span(span));
            } else {
                match gold_label(ex, self.labels) {
                    Ok(label) => bld.push(id, input, Target::Label(label)),
                    Err(reason) => bld.drop_row(reason),
                }
            }
        }
        Ok(bld)
    }
}

fn target_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn gold_label(ex: &Value, labels: &[&str]) -> Result<usize, &'static str> {
    let scores = ex
        .get("target_scores")
        .and_then(Value::as_object)
        .ok_or("no target_scores")?;
    let best: Vec<&String> = scores
        .iter()
        .filter(|(_, v)| v.as_f64() == Some(1.0))
        .map(|(k, _)| k)
        .collect();
    match best.as_slice() {
        [one] => labels
            .iter()
            .position(|l| l == one)
            .ok_or("label outside the declared label set"),
        [] => Err("no gold label"),
        _ => Err("several gold labels"),
    }
}
