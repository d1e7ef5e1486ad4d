//! Llama-specific behaviour beyond the shared conformance suite
//! (`tests/conformance.rs`), on the same tiny random fixture
//! (`scripts/golden/bert_golden.py --arch llama`):
//! * soft prompt and key/value prefix hooks against transformers (a prompt as
//!   `inputs_embeds`; a prefix as a pre-filled cache with the real tokens kept at
//!   positions `0..T`), float64;
//! * the sequence class's `model.` and the QA class's `transformer.` base
//!   prefixes read each other's checkpoints (and a causal LM's);
//! * a GGUF file written as llama.cpp's converter does (renamed tensors,
//!   permuted query/key rows) loads as exactly the same model;
//! * causality, and clear errors for configs, checkpoints and GGUF files that
//!   do not fit.

mod common;

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
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

/// llama.cpp's `LlamaModel.permute` (convert_hf_to_gguf.py) written as an
/// index map: HF row `h·hd + s·hd/2 + i` is stored at GGUF row `h·hd + 2i + s`.
fn llama_cpp_permute(w: &Tensor, heads: usize) -> Tensor {
    let rows = w.to_vec2::<f32>().unwrap();
    let hd = rows.len() / heads;
    let mut out = rows.clone();
    for h in 0..heads {
        for s in 0..2 {
            for i in 0..hd / 2 {
                out[h * hd + 2 * i + s] = rows[h * hd + s * hd / 2 + i].clone();
            }
        }
    }
    Tensor::new(out, &Device::Cpu).unwrap()
}

/// GGUF metadata and tensors as the tests build them.
type Metadata = Vec<(String, Value)>;
type Tensors = Vec<(String, Tensor)>;

/// The fixture written as a float32 GGUF file the way llama.cpp's converter
/// names and permutes it, with `edit` applied to the metadata and tensor list.
fn write_gguf(path: &Path, edit: impl FnOnce(&mut Metadata, &mut Tensors)) {
    let src =
        candle_core::safetensors::load(fixture().join("model/model.safetensors"), &Device::Cpu)
            .unwrap();
    let mut tensors: Tensors = vec![
        (
            "token_embd.weight".into(),
            src["embed_tokens.weight"].clone(),
        ),
        ("output_norm.weight".into(), src["norm.weight"].clone()),
    ];
    for l in 0..2 {
        let t = |n: &str| src[&format!("layers.{l}.{n}.weight")].clone();
        for (gguf, tensor) in [
            ("attn_norm", t("input_layernorm")),
            ("attn_q", llama_cpp_permute(&t("self_attn.q_proj"), 4)),
            ("attn_k", llama_cpp_permute(&t("self_attn.k_proj"), 2)),
            ("attn_v", t("self_attn.v_proj")),
            ("attn_output", t("self_attn.o_proj")),
            ("ffn_norm", t("post_attention_layernorm")),
            ("ffn_gate", t("mlp.gate_proj")),
            ("ffn_up", t("mlp.up_proj")),
            ("ffn_down", t("mlp.down_proj")),
        ] {
            tensors.push((format!("blk.{l}.{gguf}.weight"), tensor));
        }
    }
    let mut metadata: Metadata = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("llama.block_count".into(), Value::U32(2)),
        ("llama.context_length".into(), Value::U32(24)),
        ("llama.embedding_length".into(), Value::U32(16)),
        ("llama.feed_forward_length".into(), Value::U32(24)),
        ("llama.attention.head_count".into(), Value::U32(4)),
        ("llama.attention.head_count_kv".into(), Value::U32(2)),
        ("llama.rope.freq_base".into(), Value::F32(500.0)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(1e-5),
        ),
        ("tokenizer.ggml.padding_token_id".into(), Value::U32(0)),
    ];
    edit(&mut metadata, &mut tensors);
    let q: Vec<(String, QTensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), QTensor::quantize(t, GgmlDType::F32).unwrap()))
        .collect();
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let qs: Vec<(&str, &QTensor)> = q.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md, &qs).unwrap();
}

#[test]
fn a_gguf_file_loads_as_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tiny.gguf");
    write_gguf(&path, |_, _| ());
    for spec in [
        HeadSpec::Classification { num_labels: 3 },
        HeadSpec::QuestionAnswering,
    ] {
        let o = opts(DType::F32);
        let from_gguf = LlamaTaskModel::from_gguf(&path, spec, &o).unwrap();
        let from_hf = models::load(&fixture().join("model"), spec, &o).unwrap();
        // rms_norm_eps went through f32 metadata: 1e-5 as f32, as transformers reads it too.
        assert_eq!(from_gguf.config.rms_norm_eps, f64::from(1e-5f32));
        let (a, b) = (from_gguf.named_parameters(), from_hf.named_parameters());
        assert_eq!(a.len(), b.len());
        for ((na, va), (nb, vb)) in a.iter().zip(&b) {
            assert_eq!(na, nb);
            assert_eq!(common::rel_err(va.as_tensor(), vb.as_tensor()), 0.0, "{na}");
        }
    }
}

