//! Shared helpers of the fute-nn integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use fute_nn::{BertConfig, BertInput, BertTaskModel, BuildOptions, HeadSpec};

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// Reads a JSON fixture.
pub fn json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// Reads a safetensors fixture (float64 references).
pub fn tensors(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name), &Device::Cpu).expect("fixture readable")
}

/// A `[B, T]` u32 tensor from a JSON array of arrays.
pub fn ids_tensor(v: &serde_json::Value) -> Tensor {
    let rows: Vec<Vec<u32>> = serde_json::from_value(v.clone()).expect("int matrix");
    let (b, t) = (rows.len(), rows[0].len());
    Tensor::from_vec(rows.concat(), (b, t), &Device::Cpu).unwrap()
}

/// Model input from the `input_ids`/`token_type_ids`/`attention_mask` of a JSON object.
pub fn input_from_json(v: &serde_json::Value) -> BertInput {
    BertInput {
        input_ids: ids_tensor(&v["input_ids"]),
        token_type_ids: Some(ids_tensor(&v["token_type_ids"])),
        attention_mask: ids_tensor(&v["attention_mask"]),
    }
}

/// Max |got − want| / max |want|: the normwise (∞-norm) relative error.
pub fn rel_err(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.dims(), want.dims(), "shapes differ");
    let g = got
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let w = want
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let diff = g
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let scale = w.iter().map(|b| b.abs()).fold(0.0, f64::max);
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

/// Asserts `rel_err(got, want) <= tol` and returns the error.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f64) -> f64 {
    let e = rel_err(got, want);
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:.0e}");
    e
}

/// A small random BERT config for gradient tests (made here, not from a fixture).
pub fn tiny_config() -> BertConfig {
    BertConfig::from_json_str(
        r#"{"vocab_size": 23, "hidden_size": 12, "num_hidden_layers": 2,
            "num_attention_heads": 3, "intermediate_size": 17,
            "max_position_embeddings": 16, "type_vocab_size": 2,
            "hidden_act": "gelu", "initializer_range": 0.3, "layer_norm_eps": 1e-12,
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}"#,
    )
    .unwrap()
}

/// A random task model on [`tiny_config`].
pub fn tiny_model(spec: HeadSpec, dtype: DType, seed: u64) -> BertTaskModel {
    let opts = BuildOptions {
        dtype,
        device: Device::Cpu,
        seed,
        ..Default::default()
    };
    BertTaskModel::build(&tiny_config(), spec, None, &opts).unwrap()
}

/// A padded pair batch for [`tiny_config`]: 3 examples, length 7, with padding.
pub fn tiny_input() -> BertInput {
    let ids = vec![
        vec![2u32, 5, 7, 3, 9, 3, 0],
        vec![2, 8, 11, 4, 3, 6, 3],
        vec![2, 13, 3, 21, 3, 0, 0],
    ];
    let types = vec![
        vec![0u32, 0, 0, 0, 1, 1, 0],
        vec![0, 0, 0, 0, 0, 1, 1],
        vec![0, 0, 0, 1, 1, 0, 0],
    ];
    let mask = vec![
        vec![1u32, 1, 1, 1, 1, 1, 0],
        vec![1, 1, 1, 1, 1, 1, 1],
        vec![1, 1, 1, 1, 1, 0, 0],
    ];
    let t = |v: Vec<Vec<u32>>| Tensor::from_vec(v.concat(), (3, 7), &Device::Cpu).unwrap();
    BertInput {
        input_ids: t(ids),
        token_type_ids: Some(t(types)),
        attention_mask: t(mask),
    }
}
