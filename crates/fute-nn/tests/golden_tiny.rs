//! Parity with PyTorch + transformers on a tiny random BERT
//! (fixtures from `scripts/golden/bert_golden.py`, float64 references).
//!
//! Tolerances (normwise relative error, max|ours − ref| / max|ref|), for every
//! output, loss and parameter gradient: f64 path ≤ 1e-12 (reached: ≤ 2e-14),
//! f32 path ≤ 2e-5 (reached: ≤ 5e-6). Run with `--nocapture` to see the errors.

mod common;

use fute_nn::TaskModel;
use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use common::{assert_close, fixture, input_from_json, json, tensors};
use fute_nn::{
    loss, BertInput, BertTaskModel, BuildOptions, HeadSpec, Mode, TextInput, TextTokenizer,
    Truncation,
};

fn load(
    spec: HeadSpec,
    dtype: DType,
    golden: &HashMap<String, Tensor>,
    head: &str,
) -> BertTaskModel {
    let opts = BuildOptions {
        dtype,
        device: Device::Cpu,
        seed: 0,
        ..Default::default()
    };
    let model = BertTaskModel::from_folder(fixture("tiny-bert"), spec, &opts).unwrap();
    let prefix = format!("{head}.head.");
    for (name, t) in golden {
        if let Some(param) = name.strip_prefix(&prefix) {
            model.set_parameter(param, t).unwrap();
        }
    }
    model
}

