//! Loading examples from JSONL and CSV files, and writing the normalised JSONL.

use super::example::Example;
use super::record::{parse_record, to_record, Origin};
use super::schema::TaskSchema;
use crate::textfile::read_text;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::Path;

/// Reads a JSONL file of normalised records (one JSON object per line; blank lines skipped).
///
/// The file may start with a UTF-8 byte-order mark (see [`crate::textfile`]).
///
/// # Errors
/// [`Error::InvalidData`] naming the file, line and field of the first bad
/// record, or the file when the schema itself is unusable (see [`TaskSchema::check`]).
pub fn read_jsonl(path: &Path, schema: &TaskSchema) -> Result<Vec<Example>> {
    check_schema(path, schema)?;
    let text = read_text(path)?;
    let mut examples = Vec::new();
    let mut ids = IdCheck::default();
    for (i, line) in text.lines().enumerate() {
        let at = Origin { path, line: i + 1 };
        if line.trim().is_empty() {
            continue;
        }
        let rec: Map<String, Value> = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Err(Error::data(
                    path,
                    Some(i + 1),
                    None,
                    "expected a JSON object on this line",
                ))
            }
            Err(e) => {
                return Err(Error::data(
                    path,
                    Some(i + 1),
                    None,
                    format!("invalid JSON: {e}"),
                ))
            }
        };
        let ex = parse_record(&rec, schema, &at)?;
        ids.check(&ex.id, &at)?;
        examples.push(ex);
    }
    non_empty(path, examples)
}

/// Which CSV column feeds which normalised field.
///
/// Columns not named here are ignored. Missing `id` → ids are `row-N`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldMap {
    /// Normalised field name → CSV column name.
    pub columns: Vec<(String, String)>,
}

impl FieldMap {
    /// Parses `field=column` pairs, e.g. `["text=review", "label=sentiment"]`.
    pub fn parse(pairs: &[String]) -> Result<Self> {
        const FIELDS: [&str; 9] = [
            "id",
            "text",
            "text_pair",
            "label",
            "value",
            "question",
            "context",
            "answer",
            "answer_start",
        ];
        let mut columns = Vec::new();
        for p in pairs {
            let (field, col) = p.split_once('=').ok_or_else(|| {
                Error::Invalid(format!(
                    "field mapping `{p}` must look like FIELD=COLUMN, e.g. text=review"
                ))
            })?;
            if !FIELDS.contains(&field) {
                return Err(Error::Invalid(format!(
                    "unknown field `{field}` in mapping `{p}`; fields are: {}",
                    FIELDS.join(", ")
                )));
            }
            columns.push((field.to_owned(), col.to_owned()));
        }
        Ok(FieldMap { columns })
    }
}

/// Reads a CSV file with a header row, mapping its columns with `map`.
///
/// Columns that `map` does not mention keep their own names, so a CSV whose
/// header already uses the normalised names needs no mapping.
pub fn read_csv(path: &Path, schema: &TaskSchema, map: &FieldMap) -> Result<Vec<Example>> {
    check_schema(path, schema)?;
    let text = read_text(path)?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| {
            Error::data(
                path,
                Some(1),
                None,
                format!("cannot read the header row: {e}"),
            )
        })?
        .clone();
    let mut index: HashMap<String, usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| (h.to_owned(), i))
        .collect();
    for (field, col) in &map.columns {
        let i = headers.iter().position(|h| h == col).ok_or_else(|| {
            Error::data(
                path,
                Some(1),
                Some(col),
                format!(
                    "no column `{col}` (mapped to `{field}`); the header has: {}",
                    headers.iter().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        index.insert(field.clone(), i);
    }
    let mut examples = Vec::new();
    let mut ids = IdCheck::default();
    for (n, row) in reader.records().enumerate() {
        let row = row.map_err(|e| {
            let line = e.position().map(|p| p.line() as usize);
            Error::data(path, line, None, format!("malformed CSV row: {e}"))
        })?;
        let line = row.position().map(|p| p.line() as usize).unwrap_or(n + 2);
        let at = Origin { path, line };
        let mut rec = Map::new();
        for (field, &i) in &index {
            if let Some(v) = row.get(i) {
                rec.insert(field.clone(), Value::String(v.to_owned()));
            }
        }
        if !rec.contains_key("id") {
            rec.insert("id".into(), Value::String(format!("row-{}", n + 1)));
        }
        csv_answer(&mut rec);
        let ex = parse_record(&rec, schema, &at)?;
        ids.check(&ex.id, &at)?;
        examples.push(ex);
    }
    non_empty(path, examples)
}

/// CSV cells are strings: turn `answer` + `answer_start` into the JSON answer object.
fn csv_answer(rec: &mut Map<String, Value>) {
    let start = rec.remove("answer_start");
    if let Some(Value::String(text)) = rec.remove("answer") {
        let answer = if text.is_empty() {
            Value::Null
        } else {
            let mut o = Map::new();
            o.insert("text".into(), Value::String(text));
            if let Some(Value::String(s)) = start {
                match s.trim().parse::<u64>() {
                    Ok(n) => o.insert("start".into(), Value::from(n)),
                    Err(_) => o.insert("start".into(), Value::String(s)),
                };
            }
            Value::Object(o)
        };
        rec.insert("answer".into(), answer);
    }
}

/// Writes examples as normalised JSONL bytes.
pub fn to_jsonl(examples: &[Example], schema: &TaskSchema) -> Vec<u8> {
    let mut out = Vec::with_capacity(examples.len() * 128);
    for ex in examples {
        serde_json::to_writer(&mut out, &Value::Object(to_record(ex, schema)))
            .expect("JSON of strings and numbers");
        out.push(b'\n');
    }
    out
}

#[derive(Default)]
struct IdCheck(HashMap<String, usize>);

impl IdCheck {
    fn check(&mut self, id: &str, at: &Origin) -> Result<()> {
        if let Some(first) = self.0.get(id) {
            return Err(Error::data(
                at.path,
                Some(at.line),
                Some("id"),
                format!("duplicate id `{id}` (first seen on line {first})"),
            ));
        }
        self.0.insert(id.to_owned(), at.line);
        Ok(())
    }
}

/// A schema that no file could satisfy (one label, repeated labels) is the
/// file's problem at import, not a failure three commands later.
fn check_schema(path: &Path, schema: &TaskSchema) -> Result<()> {
    schema.check().map_err(|m| Error::data(path, None, None, m))
}

fn non_empty(path: &Path, examples: Vec<Example>) -> Result<Vec<Example>> {
    if examples.is_empty() {
        return Err(Error::data(
            path,
            None,
            None,
            "the dataset is empty: no examples found",
        ));
    }
    Ok(examples)
}
