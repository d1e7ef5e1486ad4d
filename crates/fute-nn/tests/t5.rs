//! T5-specific behaviour beyond the shared conformance suite
//! (`tests/conformance.rs`), against fixtures made by
//! `scripts/golden/t5_golden.py`:
//! * relative position buckets equal transformers' for every distance to ±300;
//! * a second configuration (original T5's ReLU feed-forward, tied embeddings,
//!   `num_heads · d_kv ≠ d_model`, default decoder depth): logits, loss and every
//!   gradient equal transformers', float64;
//! * soft prompt and key/value prefix hooks (prefixes as transformers' cache of
//!   past keys/values, in encoder and decoder) against transformers, values and
//!   gradients of the prompt / prefixes, float64;
//! * LoRA on `q`, `v` reaches the self- and cross-attention (merged weights give
//!   the adapted model's logits); BitFit is refused (no biases);
//! * the QA class (no base prefix) still tells its head from its backbone, for
//!   PEFT's trainable set and Fisher scopes;
//! * padding after the last eos never changes the sequence logits;
//! * clear errors for configs and checkpoints that do not fit, and for inputs
//!   without eos.
//!
//! Run with `--nocapture` to see the errors reached.

mod common;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use fute_nn::fisher::{fisher_embedding, FisherExample, FisherOptions, FisherScope, FisherTarget};
use fute_nn::models::t5::{relative_position_bucket, T5TaskModel};
use fute_nn::peft::{LoraConfig, Peft, PeftConfig};
use fute_nn::Encoding;
use fute_nn::{loss, models, BuildOptions, Error, HeadSpec, Hooks, Mode, ModelInput, TaskModel};

fn conformance_model() -> PathBuf {
    common::fixture("conformance").join("t5").join("model")
}

fn opts(dtype: DType) -> BuildOptions {
    BuildOptions {
        dtype,
        device: Device::Cpu,
        seed: 4,
        ..Default::default()
    }
}

fn input(v: &serde_json::Value) -> ModelInput {
    ModelInput {
        input_ids: common::ids_tensor(&v["input_ids"]),
        token_type_ids: None,
        attention_mask: common::ids_tensor(&v["attention_mask"]),
    }
}

fn pair_input() -> ModelInput {
    input(&common::json("conformance/t5/golden.json")["pair"])
}

#[test]
fn relative_position_buckets_equal_transformers() {
    let g = common::json("t5/buckets.json");
    let rel: Vec<i64> = serde_json::from_value(g["relative_positions"].clone()).unwrap();
    for (nb, md) in [(32, 128), (8, 6)] {
        for bidi in [true, false] {
            let key = format!("{}_{nb}_{md}", if bidi { "bi" } else { "causal" });
            let want: Vec<u32> = serde_json::from_value(g[&key].clone()).unwrap();
            for (r, w) in rel.iter().zip(&want) {
                assert_eq!(
                    relative_position_bucket(*r, bidi, nb, md),
                    *w,
                    "{key}: relative position {r}"
                );
            }
        }
    }
}

#[test]
fn relu_tied_narrow_heads_match_transformers() {
    let meta = common::json("t5/relu/golden.json");
    let g = common::tensors("t5/relu/golden.safetensors");
    let m = models::load(
        &common::fixture("t5/relu/model"),
        HeadSpec::Classification { num_labels: 2 },
        &opts(DType::F64),
    )
    .unwrap();
    for (name, t) in &g {
        if let Some(p) = name.strip_prefix("head.") {
            m.set_parameter(p, t).unwrap();
        }
    }
    let out = m.forward(&input(&meta), &Mode::eval()).unwrap();
    let logits = out.logits().unwrap();
    let e_out = common::assert_close("logits", logits, &g["logits"], 1e-10);
    let labels: Vec<u32> = serde_json::from_value(meta["labels"].clone()).unwrap();
    let l = loss::cross_entropy(
        logits,
        &Tensor::new(labels.as_slice(), &Device::Cpu).unwrap(),
    )
    .unwrap();
    let want = meta["loss"].as_f64().unwrap();
    let e_loss = (l.to_scalar::<f64>().unwrap() - want).abs() / want;
    assert!(e_loss < 1e-12, "loss {e_loss:e}");
    let grads = l.backward().unwrap();
    let params = m.named_parameters();
    let n_torch = g.keys().filter(|k| k.starts_with("grad.")).count();
    assert_eq!(params.len(), n_torch, "parameter count vs torch");
    let mut worst: f64 = 0.0;
    for (name, var) in &params {
        let got = grads.get(var.as_tensor()).unwrap();
        let e = common::assert_close(name, got, &g[&format!("grad.{name}")], 1e-10);
        worst = worst.max(e);
    }
    println!(
        "relu T5 f64: logits {e_out:.1e}, loss {e_loss:.1e}, worst of {} gradients {worst:.1e}",
        params.len()
    );
}

