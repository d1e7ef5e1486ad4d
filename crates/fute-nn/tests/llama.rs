//! Llama-specific behaviour beyond the shared conformance suite
//! (`tests/conformance.rs`), on the same tiny random fixture
//! (`scripts/golden/bert_golden.py --arch llama`):
//! * soft prompt and key/value prefix hooks against transformers (a prompt as
//!   `inputs_embeds`; a prefix as a pre-filled cache with the real tokens kept at
//!   positions `0..T`), float64;
//! * the sequence class's `model.` and the QA class's `transformer.` base
//!   prefixes read each other's checkpoints (and a causal LM's);
//! * causality, and clear errors for configs and checkpoints that do not fit.

mod common;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use fute_nn::models::llama::{LlamaConfig, LlamaTaskModel};
use fute_nn::peft::{Peft, PeftConfig};
use fute_nn::{models, BuildOptions, Error, HeadSpec, Hooks, Mode, ModelInput, TaskModel};

fn fixture() -> std::path::PathBuf {
    common::fixture("conformance").join("llama")
}

fn opts(dtype: DType) -> BuildOptions {
    BuildOptions {
        dtype,
        device: Device::Cpu,
        seed: 4,
        ..Default::default()
    }
}

fn pair_input() -> ModelInput {
    let meta = common::json("conformance/llama/golden.json");
    ModelInput {
        input_ids: common::ids_tensor(&meta["pair"]["input_ids"]),
        token_type_ids: None,
        attention_mask: common::ids_tensor(&meta["pair"]["attention_mask"]),
    }
}

/// Only the real tokens of each row: padding positions differ by design (a
/// padded query attends to whatever real keys precede it).
fn real_rows(t: &Tensor, mask: &Tensor) -> Tensor {
    let m = mask.to_dtype(t.dtype()).unwrap().unsqueeze(2).unwrap();
    t.broadcast_mul(&m).unwrap()
}

#[test]
fn prompt_and_prefix_hooks_match_transformers() {
    let g = common::tensors("conformance/llama/golden.safetensors");
    let m = models::load(
        &fixture().join("model"),
        HeadSpec::QuestionAnswering,
        &opts(DType::F64),
    )
    .unwrap();
    let x = pair_input();
    let prompt = &g["hooks.prompt"];
    let hooks = Hooks {
        prompt: Some(prompt),
        ..Default::default()
    };
    let out = m.forward_with(&x, &Mode::eval(), &hooks).unwrap();
    let want = &g["hooks.prompt.last_hidden_state"];
    let e = common::assert_close(
        "prompt",
        &real_rows(&out.last_hidden_state, &x.attention_mask),
        &real_rows(want, &x.attention_mask),
        1e-10,
    );
    println!("prompt: last hidden state error {e:.1e}");

    let layers = m.describe().num_layers;
    let prefix: Vec<(Tensor, Tensor)> = (0..layers)
        .map(|i| {
            (
                g[&format!("hooks.prefix.k.{i}")].clone(),
                g[&format!("hooks.prefix.v.{i}")].clone(),
            )
        })
        .collect();
    let hooks = Hooks {
        prefix: Some(&prefix),
        ..Default::default()
    };
    let out = m.forward_with(&x, &Mode::eval(), &hooks).unwrap();
    let want = &g["hooks.prefix.last_hidden_state"];
    let e = common::assert_close(
        "prefix",
        &real_rows(&out.last_hidden_state, &x.attention_mask),
        &real_rows(want, &x.attention_mask),
        1e-10,
    );
    println!("prefix: last hidden state error {e:.1e}");
    // The hooks change the result: a test of nothing would also pass above.
    let plain = m
        .forward_with(&x, &Mode::eval(), &Hooks::default())
        .unwrap();
    assert!(common::rel_err(&plain.last_hidden_state, want) > 1e-3);
}

/// Rewrites the fixture's bare `LlamaModel` weights under `prefix` (plus
/// `extra` tensors) into `dir`, with the fixture's config.
fn rewrite(dir: &Path, prefix: &str, extra: &[(&str, Tensor)]) {
    std::fs::create_dir_all(dir).unwrap();
    let src = fixture().join("model");
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let mut tensors = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect::<std::collections::HashMap<_, _>>();
    for (k, v) in extra {
        tensors.insert(k.to_string(), v.clone());
    }
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
}

