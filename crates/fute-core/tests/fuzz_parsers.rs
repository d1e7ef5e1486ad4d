//! Property tests of every parser of user files in `fute-core`: whatever the
//! bytes, the parser answers `Ok` or a located error, never a panic.
//!
//! Targets: JSONL and CSV import (all four schemas), `card.json`, a corpus
//! folder, the text decoder (BOM, UTF-16, bad bytes) and safetensors-style
//! vector headers. Inputs are drawn from a grammar of the records people write
//! (known and unknown fields, every JSON type, BOMs, zero-width and control
//! characters, huge numbers) and mixed with raw bytes.
//!
//! `cargo test` runs 64 cases per target; `scripts/fuzz.sh` runs many more
//! (`PROPTEST_CASES`).

use std::path::Path;

use fute_core::dataset::{read_csv, read_jsonl, Dataset, FieldMap, InputShape, TaskSchema};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        // Crashes found become named regression tests below, not a file in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Strings people (and attackers) put in fields.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("\u{FEFF}".to_owned()),
        Just("\u{200B}\u{200D}".to_owned()),
        Just(" \t\r".to_owned()),
        Just("positive".to_owned()),
        Just("negative".to_owned()),
        Just("the man is good".to_owned()),
        Just("train".to_owned()),
        Just("good".to_owned()),
        "[a-z ]{0,12}",
        any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map(field(), inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("id"),
        Just("text"),
        Just("text_pair"),
        Just("label"),
        Just("value"),
        Just("question"),
        Just("context"),
        Just("answer"),
        Just("start"),
        Just("split"),
        Just("kind"),
        Just("labels"),
        Just("inputs"),
    ]
    .prop_map(str::to_owned)
}

/// One JSONL line: a record from the grammar, or raw text.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::btree_map(field(), json_value(), 0..6)
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect()).to_string()),
        1 => json_value().prop_map(|v| v.to_string()),
        1 => any::<String>(),
    ]
}

/// File bytes: lines joined, maybe a BOM, maybe raw bytes spliced in.
fn file_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(line(), 0..6),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..16),
        any::<bool>(),
    )
        .prop_map(|(lines, bom, raw, splice)| {
            let mut b = Vec::new();
            if bom {
                b.extend_from_slice(b"\xEF\xBB\xBF");
            }
            b.extend(lines.join("\n").into_bytes());
            if splice {
                b.extend(raw);
            }
            b
        })
}

fn schemas() -> Vec<TaskSchema> {
    vec![
        TaskSchema::Classification {
            inputs: InputShape::Single,
            labels: vec!["negative".into(), "positive".into()],
        },
        TaskSchema::Classification {
            inputs: InputShape::Pair,
            labels: vec!["0".into(), "1".into(), "2".into()],
        },
        TaskSchema::Regression {
            inputs: InputShape::Single,
            range: Some([0.0, 5.0]),
        },
        TaskSchema::ExtractiveQa,
    ]
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn jsonl_import_never_panics(bytes in file_bytes()) {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "f.jsonl", &bytes);
        for schema in schemas() {
            match read_jsonl(&p, &schema) {
                Ok(examples) => {
                    prop_assert!(!examples.is_empty());
                    for ex in &examples {
                        for s in ex.input.segments() {
                            prop_assert!(fute_core::textfile::has_visible_text(s));
                        }
                    }
                }
                Err(e) => prop_assert!(e.to_string().contains("f.jsonl"), "{}", e),
            }
        }
    }

    #[test]
    fn csv_import_never_panics(
        header in prop::collection::vec(field(), 0..5),
        rows in prop::collection::vec(prop::collection::vec(text(), 0..5), 0..5),
        bom in any::<bool>(),
        map in prop::collection::vec((field(), "[a-z]{1,6}"), 0..3),
    ) {
        let mut body = if bom { "\u{FEFF}".to_owned() } else { String::new() };
        body += &header.join(",");
        for r in &rows {
            body += "\n";
            body += &r.iter().map(|c| format!("\"{}\"", c.replace('"', "\"\""))).collect::<Vec<_>>().join(",");
        }
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "f.csv", body.as_bytes());
        let pairs: Vec<String> = map.iter().map(|(f, c)| format!("{f}={c}")).collect();
        let Ok(map) = FieldMap::parse(&pairs) else { return Ok(()) };
        for schema in schemas() {
            if let Err(e) = read_csv(&p, &schema, &map) {
                prop_assert!(e.to_string().contains("f.csv"), "{}", e);
            }
        }
    }

    #[test]
    fn dataset_card_never_panics(card in json_value(), bom in any::<bool>(), examples in file_bytes()) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
        bytes.extend(card.to_string().into_bytes());
        write(dir.path(), "card.json", &bytes);
        write(dir.path(), "examples.jsonl", &examples);
        let _ = Dataset::load_dir(dir.path());
        // A well-formed card of a one-label schema is refused at load.
        let one = serde_json::json!({"name": "x", "schema": {"kind": "classification", "inputs": "single", "labels": ["a"]}});
        write(dir.path(), "card.json", one.to_string().as_bytes());
        let e = Dataset::load_dir(dir.path()).unwrap_err().to_string();
        prop_assert!(e.contains("card.json") && e.contains("at least two labels"), "{}", e);
    }

    #[test]
    fn corpus_folder_never_panics(card in json_value(), inputs in file_bytes()) {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "card.json", card.to_string().as_bytes());
        write(dir.path(), "inputs.jsonl", &inputs);
        let _ = fute_core::corpus::Corpus::load_dir(dir.path());
    }

    #[test]
    fn decoding_keeps_utf8_and_drops_only_a_leading_bom(bytes in prop::collection::vec(any::<u8>(), 0..64), bom in any::<bool>()) {
        let mut b = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
        b.extend(&bytes);
        match fute_core::textfile::decode(Path::new("f"), b.clone()) {
            Ok(s) => {
                let body = if bom { &b[3..] } else { &b[..] };
                prop_assert_eq!(s.as_bytes(), body);
            }
            Err(e) => prop_assert!(e.to_string().starts_with("f"), "{}", e),
        }
    }

    #[test]
    fn vector_headers_never_panic(
        len in prop_oneof![any::<u64>(), 0u64..200],
        head in json_value(),
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let h = head.to_string().into_bytes();
        let mut b = len.min(h.len() as u64 + 8).to_le_bytes().to_vec();
        if len % 3 == 0 { b = len.to_le_bytes().to_vec(); }
        b.extend(&h);
        b.extend(&tail);
        let p = write(dir.path(), "v.safetensors", &b);
        if let Ok(v) = fute_core::embedding::vectors::VectorFile::open(&p) {
            let _ = v.read_all();
            if let Ok(mut r) = v.reader(4) {
                while let Ok(Some(_)) = r.next_chunk() {}
            }
        }
    }
}