#[test]
fn gguf_files_that_do_not_fit_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.gguf");
    let message = |edit: &dyn Fn(&mut Metadata, &mut Tensors)| {
        write_gguf(&path, edit);
        let Err(e) = LlamaTaskModel::from_gguf(&path, HeadSpec::Regression, &opts(DType::F32))
        else {
            panic!("a bad GGUF file loaded");
        };
        let e = e.to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        e
    };
    let e = message(&|md, _| md[0].1 = Value::String("gemma3".into()));
    assert!(e.contains("`gemma3`"), "{e}");
    let e = message(&|md, _| md.retain(|(k, _)| k != "llama.embedding_length"));
    assert!(e.contains("llama.embedding_length` is missing"), "{e}");
    let e = message(&|_, t| {
        let extra = t[2].1.clone();
        t.push(("blk.2.attn_norm.weight".into(), extra));
    });
    assert!(
        e.contains("blk.2.attn_norm.weight") && e.contains("block_count"),
        "{e}"
    );
    let e = message(&|_, t| t.retain(|(n, _)| n != "blk.1.ffn_up.weight"));
    assert!(e.contains("model.layers.1.mlp.up_proj.weight"), "{e}");
    let e = message(&|md, _| {
        md.push((
            "llama.rope.scaling.type".into(),
            Value::String("yarn".into()),
        ))
    });
    assert!(e.contains("rotary scaling `yarn`"), "{e}");
}

#[test]
fn damaged_gguf_files_are_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.gguf");
    write_gguf(&good, |_, _| ());
    let bytes = std::fs::read(&good).unwrap();
    let bad = tmp.path().join("bad.gguf");
    let cuts = (0..20).map(|i| i * bytes.len() / 20);
    for (i, cut) in cuts.enumerate() {
        let mut b = bytes[..cut].to_vec();
        // Also flip a byte inside the header of every other copy.
        if i % 2 == 1 && b.len() > 64 {
            let at = 24 + (i * 37) % (b.len().min(600) - 24);
            b[at] ^= 0x5a;
        }
        std::fs::write(&bad, &b).unwrap();
        let r = std::panic::catch_unwind(|| {
            LlamaTaskModel::from_gguf(&bad, HeadSpec::Regression, &opts(DType::F32)).map(|_| ())
        });
        let Ok(r) = r else {
            panic!("loading a GGUF cut at {cut} bytes panicked");
        };
        if cut < bytes.len() / 2 {
            let e = r.expect_err("half a GGUF file loaded").to_string();
            assert!(e.contains(&bad.display().to_string()), "{e}");
        }
    }
}

#[test]
fn merged_lora_computes_what_the_adapted_model_did() {
    use fute_nn::peft::LoraConfig;
    let m = LlamaTaskModel::from_folder(
        &fixture().join("model"),
        HeadSpec::Classification { num_labels: 3 },
        &opts(DType::F64),
    )
    .unwrap();
    let lora = PeftConfig::Lora(LoraConfig::default());
    let adapted = Peft::adapt(m, &lora, 2).unwrap();
    // B = 0 at the start: give every adapter a non-zero update, as training would.
    for name in adapted.peft.own_names() {
        if name.ends_with("lora_B") {
            let v = adapted.parameter(name).unwrap();
            let (o, r) = v.dims2().unwrap();
            v.set(&Tensor::randn(0f64, 0.5, (o, r), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    let x = pair_input();
    let want = adapted.forward(&x, &Mode::eval()).unwrap();
    adapted.peft.merge_into(&adapted.model).unwrap();
    let got = adapted.model.forward(&x, &Mode::eval()).unwrap();
    let e = common::rel_err(got.logits().unwrap(), want.logits().unwrap());
    assert!(e < 1e-12, "merged vs adapted logits {e:.1e}");
    assert!(adapted
        .model
        .named_parameters()
        .iter()
        .all(|(n, _)| !n.contains("lora")));
    let plain = LlamaTaskModel::from_folder(
        &fixture().join("model"),
        HeadSpec::Classification { num_labels: 3 },
        &opts(DType::F64),
    )
    .unwrap();
    assert_eq!(
        plain.named_parameters().len(),
        adapted.model.named_parameters().len()
    );
    let Err(e) = Peft::adapt(plain, &PeftConfig::Prefix(Default::default()), 1)
        .and_then(|p| p.peft.merge_into(&p.model))
    else {
        panic!("a prefix was merged into weights");
    };
    assert!(e.to_string().contains("cannot be merged"), "{e}");
}

/// Memory guard (issue 13: a SmolLM2 Fisher batch was OOM-killed at 15.9 GB):
/// candle keeps every gradient it forms until the backward pass ends, with
/// whatever graph it references. After a backward pass through the whole
/// model, the store holds the parameters' gradients only (none for the causal
/// mask or the rotary tables) and none of them holds an autograd graph.
#[test]
fn a_backward_pass_keeps_only_detached_parameter_gradients() {
    let m = models::load(
        &fixture().join("model"),
        HeadSpec::Classification { num_labels: 2 },
        &opts(DType::F32),
    )
    .unwrap();
    let x = pair_input();
    let rows = x.input_ids.dim(0).unwrap();
    let out = m.forward(&x, &Mode::eval()).unwrap();
    let logits = out.logits().unwrap();
    // Σ logits: the loss itself introduces no constant with a gradient.
    let store = logits.sum_all().unwrap().backward().unwrap();
    let params = m.named_parameters();
    let mut with_grad = 0;
    for (name, v) in &params {
        if let Some(g) = store.get(v.as_tensor()) {
            assert!(
                !g.track_op(),
                "{name}: its gradient holds an autograd graph"
            );
            with_grad += 1;
        }
    }
    let kept: Vec<Vec<usize>> = store
        .get_ids()
        .filter(|id| !params.iter().any(|(_, v)| v.as_tensor().id() == **id))
        .map(|id| store.get_id(*id).unwrap().dims().to_vec())
        .collect();
    assert!(kept.is_empty(), "gradients kept for constants: {kept:?}");
    assert_eq!(with_grad, params.len(), "every parameter has a gradient");
    assert!(rows >= 2);
}
