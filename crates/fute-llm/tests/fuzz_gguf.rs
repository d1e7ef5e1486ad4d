//! Property tests ("fuzz targets") of the GGUF reader: whatever the bytes or
//! the metadata values, reading a `.gguf` file's tokenizer or loading it as a
//! backend answers `Ok` or an error, never a panic. `cargo test` runs 64
//! cases per target; `scripts/fuzz.sh` runs more.

use std::collections::HashMap;
use std::io::Cursor;

use candle_core::quantized::gguf_file::{self, Content, Value, VersionedMagic};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use fute_llm::{GgufBackend, GgufTokenizer};
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

/// A byte-level vocabulary (one token per byte, no merges) and one control token.
fn tokenizer_metadata() -> Vec<(String, Value)> {
    let mut tokens: Vec<String> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
        .into_iter()
        .map(String::from)
        .collect();
    tokens.sort();
    tokens.push("<|im_end|>".into());
    let n = tokens.len();
    vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("gpt2".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.merges".into(), Value::Array(vec![])),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(
                (0..n)
                    .map(|i| Value::I32(if i + 1 < n { 1 } else { 3 }))
                    .collect(),
            ),
        ),
        ("llama.block_count".into(), Value::U32(1)),
    ]
}

/// A small valid GGUF file: the tokenizer metadata and one f32 tensor.
fn gguf_bytes() -> Vec<u8> {
    let md = tokenizer_metadata();
    let md: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t = Tensor::arange(0f32, 32f32, &Device::Cpu)
        .unwrap()
        .reshape((4, 8))
        .unwrap();
    let q = QTensor::quantize(&t, GgmlDType::F32).unwrap();
    let mut buf = Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &md, &[("token_embd.weight", &q)]).unwrap();
    buf.into_inner()
}

/// Any metadata value, nested arrays included.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<u8>().prop_map(Value::U8),
        any::<i32>().prop_map(Value::I32),
        any::<u32>().prop_map(Value::U32),
        any::<u64>().prop_map(Value::U64),
        any::<f32>().prop_map(Value::F32),
        any::<bool>().prop_map(Value::Bool),
        any::<String>().prop_map(Value::String),
        Just(Value::String("<|im_end|>".into())),
    ];
    leaf.prop_recursive(2, 16, 4, |inner| {
        prop::collection::vec(inner, 0..4).prop_map(Value::Array)
    })
}

proptest! {
    #![proptest_config(config())]

    /// Bytes changed here and there, or the file cut short.
    #[test]
    fn gguf_files_never_panic(
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in prop::option::of(any::<usize>()),
    ) {
        let mut bytes = gguf_bytes();
        let n = bytes.len();
        for (at, b) in edits {
            bytes[at % n] = b;
        }
        if let Some(c) = cut {
            bytes.truncate(c % (n + 1));
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("model.gguf");
        std::fs::write(&p, &bytes).unwrap();
        if let Ok(t) = GgufTokenizer::from_file(&p) {
            let _ = t.encode("a review <|im_end|> of the film");
        }
        let _ = GgufBackend::load(&p);
    }

    /// Well-formed files whose tokenizer metadata holds values of the wrong kind.
    #[test]
    fn gguf_metadata_values_never_panic(
        replace in prop::collection::vec((0usize..7, value()), 1..4),
    ) {
        let mut md: HashMap<String, Value> = tokenizer_metadata().into_iter().collect();
        let keys: Vec<String> = tokenizer_metadata().into_iter().map(|(k, _)| k).collect();
        for (i, v) in replace {
            md.insert(keys[i % keys.len()].clone(), v);
        }
        let content = Content {
            magic: VersionedMagic::GgufV3,
            metadata: md,
            tensor_infos: HashMap::new(),
            tensor_data_offset: 0,
        };
        if let Ok(t) = GgufTokenizer::from_gguf(&content) {
            let _ = t.encode("a review <|im_end|> of the film");
        }
    }
}

/// The unedited file reads: the targets start from a valid GGUF.
#[test]
fn the_seed_file_reads() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("model.gguf");
    std::fs::write(&p, gguf_bytes()).unwrap();
    let t = GgufTokenizer::from_file(&p).unwrap();
    assert!(!t.encode("ab").unwrap().is_empty());
}

/// Regression (found by `gguf_metadata_values_never_panic`, minimal input: an
/// empty `tokenizer.ggml.tokens`): token tables that disagree in length, or a
/// BOS id beyond the vocabulary, made the tokenizer builder index out of
/// bounds; they are errors naming the metadata key.
#[test]
fn token_tables_that_disagree_are_errors_not_panics() {
    let base: HashMap<String, Value> = tokenizer_metadata().into_iter().collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "tokenizer.ggml.tokens",
            Value::Array(vec![]),
            "tokenizer.ggml.tokens is empty",
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(vec![Value::I32(1)]),
            "tokenizer.ggml.token_type has 1 entries",
        ),
        (
            "tokenizer.ggml.bos_token_id",
            Value::U32(100_000),
            "tokenizer.ggml.bos_token_id is 100000",
        ),
    ];
    for (key, v, want) in cases {
        let mut md = base.clone();
        md.insert(key.to_string(), v);
        let content = Content {
            magic: VersionedMagic::GgufV3,
            metadata: md,
            tensor_infos: HashMap::new(),
            tensor_data_offset: 0,
        };
        let e = GgufTokenizer::from_gguf(&content)
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains(want)),
            "{key}: {e:?}"
        );
    }
}
