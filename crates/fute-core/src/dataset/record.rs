//! Turning one flat record (a JSONL object or a mapped CSV row) into an [`Example`],
//! with errors that name the file, the line and the field.
//!
//! Field names of the normalised form: `id`, `text`, `text_pair`, `label`, `value`,
//! `question`, `context`, `answer` (`{"text", "start"}` or `null`), `split`.

use super::example::{AnswerSpan, Example, Input, Split, Target};
use super::schema::{InputShape, TaskSchema};
use crate::{Error, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// Where the record came from, for error messages.
pub(crate) struct Origin<'a> {
    pub path: &'a Path,
    pub line: usize,
}

impl Origin<'_> {
    fn err(&self, field: Option<&str>, message: impl Into<String>) -> Error {
        Error::data(self.path, Some(self.line), field, message)
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn text_field(rec: &Map<String, Value>, name: &str, at: &Origin) -> Result<String> {
    match rec.get(name) {
        None => Err(at.err(Some(name), format!("missing field `{name}`"))),
        Some(Value::String(s)) if s.trim().is_empty() => Err(at.err(Some(name), "empty text")),
        Some(Value::String(s)) if !crate::textfile::has_visible_text(s) => Err(at.err(
            Some(name),
            "the text shows no characters (only whitespace, zero-width or control \
             characters); remove the record or give it text",
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(at.err(
            Some(name),
            format!("expected a string, found {}", type_name(v)),
        )),
    }
}

fn id_field(rec: &Map<String, Value>, at: &Origin) -> Result<String> {
    match rec.get("id") {
        None | Some(Value::Null) => Ok(format!("line-{}", at.line)),
        Some(Value::String(s)) if s.trim().is_empty() => Err(at.err(Some("id"), "empty id")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(v) => Err(at.err(
            Some("id"),
            format!("expected a string or integer id, found {}", type_name(v)),
        )),
    }
}

fn input(rec: &Map<String, Value>, shape: InputShape, at: &Origin) -> Result<Input> {
    let text = text_field(rec, "text", at)?;
    Ok(match shape {
        InputShape::Single => Input::Single(text),
        InputShape::Pair => Input::Pair(text, text_field(rec, "text_pair", at)?),
    })
}

fn label(rec: &Map<String, Value>, labels: &[String], at: &Origin) -> Result<usize> {
    let name = match rec.get("label") {
        None => return Err(at.err(Some("label"), "missing field `label`")),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        Some(v) => {
            return Err(at.err(
                Some("label"),
                format!("expected a label name (string), found {}", type_name(v)),
            ))
        }
    };
    labels.iter().position(|l| *l == name).ok_or_else(|| {
        at.err(
            Some("label"),
            format!(
                "unknown label `{name}`; expected one of: {}",
                labels.join(", ")
            ),
        )
    })
}

fn value(rec: &Map<String, Value>, range: Option<[f64; 2]>, at: &Origin) -> Result<f64> {
    let v = match rec.get("value") {
        None => return Err(at.err(Some("value"), "missing field `value`")),
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(Value::String(s)) => s.trim().parse::<f64>().map_err(|_| {
            at.err(
                Some("value"),
                format!("expected a number, found the string `{s}`"),
            )
        })?,
        Some(v) => {
            return Err(at.err(
                Some("value"),
                format!("expected a number, found {}", type_name(v)),
            ))
        }
    };
    if !v.is_finite() {
        return Err(at.err(Some("value"), format!("value {v} is not a finite number")));
    }
    if let Some([lo, hi]) = range {
        if v < lo || v > hi {
            return Err(at.err(
                Some("value"),
                format!("value {v} is outside the declared range [{lo}, {hi}]"),
            ));
        }
    }
    Ok(v)
}

fn answer(rec: &Map<String, Value>, context: &str, at: &Origin) -> Result<Option<AnswerSpan>> {
    let obj = match rec.get("answer") {
        None => {
            return Err(at.err(
                Some("answer"),
                "missing field `answer` (use null for unanswerable)",
            ))
        }
        Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(v) => {
            return Err(at.err(
                Some("answer"),
                format!(
                    "expected an object {{\"text\", \"start\"}} or null, found {}",
                    type_name(v)
                ),
            ))
        }
    };
    let text = match obj.get("text") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) => {
            return Err(at.err(
                Some("answer.text"),
                "empty answer text (use \"answer\": null for unanswerable)",
            ))
        }
        Some(v) => {
            return Err(at.err(
                Some("answer.text"),
                format!("expected a string, found {}", type_name(v)),
            ))
        }
        None => return Err(at.err(Some("answer.text"), "missing field `answer.text`")),
    };
    let start = match obj.get("start") {
        None | Some(Value::Null) => find_chars(context, &text).ok_or_else(|| {
            at.err(
                Some("answer.text"),
                format!("answer `{text}` does not occur in the context"),
            )
        })?,
        Some(Value::Number(n)) if n.is_u64() => n.as_u64().unwrap_or(0) as usize,
        Some(v) => {
            return Err(at.err(
                Some("answer.start"),
                format!(
                    "expected a non-negative integer character offset, found {}",
                    type_name(v)
                ),
            ))
        }
    };
    let found: String = context
        .chars()
        .skip(start)
        .take(text.chars().count())
        .collect();
    if found != text {
        return Err(at.err(
            Some("answer.start"),
            format!("answer `{text}` is not found in the context at character {start} (the context has `{found}` there)"),
        ));
    }
    Ok(Some(AnswerSpan { text, start }))
}

/// Character offset of the first occurrence of `needle` in `hay`.
pub fn find_chars(hay: &str, needle: &str) -> Option<usize> {
    hay.find(needle).map(|byte| hay[..byte].chars().count())
}

fn split(rec: &Map<String, Value>, at: &Origin) -> Result<Option<Split>> {
    match rec.get("split") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|e: String| at.err(Some("split"), e)),
        Some(v) => Err(at.err(
            Some("split"),
            format!("expected train, dev or test, found {}", type_name(v)),
        )),
    }
}

