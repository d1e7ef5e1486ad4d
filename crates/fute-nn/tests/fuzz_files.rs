//! Property tests of the model files fute-nn reads from a user's folder:
//! `config.json`, safetensors headers and `tokenizer.json`. Whatever the
//! bytes, loading answers `Ok` or an error naming the file, never a panic.
//! `cargo test` runs 64 cases per target; `scripts/fuzz.sh` runs more.

use std::path::{Path, PathBuf};

use fute_nn::params::Checkpoint;
use fute_nn::{BertConfig, TextTokenizer};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn fixture(f: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tiny-bert")
        .join(f)
}

fn value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value};
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::from),
        Just(json!("bert")),
        Just(json!("gelu")),
        Just(json!({"0": "a", "1": "b"})),
        Just(json!({"x": "a", "5": "b"})),
        Just(json!(["BertForSequenceClassification"])),
    ]
}

/// Replaces the value at `path` (object keys / array indices) in `v`.
fn mutate(v: &mut serde_json::Value, path: &[usize], new: serde_json::Value) {
    let Some((first, rest)) = path.split_first() else {
        *v = new;
        return;
    };
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            let k = m.keys().nth(first % m.len()).unwrap().clone();
            mutate(m.get_mut(&k).unwrap(), rest, new);
        }
        serde_json::Value::Array(a) if !a.is_empty() => {
            let n = a.len();
            mutate(&mut a[first % n], rest, new);
        }
        _ => *v = new,
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn config_json_never_panics(
        edits in prop::collection::vec((prop::collection::vec(any::<usize>(), 1..3), value()), 0..4),
        drop_key in prop::option::of(any::<usize>()),
        bom in any::<bool>(),
    ) {
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture("config.json")).unwrap()).unwrap();
        for (path, new) in edits {
            mutate(&mut v, &path, new);
        }
        if let (Some(i), serde_json::Value::Object(m)) = (drop_key, &mut v) {
            if !m.is_empty() {
                let k = m.keys().nth(i % m.len()).unwrap().clone();
                m.remove(&k);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
        bytes.extend(v.to_string().into_bytes());
        let p = write(dir.path(), "config.json", &bytes);
        match fute_nn::models::read_config(&p) {
            Ok((raw, arch)) => {
                let _ = fute_nn::HeadSpec::from_hf_config(&raw);
                if let Err(e) = arch.check_required(&raw, &p) {
                    prop_assert!(e.to_string().contains("config.json"), "{}", e);
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("config.json"), "{}", e),
        }
        match BertConfig::from_file(&p) {
            Ok(c) => {
                let _ = c.declared_num_labels();
            }
            Err(e) => prop_assert!(e.to_string().contains("config.json"), "{}", e),
        }
    }

    #[test]
    fn safetensors_headers_never_panic(
        len in prop_oneof![any::<u64>(), 0u64..300],
        dtype in prop_oneof![Just("F32"), Just("F16"), Just("I64"), Just("BOOL"), Just("X")],
        shape in prop::collection::vec(0usize..5, 0..3),
        offsets in (0usize..40, 0usize..40),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let head = serde_json::json!({
            "w": {"dtype": dtype, "shape": shape, "data_offsets": [offsets.0, offsets.1]},
            "__metadata__": {"format": "pt"},
        })
        .to_string()
        .into_bytes();
        let n = if len % 2 == 0 { head.len() as u64 } else { len };
        let mut b = n.to_le_bytes().to_vec();
        b.extend(&head);
        b.extend(&body);
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "model.safetensors", &b);
        if let Ok(c) = Checkpoint::open(&p) {
            let _ = c.names();
            let _ = c.shape("w");
        }
    }

    #[test]
    fn tokenizer_json_never_panics(
        edits in prop::collection::vec((prop::collection::vec(any::<usize>(), 1..4), value()), 0..3),
        cut in prop::option::of(0usize..4338),
        text in any::<String>(),
        max_len in 0usize..48,
    ) {
        let original = std::fs::read_to_string(fixture("tokenizer.json")).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
        for (path, new) in edits {
            mutate(&mut v, &path, new);
        }
        let mut s = v.to_string();
        if let Some(c) = cut {
            let mut c = c.min(s.len());
            while !s.is_char_boundary(c) { c -= 1; }
            s.truncate(c);
        }
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "tokenizer.json", s.as_bytes());
        if let Ok(t) = TextTokenizer::from_file(&p) {
            for trunc in [
                fute_nn::Truncation::LongestFirst,
                fute_nn::Truncation::Question { max_question: 3 },
            ] {
                let _ = t.encode(fute_nn::TextInput::Pair(&text, "the man"), max_len, trunc);
            }
            let _ = t.encode(fute_nn::TextInput::Single(&text), max_len, fute_nn::Truncation::LongestFirst);
        }
    }
}

/// Regression (found by `tokenizer_json_never_panics`, minimal input: the
/// file cut at byte 584): a tokenizer.json that ends inside its `decoder` —
/// an interrupted download or copy — made the tokenizers crate panic in its
/// deserialiser (`expect("Helper")`) instead of returning an error.
#[test]
fn a_file_cut_inside_its_decoder_is_an_error_not_a_panic() {
    let original = std::fs::read_to_string(fixture("tokenizer.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&original).unwrap();
    let s = v.to_string();
    let at = s.find("\"decoder\"").expect("the fixture has a decoder");
    let dir = tempfile::tempdir().unwrap();
    for cut in [584, at + 12, at + 20, at + 30] {
        let p = write(
            dir.path(),
            "tokenizer.json",
            &s.as_bytes()[..cut.min(s.len())],
        );
        let e = TextTokenizer::from_file(&p).err();
        assert!(
            e.as_ref()
                .is_some_and(|e| e.to_string().contains("tokenizer.json")),
            "cut at {cut}: {e:?}"
        );
    }
}

/// The real tokenizer on any text and length: an encoding within the length
/// (or a clear error), never a panic; QA questions are cut, never fatal.
#[test]
fn encoding_respects_the_maximum_length() {
    let t = TextTokenizer::from_file(fixture("tokenizer.json")).unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(config());
    runner
        .run(
            &(any::<String>(), any::<String>(), 0usize..40, 1usize..80),
            |(a, b, max_len, q)| {
                let trunc = fute_nn::Truncation::Question { max_question: q };
                match t.encode(fute_nn::TextInput::Pair(&a, &b), max_len, trunc) {
                    Ok(e) => prop_assert!(e.len() <= max_len, "{} > {max_len}", e.len()),
                    Err(e) => prop_assert!(max_len < 5, "{e}"),
                }
                Ok(())
            },
        )
        .unwrap();
}