/// A `Var` holding `t`, so its gradient can be read.
fn var(t: &Tensor) -> Var {
    Var::from_tensor(t).unwrap()
}

#[test]
fn prompt_and_prefix_hooks_match_transformers() {
    let g = common::tensors("t5/hooks.safetensors");
    let m = models::load(
        &conformance_model(),
        HeadSpec::QuestionAnswering,
        &opts(DType::F64),
    )
    .unwrap();
    let x = pair_input();
    let w = &g["weights"];
    let objective = |h: &Tensor| (h * w).unwrap().sum_all().unwrap();

    let prompt = var(&g["prompt"]);
    let hooks = Hooks {
        prompt: Some(prompt.as_tensor()),
        ..Default::default()
    };
    let out = m.forward_with(&x, &Mode::eval(), &hooks).unwrap();
    let e = common::assert_close(
        "prompt: last hidden state",
        &out.last_hidden_state,
        &g["prompt.last_hidden_state"],
        1e-10,
    );
    let grads = objective(&out.last_hidden_state).backward().unwrap();
    let eg = common::assert_close(
        "prompt: gradient",
        grads.get(prompt.as_tensor()).unwrap(),
        &g["prompt.grad"],
        1e-10,
    );
    println!("prompt: last hidden state {e:.1e}, gradient {eg:.1e}");

    let layers = m.describe().num_layers;
    assert_eq!(layers, 5, "2 encoder + 3 decoder blocks");
    let vars: Vec<(Var, Var)> = (0..layers)
        .map(|i| {
            (
                var(&g[&format!("prefix.k.{i}")]),
                var(&g[&format!("prefix.v.{i}")]),
            )
        })
        .collect();
    let prefix: Vec<(Tensor, Tensor)> = vars
        .iter()
        .map(|(k, v)| (k.as_tensor().clone(), v.as_tensor().clone()))
        .collect();
    let hooks = Hooks {
        prefix: Some(&prefix),
        ..Default::default()
    };
    let out = m.forward_with(&x, &Mode::eval(), &hooks).unwrap();
    let want = &g["prefix.last_hidden_state"];
    let e = common::assert_close(
        "prefix: last hidden state",
        &out.last_hidden_state,
        want,
        1e-10,
    );
    let grads = objective(&out.last_hidden_state).backward().unwrap();
    let mut eg: f64 = 0.0;
    for (i, (k, v)) in vars.iter().enumerate() {
        for (name, t) in [("k", k), ("v", v)] {
            let key = format!("prefix.{name}.{i}.grad");
            eg = eg.max(common::assert_close(
                &key,
                grads.get(t.as_tensor()).unwrap(),
                &g[&key],
                1e-10,
            ));
        }
    }
    println!("prefix: last hidden state {e:.1e}, worst prefix gradient {eg:.1e}");
    // The hooks change the result: a test of nothing would also pass above.
    let plain = m.forward(&x, &Mode::eval()).unwrap();
    let (start, _) = plain.span().unwrap();
    let (hooked, _) = m
        .forward_with(&x, &Mode::eval(), &hooks)
        .unwrap()
        .output
        .span()
        .map(|(a, b)| (a.clone(), b.clone()))
        .unwrap();
    assert!(common::rel_err(&hooked, start) > 1e-3);
}