/// Parses one record against `schema`.
pub(crate) fn parse_record(
    rec: &Map<String, Value>,
    schema: &TaskSchema,
    at: &Origin,
) -> Result<Example> {
    let id = id_field(rec, at)?;
    let (input, target) = match schema {
        TaskSchema::Classification { inputs, labels } => (
            input(rec, *inputs, at)?,
            Target::Label(label(rec, labels, at)?),
        ),
        TaskSchema::Regression { inputs, range } => (
            input(rec, *inputs, at)?,
            Target::Value(value(rec, *range, at)?),
        ),
        TaskSchema::ExtractiveQa => {
            let question = text_field(rec, "question", at)?;
            let context = text_field(rec, "context", at)?;
            let span = answer(rec, &context, at)?;
            (Input::Qa { question, context }, Target::Span(span))
        }
    };
    Ok(Example {
        id,
        input,
        target,
        fixed_split: split(rec, at)?,
    })
}

/// The normalised JSON object of an example.
pub(crate) fn to_record(ex: &Example, schema: &TaskSchema) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), Value::String(ex.id.clone()));
    match &ex.input {
        Input::Single(a) => {
            m.insert("text".into(), a.clone().into());
        }
        Input::Pair(a, b) => {
            m.insert("text".into(), a.clone().into());
            m.insert("text_pair".into(), b.clone().into());
        }
        Input::Qa { question, context } => {
            m.insert("question".into(), question.clone().into());
            m.insert("context".into(), context.clone().into());
        }
    }
    match &ex.target {
        Target::Label(i) => {
            let name = schema
                .labels()
                .and_then(|l| l.get(*i))
                .cloned()
                .unwrap_or_else(|| i.to_string());
            m.insert("label".into(), name.into());
        }
        Target::Value(v) => {
            m.insert("value".into(), serde_json::json!(v));
        }
        Target::Span(span) => {
            m.insert(
                "answer".into(),
                serde_json::to_value(span).unwrap_or(Value::Null),
            );
        }
    }
    if let Some(s) = ex.fixed_split {
        m.insert("split".into(), s.as_str().into());
    }
    m
}
