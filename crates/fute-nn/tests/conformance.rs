//! One conformance suite for every registered architecture: one `conformance!`
//! line per entry of `fute_nn::models::ARCHITECTURES`, each on a tiny random
//! model made by `scripts/golden/bert_golden.py --arch NAME` (fixtures under
//! `tests/fixtures/conformance/NAME/`, float64 PyTorch references).
//!
//! Each architecture must, for the classification (3 labels), regression and QA
//! heads:
//! * match transformers: outputs, loss and the gradient of every parameter,
//!   normwise relative error ≤ 1e-10 in f64 and ≤ 1e-4 in f32;
//! * give every parameter a finite gradient, non-zero wherever torch's is;
//! * agree with f64 central finite differences (the largest-gradient entry of
//!   every parameter tensor, error ≤ 1e-6 relative to max(|gradient|, 1e-4));
//! * save → reload bit-identically through the registry (and, with
//!   `FUTE_NN_KEEP_SAVED=DIR`, leave the folders for
//!   `scripts/golden/check_saved.py DIR`, which loads them with transformers);
//! * keep its logits bit-for-bit when LoRA (default targets, `B = 0`) is attached;
//! * yield a Fisher embedding whose every component is a parameter or one of
//!   the model's declared taps, with sparse and dense table gradients agreeing.
//!
//! Run with `--nocapture` to see the errors reached.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use common::rel_err;
use fute_nn::checkpoint::SaveOptions;
use fute_nn::fisher::{
    fisher_embedding, EmbeddingGradients, FisherExample, FisherOptions, FisherScope, FisherTarget,
    FisherVariant,
};
use fute_nn::peft::{LoraConfig, Peft, PeftConfig};
use fute_nn::{
    loss, models, BuildOptions, Encoding, HeadSpec, Mode, ModelInput, TaskModel, TaskOutput,
};

const HEADS: [(&str, HeadSpec, &str); 3] = [
    ("cls", HeadSpec::Classification { num_labels: 3 }, "pair"),
    ("reg", HeadSpec::Regression, "single"),
    ("qa", HeadSpec::QuestionAnswering, "pair"),
];

fn dir(arch: &str) -> PathBuf {
    common::fixture("conformance").join(arch)
}

fn meta(arch: &str) -> serde_json::Value {
    common::json(&format!("conformance/{arch}/golden.json"))
}

fn golden(arch: &str) -> HashMap<String, Tensor> {
    common::tensors(&format!("conformance/{arch}/golden.safetensors"))
}

fn input(meta: &serde_json::Value, batch: &str) -> ModelInput {
    let b = &meta[batch];
    ModelInput {
        input_ids: common::ids_tensor(&b["input_ids"]),
        token_type_ids: b.get("token_type_ids").map(common::ids_tensor),
        attention_mask: common::ids_tensor(&b["attention_mask"]),
    }
}

/// The fixture's base model with head `spec`, its head weights set to torch's.
fn load(arch: &str, tag: &str, spec: HeadSpec, dtype: DType) -> Box<dyn TaskModel> {
    let opts = BuildOptions {
        dtype,
        device: Device::Cpu,
        seed: 0,
        ..Default::default()
    };
    let m = models::load(&dir(arch).join("model"), spec, &opts).unwrap();
    let prefix = format!("{tag}.head.");
    let g = golden(arch);
    let mut n = 0;
    for (name, t) in &g {
        if let Some(p) = name.strip_prefix(&prefix) {
            m.set_parameter(p, t).unwrap();
            n += 1;
        }
    }
    assert!(n > 0, "{arch}/{tag}: no head weights in the fixture");
    m
}

/// The head's loss on the fixture's targets.
fn head_loss(out: &TaskOutput, meta: &serde_json::Value, tag: &str) -> Tensor {
    let u32s = |v: &serde_json::Value| -> Tensor {
        let v: Vec<u32> = serde_json::from_value(v.clone()).unwrap();
        Tensor::new(v.as_slice(), &Device::Cpu).unwrap()
    };
    match out {
        TaskOutput::Logits(l) => loss::cross_entropy(l, &u32s(&meta[tag]["labels"])).unwrap(),
        TaskOutput::Scores(s) => {
            let v: Vec<f64> = serde_json::from_value(meta[tag]["targets"].clone()).unwrap();
            let y = Tensor::new(v.as_slice(), &Device::Cpu)
                .unwrap()
                .to_dtype(s.dtype())
                .unwrap();
            loss::mse(s, &y).unwrap()
        }
        TaskOutput::Span { start, end } => loss::span_cross_entropy(
            start,
            end,
            &u32s(&meta[tag]["start_positions"]),
            &u32s(&meta[tag]["end_positions"]),
        )
        .unwrap(),
    }
}