/// Compares every parameter's gradient with the golden `<head>.grad.<name>`;
/// returns the worst error.
fn compare_grads(
    model: &BertTaskModel,
    loss: &Tensor,
    golden: &HashMap<String, Tensor>,
    head: &str,
    tol: f64,
) -> f64 {
    let grads = loss.backward().unwrap();
    let params = model.named_parameters();
    let prefix = format!("{head}.grad.");
    let golden_names: Vec<_> = golden.keys().filter(|k| k.starts_with(&prefix)).collect();
    assert_eq!(
        golden_names.len(),
        params.len(),
        "{head}: parameter count differs from torch"
    );
    let mut worst: f64 = 0.0;
    for (name, var) in &params {
        let want = golden
            .get(&format!("{prefix}{name}"))
            .unwrap_or_else(|| panic!("{head}: torch has no parameter {name}"));
        let got = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        // Some gradients are exactly zero in exact arithmetic (key biases: softmax
        // ignores a per-query constant; the last LayerNorm bias under the span loss:
        // a constant added to every position's logit). The f64 reference then holds
        // rounding noise only, so check ours is just as negligible.
        let max_abs = |t: &Tensor| -> f64 {
            let m = t.abs().unwrap().max_all().unwrap();
            m.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
        };
        if max_abs(want) < 1e-12 {
            let floor = if got.dtype() == DType::F64 {
                1e-12
            } else {
                1e-5
            };
            assert!(
                max_abs(got) < floor,
                "{name}: {} should be ~0",
                max_abs(got)
            );
            continue;
        }
        worst = worst.max(assert_close(&format!("{head} grad {name}"), got, want, tol));
    }
    worst
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

fn run_parity(dtype: DType, tol: f64) {
    let meta = json("tiny-golden.json");
    let golden = tensors("tiny-golden.safetensors");
    let single = input_from_json(&meta["single"]);
    let pair = input_from_json(&meta["pair"]);
    let eval = Mode::eval();
    let mut report = Vec::new();

    // Encoder outputs (from the classification model, which has the pooler).
    let cls = load(
        HeadSpec::Classification { num_labels: 3 },
        dtype,
        &golden,
        "cls",
    );
    for (name, input) in [("single", &single), ("pair", &pair)] {
        let out = cls.bert.forward(input, &eval).unwrap();
        let e1 = assert_close(
            &format!("{name} hidden"),
            &out.sequence_output,
            &golden[&format!("{name}.last_hidden_state")],
            tol,
        );
        let e2 = assert_close(
            &format!("{name} pooled"),
            out.pooled_output.as_ref().unwrap(),
            &golden[&format!("{name}.pooler_output")],
            tol,
        );
        report.push((format!("{name} hidden/pooled"), e1.max(e2)));
    }

    // Classification on the pair batch.
    let labels = Tensor::new(&[2u32, 0, 1], &Device::Cpu).unwrap();
    let logits = cls.forward(&pair, &eval).unwrap().logits().unwrap().clone();
    report.push((
        "cls logits".into(),
        assert_close("cls logits", &logits, &golden["cls.logits"], tol),
    ));
    let l = loss::cross_entropy(&logits, &labels).unwrap();
    let want = meta["cls"]["loss"].as_f64().unwrap();
    let le = (scalar(&l) - want).abs() / want.abs();
    assert!(le <= tol, "cls loss {} vs {want}", scalar(&l));
    report.push(("cls loss".into(), le));
    report.push((
        "cls grads".into(),
        compare_grads(&cls, &l, &golden, "cls", tol),
    ));

    // Regression on the single batch.
    let reg = load(HeadSpec::Regression, dtype, &golden, "reg");
    let scores = reg
        .forward(&single, &eval)
        .unwrap()
        .scores()
        .unwrap()
        .clone();
    report.push((
        "reg scores".into(),
        assert_close("reg scores", &scores, &golden["reg.scores"], tol),
    ));
    let targets: Vec<f64> = serde_json::from_value(meta["reg"]["targets"].clone()).unwrap();
    let targets = Tensor::new(targets.as_slice(), &Device::Cpu).unwrap();
    let l = loss::mse(&scores, &targets).unwrap();
    let want = meta["reg"]["loss"].as_f64().unwrap();
    let le = (scalar(&l) - want).abs() / want.abs();
    assert!(le <= tol, "reg loss {} vs {want}", scalar(&l));
    report.push(("reg loss".into(), le));
    report.push((
        "reg grads".into(),
        compare_grads(&reg, &l, &golden, "reg", tol),
    ));

    // Extractive QA on the pair batch.
    let qa = load(HeadSpec::QuestionAnswering, dtype, &golden, "qa");
    let out = qa.forward(&pair, &eval).unwrap();
    let (start, end) = out.span().unwrap();
    let e1 = assert_close("qa start", start, &golden["qa.start_logits"], tol);
    let e2 = assert_close("qa end", end, &golden["qa.end_logits"], tol);
    report.push(("qa start/end logits".into(), e1.max(e2)));
    let pos = |k: &str| -> Tensor {
        let v: Vec<u32> = serde_json::from_value(meta["qa"][k].clone()).unwrap();
        Tensor::new(v.as_slice(), &Device::Cpu).unwrap()
    };
    let l = loss::span_cross_entropy(start, end, &pos("start_positions"), &pos("end_positions"))
        .unwrap();
    let want = meta["qa"]["loss"].as_f64().unwrap();
    let le = (scalar(&l) - want).abs() / want.abs();
    assert!(le <= tol, "qa loss {} vs {want}", scalar(&l));
    report.push(("qa loss".into(), le));
    report.push((
        "qa grads".into(),
        compare_grads(&qa, &l, &golden, "qa", tol),
    ));

    for (what, e) in report {
        eprintln!("{dtype:?} {what}: relative error {e:.2e}");
    }
}

#[test]
fn tiny_bert_matches_pytorch_in_f64() {
    run_parity(DType::F64, 1e-12);
}

#[test]
fn tiny_bert_matches_pytorch_in_f32() {
    run_parity(DType::F32, 2e-5);
}

#[test]
fn tiny_tokenizer_matches_hf_ids() {
    let meta = json("tiny-golden.json");
    let tok = TextTokenizer::from_folder(fixture("tiny-bert")).unwrap();
    let singles: Vec<String> = serde_json::from_value(meta["single_texts"].clone()).unwrap();
    let pairs: Vec<(String, String)> = serde_json::from_value(meta["pair_texts"].clone()).unwrap();
    let inputs: Vec<TextInput> = singles.iter().map(|s| TextInput::Single(s)).collect();
    let batch = tok
        .encode_batch(&inputs, 64, Truncation::LongestFirst)
        .unwrap();
    check_batch(&batch.to_input(&Device::Cpu).unwrap(), &meta["single"]);
    let inputs: Vec<TextInput> = pairs.iter().map(|(a, b)| TextInput::Pair(a, b)).collect();
    let batch = tok
        .encode_batch(&inputs, 64, Truncation::LongestFirst)
        .unwrap();
    check_batch(&batch.to_input(&Device::Cpu).unwrap(), &meta["pair"]);
}

fn check_batch(ours: &BertInput, hf: &serde_json::Value) {
    let hf = input_from_json(hf);
    for (a, b, what) in [
        (&ours.input_ids, &hf.input_ids, "input_ids"),
        (
            ours.token_type_ids.as_ref().unwrap(),
            hf.token_type_ids.as_ref().unwrap(),
            "token_type_ids",
        ),
        (&ours.attention_mask, &hf.attention_mask, "attention_mask"),
    ] {
        assert_eq!(
            a.to_vec2::<u32>().unwrap(),
            b.to_vec2::<u32>().unwrap(),
            "{what} differ from the HF tokenizer"
        );
    }
}

#[test]
fn loss_functions_match_pytorch() {
    let meta = json("tiny-golden.json");
    let l = &meta["losses"];
    let mat = |v: &serde_json::Value| -> Tensor {
        let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).unwrap();
        let (r, c) = (rows.len(), rows[0].len());
        Tensor::from_vec(rows.concat(), (r, c), &Device::Cpu).unwrap()
    };
    let soft = mat(&l["soft_targets"]);
    let hard: Vec<u32> = serde_json::from_value(l["hard_labels"].clone()).unwrap();
    let hard = Tensor::new(hard.as_slice(), &Device::Cpu).unwrap();
    type LossFn<'a> = Box<dyn Fn(&Tensor) -> Tensor + 'a>;
    let cases: Vec<(&str, LossFn)> = vec![
        (
            "bce_with_logits",
            Box::new(|x| loss::bce_with_logits(x, &soft).unwrap()),
        ),
        (
            "soft_cross_entropy",
            Box::new(|x| loss::soft_cross_entropy(x, &soft).unwrap()),
        ),
        (
            "kl_to_targets",
            Box::new(|x| loss::kl_to_targets(x, &soft).unwrap()),
        ),
        (
            "cross_entropy",
            Box::new(|x| loss::cross_entropy(x, &hard).unwrap()),
        ),
        ("mse", Box::new(|x| loss::mse(x, &soft).unwrap())),
    ];
    for (name, f) in cases {
        for dtype in [DType::F64, DType::F32] {
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-6 };
            let var =
                candle_core::Var::from_tensor(&mat(&l["logits"]).to_dtype(dtype).unwrap()).unwrap();
            let value = f(var.as_tensor());
            let want = l["results"][name]["value"].as_f64().unwrap();
            let got = scalar(&value);
            assert!(
                (got - want).abs() <= tol * want.abs().max(1.0),
                "{name} {dtype:?}: {got} vs {want}"
            );
            let grads = value.backward().unwrap();
            let g = grads.get(var.as_tensor()).unwrap();
            assert_close(
                &format!("{name} {dtype:?} grad"),
                g,
                &mat(&l["results"][name]["grad"]),
                tol,
            );
        }
    }
}