#[test]
fn lora_on_q_and_v_reaches_self_and_cross_attention() {
    let m = models::load(
        &conformance_model(),
        HeadSpec::Classification { num_labels: 3 },
        &opts(DType::F64),
    )
    .unwrap();
    let x = pair_input();
    let adapted = Peft::adapt(m, &PeftConfig::Lora(LoraConfig::default()), 9).unwrap();
    let names = adapted.peft.own_names().to_vec();
    for want in [
        "transformer.encoder.block.1.layer.0.SelfAttention.q.lora_A",
        "transformer.decoder.block.2.layer.0.SelfAttention.v.lora_B",
        "transformer.decoder.block.0.layer.1.EncDecAttention.q.lora_A",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    assert!(!names
        .iter()
        .any(|n| n.contains("encoder.block.0.layer.1.EncDecAttention")));
    // (2 encoder blocks × 2 + 3 decoder blocks × 4) adapted linears, A and B each.
    assert_eq!(names.len(), 2 * (2 * 2 + 3 * 4));
    for n in names.iter().filter(|n| n.ends_with("lora_B")) {
        let b = adapted.parameter(n).unwrap();
        let r = Tensor::randn(0.0, 0.5, b.dims(), &Device::Cpu).unwrap();
        adapted.set_parameter(n, &r).unwrap();
    }
    let with_lora = adapted.forward(&x, &Mode::eval()).unwrap();
    adapted.peft.merge_into(&adapted.model).unwrap();
    let merged = adapted.model.forward(&x, &Mode::eval()).unwrap();
    let e = common::assert_close(
        "merged LoRA",
        merged.logits().unwrap(),
        with_lora.logits().unwrap(),
        1e-10,
    );
    println!("LoRA adapted vs merged logits {e:.1e}");
}

#[test]
fn bitfit_is_refused_for_lack_of_biases() {
    let m = models::load(
        &conformance_model(),
        HeadSpec::Classification { num_labels: 2 },
        &opts(DType::F32),
    )
    .unwrap();
    let err = Peft::attach(m.as_ref(), &PeftConfig::BitFit, 1).unwrap_err();
    assert!(err.is_user_error());
    let msg = err.to_string();
    assert!(msg.contains("t5") && msg.contains("bias"), "{msg}");
}

#[test]
fn prefix_needs_heads_times_d_kv_equal_to_d_model() {
    let m = models::load(
        &common::fixture("t5/relu/model"),
        HeadSpec::Classification { num_labels: 2 },
        &opts(DType::F32),
    )
    .unwrap();
    let adapted = Peft::adapt(m, &PeftConfig::Prefix(Default::default()), 1).unwrap();
    let x = input(&common::json("t5/relu/golden.json"));
    let err = adapted.forward(&x, &Mode::eval()).unwrap_err();
    assert!(err.is_user_error());
    assert!(
        err.to_string().contains("num_heads · d_kv = d_model"),
        "{err}"
    );
}

#[test]
fn head_reads_the_last_eos_and_ignores_padding_after_it() {
    let cls = models::load(
        &conformance_model(),
        HeadSpec::Classification { num_labels: 3 },
        &opts(DType::F64),
    )
    .unwrap();
    // Padding after the last eos never changes the sequence logits
    // (transformers reads the state at the last eos; the decoder is causal).
    let x = |row: Vec<u32>| {
        let n = row.len();
        ModelInput {
            input_ids: Tensor::from_vec(row, (1, n), &Device::Cpu).unwrap(),
            token_type_ids: None,
            attention_mask: Tensor::ones((1, n), DType::U32, &Device::Cpu).unwrap(),
        }
    };
    let short = cls
        .forward(&x(vec![2, 10, 11, 3, 12, 13, 3]), &Mode::eval())
        .unwrap();
    let longer = cls
        .forward(&x(vec![2, 10, 11, 3, 12, 13, 3, 20, 21]), &Mode::eval())
        .unwrap();
    // The encoder sees the two extra tokens (they are attended), so the
    // logits differ; with them masked out they must not.
    let mut masked = x(vec![2, 10, 11, 3, 12, 13, 3, 20, 21]);
    masked.attention_mask = Tensor::new(&[[1u32, 1, 1, 1, 1, 1, 1, 0, 0]], &Device::Cpu).unwrap();
    let masked = cls.forward(&masked, &Mode::eval()).unwrap();
    let e = common::rel_err(masked.logits().unwrap(), short.logits().unwrap());
    assert!(
        e < 1e-12,
        "padding after the last eos changed the logits: {e:e}"
    );
    assert!(common::rel_err(longer.logits().unwrap(), short.logits().unwrap()) > 1e-6);

    let err = cls
        .forward(&x(vec![2, 10, 11, 12]), &Mode::eval())
        .unwrap_err();
    assert!(err.is_user_error());
    assert!(
        err.to_string().contains("no end-of-sequence token (id 3)"),
        "{err}"
    );
}

/// Copies the conformance model into `dir` with its config edited.
fn copy_with_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    std::fs::create_dir_all(dir).unwrap();
    let src = conformance_model();
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
}

fn load_err(edit: impl FnOnce(&mut serde_json::Value)) -> Error {
    let tmp = tempfile::tempdir().unwrap();
    copy_with_config(tmp.path(), edit);
    let err =
        T5TaskModel::from_folder(tmp.path(), HeadSpec::Regression, &opts(DType::F32)).unwrap_err();
    assert!(err.is_user_error(), "{err:?}");
    err
}