fn outputs(out: &TaskOutput) -> Vec<(&'static str, Tensor)> {
    match out {
        TaskOutput::Logits(l) => vec![("logits", l.clone())],
        TaskOutput::Scores(s) => vec![("scores", s.clone())],
        TaskOutput::Span { start, end } => {
            vec![("start_logits", start.clone()), ("end_logits", end.clone())]
        }
    }
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

fn max_abs(t: &Tensor) -> f64 {
    scalar(&t.abs().unwrap().max_all().unwrap())
}

/// Outputs, loss and every gradient against torch; returns the worst error of each.
fn parity(arch: &str, dtype: DType, tol: f64) {
    let meta = meta(arch);
    let g = golden(arch);
    for (tag, spec, batch) in HEADS {
        let m = load(arch, tag, spec, dtype);
        let out = m.forward(&input(&meta, batch), &Mode::eval()).unwrap();
        let mut worst_out: f64 = 0.0;
        for (what, got) in outputs(&out) {
            let want = &g[&format!("{tag}.{what}")];
            worst_out = worst_out.max(rel_err(&got, want));
        }
        let l = head_loss(&out, &meta, tag);
        let want = meta[tag]["loss"].as_f64().unwrap();
        let loss_err = (scalar(&l) - want).abs() / want.abs();
        let grads = l.backward().unwrap();
        let params = m.named_parameters();
        let prefix = format!("{tag}.grad.");
        let n_torch = g.keys().filter(|k| k.starts_with(&prefix)).count();
        assert_eq!(
            params.len(),
            n_torch,
            "{arch}/{tag}: parameter count vs torch"
        );
        let mut worst_grad: f64 = 0.0;
        for (name, var) in &params {
            let want = g
                .get(&format!("{prefix}{name}"))
                .unwrap_or_else(|| panic!("{arch}/{tag}: torch has no parameter {name}"));
            let got = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{arch}/{tag}: no gradient for {name}"));
            // torch's layout (GPT-2's Conv1D weights are `[in, out]` there).
            let got = &m.checkpoint_layout(name, got).unwrap();
            // Exactly-zero gradients (key biases; the span loss's last LN bias)
            // hold only rounding noise in the reference: ours must be as small.
            if max_abs(want) < 1e-12 {
                let floor = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
                assert!(max_abs(got) < floor, "{arch}/{tag}: {name} should be ~0");
                continue;
            }
            let e = rel_err(got, want);
            assert!(
                e <= tol,
                "{arch}/{tag} {dtype:?}: grad {name} error {e:.2e}"
            );
            worst_grad = worst_grad.max(e);
        }
        println!(
            "{arch} {tag} {dtype:?}: outputs {worst_out:.1e}, loss {loss_err:.1e}, \
             worst of {} gradients {worst_grad:.1e}",
            params.len()
        );
        assert!(
            worst_out <= tol,
            "{arch}/{tag} {dtype:?}: outputs {worst_out:.2e}"
        );
        assert!(
            loss_err <= tol,
            "{arch}/{tag} {dtype:?}: loss {loss_err:.2e}"
        );
    }
}

/// Every parameter gets a finite gradient, non-zero where torch's is.
fn every_parameter_gets_a_gradient(arch: &str) {
    let meta = meta(arch);
    let g = golden(arch);
    for (tag, spec, batch) in HEADS {
        let m = load(arch, tag, spec, DType::F32);
        let out = m.forward(&input(&meta, batch), &Mode::train(3)).unwrap();
        let grads = head_loss(&out, &meta, tag).backward().unwrap();
        for (name, var) in m.named_parameters() {
            let got = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{arch}/{tag}: no gradient for {name}"));
            let norm = max_abs(got);
            assert!(norm.is_finite(), "{arch}/{tag}: {name} gradient {norm}");
            if max_abs(&g[&format!("{tag}.grad.{name}")]) > 1e-9 {
                assert!(norm > 0.0, "{arch}/{tag}: zero gradient for {name}");
            }
        }
    }
}

/// Central differences in f64 on one entry of every parameter tensor.
fn finite_differences(arch: &str) {
    let meta = meta(arch);
    for (tag, spec, batch) in HEADS {
        let m = load(arch, tag, spec, DType::F64);
        let x = input(&meta, batch);
        let eval = Mode::eval();
        let f = || scalar(&head_loss(&m.forward(&x, &eval).unwrap(), &meta, tag));
        let grads = head_loss(&m.forward(&x, &eval).unwrap(), &meta, tag)
            .backward()
            .unwrap();
        let mut checked = 0;
        for (name, var) in m.named_parameters() {
            let original = var.as_tensor().copy().unwrap();
            let flat = original.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let grad = grads
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            // The entry with the largest gradient: its difference quotient is
            // far above rounding noise.
            let (i, &analytic) = grad
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .unwrap();
            if analytic.abs() < 1e-7 {
                continue; // exactly-zero gradients (key biases)
            }
            let eps = 1e-5 * flat[i].abs().max(1.0);
            let at = |d: f64| {
                let mut v = flat.clone();
                v[i] += d;
                var.set(&Tensor::from_vec(v, original.dims(), &Device::Cpu).unwrap())
                    .unwrap();
                f()
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            var.set(&original).unwrap();
            // Relative to the gradient, with a floor of 1e-4 on the scale: tiny
            // gradients (1e-6) leave the quotient's truncation error on top.
            let err = (analytic - numeric).abs() / analytic.abs().max(1e-4);
            assert!(
                err <= 1e-6,
                "{arch}/{tag}: {name}[{i}] analytic {analytic:e} numeric {numeric:e} ({err:.1e})"
            );
            checked += 1;
        }
        assert!(checked > 10, "{arch}/{tag}: only {checked} tensors checked");
    }
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// Save → reload through the registry is bit-identical, outputs included.
fn save_reload_is_bit_identical(arch: &str) {
    let meta = meta(arch);
    let tmp = tempfile::tempdir().unwrap();
    let keep = std::env::var_os("FUTE_NN_KEEP_SAVED").map(|d| PathBuf::from(d).join(arch));
    for (tag, spec, batch) in HEADS {
        let m = load(arch, tag, spec, DType::F32);
        let out_dir = keep
            .clone()
            .unwrap_or_else(|| tmp.path().to_path_buf())
            .join(tag);
        let labels = match spec {
            HeadSpec::Classification { .. } => Some(vec!["neg".into(), "mid".into(), "pos".into()]),
            _ => None,
        };
        let save = SaveOptions {
            labels,
            ..Default::default()
        };
        m.save_pretrained(&out_dir, &save).unwrap();
        let back = models::load_task_folder(&out_dir, &BuildOptions::default()).unwrap();
        assert_eq!(back.head(), spec, "{arch}/{tag}");
        assert_eq!(back.describe().model_type, arch);
        let (a, b) = (m.named_parameters(), back.named_parameters());
        assert_eq!(a.len(), b.len(), "{arch}/{tag}");
        for ((na, va), (nb, vb)) in a.iter().zip(&b) {
            assert_eq!(na, nb);
            assert_eq!(
                bits(va.as_tensor()),
                bits(vb.as_tensor()),
                "{arch}/{tag} {na}"
            );
        }
        let x = input(&meta, batch);
        let (oa, ob) = (
            m.forward(&x, &Mode::eval()).unwrap(),
            back.forward(&x, &Mode::eval()).unwrap(),
        );
        for ((what, ta), (_, tb)) in outputs(&oa).into_iter().zip(outputs(&ob)) {
            assert_eq!(bits(&ta), bits(&tb), "{arch}/{tag} {what}");
        }
        if keep.is_some() {
            let record = serde_json::json!({
                "input": meta[batch],
                "outputs": outputs(&oa).into_iter().map(|(w, t)| {
                    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
                    (w.to_string(), serde_json::json!({"shape": t.dims(), "values": v}))
                }).collect::<serde_json::Map<_, _>>(),
            });
            std::fs::write(out_dir.join("fute_outputs.json"), record.to_string()).unwrap();
        }
    }
}

/// LoRA with its default targets starts as the frozen model (B = 0).
fn lora_at_init_keeps_logits(arch: &str) {
    let meta = meta(arch);
    let x = input(&meta, "pair");
    let m = load(
        arch,
        "cls",
        HeadSpec::Classification { num_labels: 3 },
        DType::F32,
    );
    let before = bits(m.forward(&x, &Mode::eval()).unwrap().logits().unwrap());
    let lora = PeftConfig::Lora(LoraConfig::default());
    let adapted = Peft::adapt(m, &lora, 5).unwrap();
    let n_adapters = adapted.peft.own_names().len();
    let d = adapted.describe();
    let targets = d.lora_targets(&[]).unwrap();
    assert!(!targets.is_empty(), "{arch}: no default LoRA targets");
    // A target is adapted in every layer that has it (T5's encoder blocks
    // have no cross-attention).
    let targeted = d
        .layer_prefixes
        .iter()
        .flat_map(|p| targets.iter().map(move |t| format!("{p}{t}.weight")))
        .filter(|w| adapted.parameter(w).is_some())
        .count();
    assert!(
        targeted >= d.num_layers,
        "{arch}: a default target in every layer"
    );
    assert_eq!(
        n_adapters,
        2 * targeted,
        "{arch}: A, B per default target per layer"
    );
    let after = bits(
        adapted
            .forward(&x, &Mode::eval())
            .unwrap()
            .logits()
            .unwrap(),
    );
    assert_eq!(before, after, "{arch}: LoRA at init changed the logits");
}

/// Every Fisher component is a parameter or a declared tap; sparse and dense
/// embedding-table gradients agree.
fn fisher_components_exist(arch: &str) {
    let meta = meta(arch);
    let m = load(
        arch,
        "cls",
        HeadSpec::Classification { num_labels: 3 },
        DType::F32,
    );
    let ids: Vec<Vec<u32>> = serde_json::from_value(meta["pair"]["input_ids"].clone()).unwrap();
    let mask: Vec<Vec<u32>> =
        serde_json::from_value(meta["pair"]["attention_mask"].clone()).unwrap();
    let examples: Vec<FisherExample> = ids
        .iter()
        .zip(&mask)
        .enumerate()
        .map(|(i, (row, mrow))| {
            let n = mrow.iter().filter(|&&v| v == 1).count();
            FisherExample {
                encoding: Encoding {
                    ids: row[..n].to_vec(),
                    type_ids: vec![0; n],
                    sequence_ids: vec![None; n],
                    offsets: vec![None; n],
                    truncated: false,
                },
                target: FisherTarget::Label(i as u32 % 3),
            }
        })
        .collect();
    let run = |emb| {
        let opts = FisherOptions {
            variant: FisherVariant::PerBatch,
            batch_size: 2,
            scope: FisherScope::taskemb(),
            embedding_gradients: emb,
            workers: 1,
            ..Default::default()
        };
        fisher_embedding(m.as_ref(), &examples, &opts).unwrap()
    };
    let sparse = run(EmbeddingGradients::Sparse);
    let dense = run(EmbeddingGradients::Dense);
    let d = m.describe();
    let mut taps: Vec<&String> = d.layer_taps.iter().flatten().collect();
    taps.extend(d.sequence_tap.as_ref());
    let params: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(sparse.components.len(), params.len() + taps.len(), "{arch}");
    for (name, v) in &sparse.components {
        assert!(
            params.contains(name) || taps.contains(&name),
            "{arch}: component {name} is neither a parameter nor a tap"
        );
        assert!(
            v.iter().all(|x| x.is_finite() && *x >= 0.0),
            "{arch}: {name}"
        );
        let w = dense.get(name).unwrap();
        let scale = w.iter().fold(1e-12f32, |a, b| a.max(b.abs()));
        let diff = v.iter().zip(w).fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        assert!(
            diff / scale < 1e-4,
            "{arch}: {name} sparse vs dense {}",
            diff / scale
        );
    }
}

macro_rules! conformance {
    ($arch:ident) => {
        mod $arch {
            #[test]
            fn pytorch_parity_f64() {
                super::parity(stringify!($arch), candle_core::DType::F64, 1e-10);
            }
            #[test]
            fn pytorch_parity_f32() {
                super::parity(stringify!($arch), candle_core::DType::F32, 1e-4);
            }
            #[test]
            fn every_parameter_gets_a_gradient() {
                super::every_parameter_gets_a_gradient(stringify!($arch));
            }
            #[test]
            fn finite_differences_f64() {
                super::finite_differences(stringify!($arch));
            }
            #[test]
            fn save_reload_is_bit_identical() {
                super::save_reload_is_bit_identical(stringify!($arch));
            }
            #[test]
            fn lora_at_init_keeps_logits() {
                super::lora_at_init_keeps_logits(stringify!($arch));
            }
            #[test]
            fn fisher_components_exist() {
                super::fisher_components_exist(stringify!($arch));
            }
        }
    };
}

conformance!(bert);
conformance!(roberta);
conformance!(distilbert);
conformance!(gpt2);
conformance!(llama);
conformance!(t5);

/// The suite covers exactly the registered architectures.
#[test]
fn every_registered_architecture_has_a_conformance_line() {
    let mut registered = models::supported_model_types();
    registered.sort();
    assert_eq!(
        registered,
        ["bert", "distilbert", "gpt2", "llama", "roberta", "t5"]
    );
}