fn logits_bits(m: &dyn TaskModel) -> Vec<u32> {
    let out = m.forward(&pair_input(), &Mode::eval()).unwrap();
    let t = match out {
        fute_nn::TaskOutput::Span { start, .. } => start,
        o => o.logits().unwrap().clone(),
    };
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn either_base_prefix_loads_the_other_classes_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let lm_head = Tensor::zeros((60, 16), DType::F32, &Device::Cpu).unwrap();
    rewrite(
        &tmp.path().join("causal"),
        "model.",
        &[("lm_head.weight", lm_head)],
    );
    rewrite(&tmp.path().join("qa"), "transformer.", &[]);
    let cls = HeadSpec::Classification { num_labels: 3 };
    for spec in [cls, HeadSpec::QuestionAnswering] {
        let o = opts(DType::F32);
        let bare = models::load(&fixture().join("model"), spec, &o).unwrap();
        for folder in ["causal", "qa"] {
            let m = models::load(&tmp.path().join(folder), spec, &o).unwrap();
            assert_eq!(
                logits_bits(bare.as_ref()),
                logits_bits(m.as_ref()),
                "{folder} {spec:?}"
            );
        }
    }
    let qa = models::load(
        &tmp.path().join("causal"),
        HeadSpec::QuestionAnswering,
        &opts(DType::F32),
    )
    .unwrap();
    assert!(qa.parameter("transformer.norm.weight").is_some());
}

#[test]
fn a_layer_the_config_lacks_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let w = Tensor::ones(16, DType::F32, &Device::Cpu).unwrap();
    rewrite(
        tmp.path(),
        "model.",
        &[("model.layers.2.input_layernorm.weight", w)],
    );
    let Err(err) = models::load(tmp.path(), HeadSpec::QuestionAnswering, &opts(DType::F32)) else {
        panic!("a checkpoint with a third layer loaded into a two-layer model");
    };
    assert!(matches!(err, Error::UnexpectedTensors { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("model.layers.2.input_layernorm.weight"),
        "{err}"
    );
}

#[test]
fn later_tokens_never_change_earlier_outputs() {
    let m = models::load(
        &fixture().join("model"),
        HeadSpec::QuestionAnswering,
        &opts(DType::F64),
    )
    .unwrap();
    let x = pair_input();
    let mut ids = x.input_ids.to_vec2::<u32>().unwrap();
    ids[0][8] = 5; // the last token of the first (unpadded) row
    let changed = ModelInput {
        input_ids: Tensor::new(ids, &Device::Cpu).unwrap(),
        ..x.clone()
    };
    let (a, b) = (
        m.forward(&x, &Mode::eval()).unwrap(),
        m.forward(&changed, &Mode::eval()).unwrap(),
    );
    let (sa, sb) = (a.span().unwrap().0, b.span().unwrap().0);
    let first = |t: &Tensor| t.narrow(0, 0, 1).unwrap().narrow(1, 0, 8).unwrap();
    assert_eq!(common::rel_err(&first(sa), &first(sb)), 0.0);
    assert!(common::rel_err(&sa.narrow(1, 8, 1).unwrap(), &sb.narrow(1, 8, 1).unwrap()) > 0.0);
}

fn config_error(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture().join("model/config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut v);
    let path = tmp.path().join("config.json");
    std::fs::write(&path, v.to_string()).unwrap();
    let err = LlamaConfig::from_file(&path).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    err
}

#[test]
fn unsupported_or_incomplete_configs_are_named() {
    let e = config_error(|v| {
        v["rope_parameters"] = serde_json::json!({"rope_type": "linear", "factor": 2.0});
    });
    assert!(e.contains("rotary scaling `linear`"), "{e}");
    let e = config_error(|v| {
        v.as_object_mut().unwrap().remove("num_attention_heads");
    });
    assert!(e.contains("num_attention_heads"), "{e}");
    let e = config_error(|v| v["num_key_value_heads"] = serde_json::json!(3));
    assert!(e.contains("num_key_value_heads 3"), "{e}");
    let e = config_error(|v| v["head_dim"] = serde_json::json!(8));
    assert!(e.contains("head_dim 8"), "{e}");
}

#[test]
fn bitfit_refuses_a_model_without_biases() {
    let m = LlamaTaskModel::from_folder(
        &fixture().join("model"),
        HeadSpec::Regression,
        &opts(DType::F32),
    )
    .unwrap();
    let Err(err) = Peft::adapt(m, &PeftConfig::BitFit, 1) else {
        panic!("BitFit attached to a model without biases");
    };
    let err = err.to_string();
    assert!(err.contains("BitFit") && err.contains("llama"), "{err}");
}