#[test]
fn configs_and_checkpoints_that_do_not_fit_are_named() {
    let err = load_err(|c| {
        c.as_object_mut().unwrap().remove("d_kv");
    });
    let msg = err.to_string();
    assert!(
        matches!(err, Error::MissingField { .. })
            && msg.contains("config.json")
            && msg.contains("d_kv"),
        "{msg}"
    );
    // Generic names are read as T5's own (transformers' attribute_map).
    let tmp = tempfile::tempdir().unwrap();
    copy_with_config(tmp.path(), |c| {
        let o = c.as_object_mut().unwrap();
        let v = o.remove("d_model").unwrap();
        o.insert("hidden_size".into(), v);
    });
    T5TaskModel::from_folder(tmp.path(), HeadSpec::Regression, &opts(DType::F32)).unwrap();

    let err = load_err(|c| c["d_ff"] = 30.into());
    let msg = err.to_string();
    assert!(
        matches!(err, Error::ShapeMismatch { .. })
            && msg.contains("model.safetensors")
            && msg.contains("DenseReluDense.wi_0.weight")
            && msg.contains("[30, 16]"),
        "{msg}"
    );
    let err = load_err(|c| c["num_decoder_layers"] = 2.into());
    let msg = err.to_string();
    assert!(
        matches!(err, Error::UnexpectedTensors { .. })
            && msg.contains("model.safetensors")
            && msg.contains("decoder.block.2"),
        "{msg}"
    );
    let err = load_err(|c| c["num_layers"] = 3.into());
    let msg = err.to_string();
    assert!(
        matches!(err, Error::MissingTensor { .. })
            && msg.contains("model.safetensors")
            && msg.contains("encoder.block.2.layer.0.SelfAttention.q.weight"),
        "{msg}"
    );
    // A ReLU config over gated weights: `wi` is missing, named.
    let err = load_err(|c| c["feed_forward_proj"] = "relu".into());
    assert!(
        err.to_string().contains("DenseReluDense.wi.weight"),
        "{err}"
    );
    let err = load_err(|c| c["feed_forward_proj"] = "gated-swish".into());
    let msg = err.to_string();
    assert!(
        msg.contains("config.json") && msg.contains("feed_forward_proj `gated-swish`"),
        "{msg}"
    );
    let err = load_err(|c| {
        c["pad_token_id"] = serde_json::Value::Null;
        c.as_object_mut().unwrap().remove("decoder_start_token_id");
    });
    assert!(err.to_string().contains("decoder_start_token_id"), "{err}");
}

#[test]
fn qa_head_is_told_from_the_unprefixed_backbone() {
    let m = models::load(
        &conformance_model(),
        HeadSpec::QuestionAnswering,
        &opts(DType::F32),
    )
    .unwrap();
    let d = m.describe();
    assert_eq!(d.backbone_prefix, "");
    assert!(d.in_backbone("shared.weight") && d.in_backbone("decoder.final_layer_norm.weight"));
    assert!(!d.in_backbone("qa_outputs.weight"));
    let adapted = Peft::adapt(m, &PeftConfig::Prefix(Default::default()), 2).unwrap();
    let trainable = adapted.peft.trainable_names(&adapted);
    assert_eq!(
        trainable,
        [
            "prefix_encoder.embedding.weight",
            "qa_outputs.bias",
            "qa_outputs.weight"
        ]
    );

    let m = models::load(
        &conformance_model(),
        HeadSpec::QuestionAnswering,
        &opts(DType::F32),
    )
    .unwrap();
    let examples: Vec<FisherExample> = (0..3)
        .map(|i| FisherExample {
            encoding: Encoding {
                ids: vec![2, 10 + i, 11, 3, 12, 3],
                type_ids: vec![0; 6],
                sequence_ids: vec![None; 6],
                offsets: vec![None; 6],
                truncated: false,
            },
            target: FisherTarget::Span { start: 4, end: 4 },
        })
        .collect();
    let run = |scope| {
        let opts = FisherOptions {
            scope,
            workers: 1,
            ..Default::default()
        };
        let f = fisher_embedding(m.as_ref(), &examples, &opts).unwrap();
        f.components.into_iter().map(|(n, _)| n).collect::<Vec<_>>()
    };
    let encoder = run(FisherScope::encoder());
    assert!(
        !encoder.iter().any(|n| n.starts_with("qa_outputs")),
        "{encoder:?}"
    );
    for want in [
        "shared.weight",
        "encoder.final_layer_norm.weight",
        "decoder.final_layer_norm.weight",
        "decoder.block.2.layer.1.EncDecAttention.o.weight",
    ] {
        assert!(
            encoder.iter().any(|n| n == want),
            "{want} not in {encoder:?}"
        );
    }
    let all = run(FisherScope::taskemb());
    assert!(all.iter().any(|n| n == "qa_outputs.weight"));
}
