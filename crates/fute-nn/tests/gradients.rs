//! Every parameter gets a gradient; f64 finite differences agree with backprop;
//! dropout is on in training mode and off in evaluation mode.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{tiny_input, tiny_model};
use fute_nn::TaskModel;
use fute_nn::{loss, BertInput, BertTaskModel, HeadSpec, Mode, TaskOutput};

fn labels(v: &[u32]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

/// The loss of each head on the tiny batch.
fn head_loss(model: &BertTaskModel, input: &BertInput, mode: &Mode) -> Tensor {
    match model.forward(input, mode).unwrap() {
        TaskOutput::Logits(l) => loss::cross_entropy(&l, &labels(&[2, 0, 1])).unwrap(),
        TaskOutput::Scores(s) => {
            let t = Tensor::new(&[0.5f64, -1.0, 2.0], &Device::Cpu)
                .unwrap()
                .to_dtype(s.dtype())
                .unwrap();
            loss::mse(&s, &t).unwrap()
        }
        TaskOutput::Span { start, end } => {
            loss::span_cross_entropy(&start, &end, &labels(&[1, 5, 3]), &labels(&[2, 6, 4]))
                .unwrap()
        }
    }
}

fn assert_every_parameter_has_gradient(spec: HeadSpec) {
    let model = tiny_model(spec, DType::F32, 7);
    let input = tiny_input();
    // Training mode: gradients must also flow through the dropout masks.
    let l = head_loss(&model, &input, &Mode::train(1));
    let grads = l.backward().unwrap();
    let params = model.named_parameters();
    assert!(params.len() >= 39, "only {} parameters", params.len());
    let mut missing = Vec::new();
    for (name, var) in &params {
        match grads.get(var.as_tensor()) {
            None => missing.push(name.clone()),
            Some(g) => {
                assert_eq!(g.dims(), var.dims(), "{name}");
                let norm = g
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(norm.is_finite(), "{name}: gradient norm² {norm}");
                // The key bias adds the same q·b to every score of a query, which softmax
                // ignores: its true gradient is zero (only rounding noise remains).
                if !name.ends_with("attention.self.key.bias") {
                    assert!(norm > 0.0, "{name}: zero gradient");
                }
            }
        }
    }
    assert!(missing.is_empty(), "{spec:?}: no gradient for {missing:?}");
}

#[test]
fn every_parameter_gets_a_gradient_classification() {
    assert_every_parameter_has_gradient(HeadSpec::Classification { num_labels: 3 });
}

#[test]
fn every_parameter_gets_a_gradient_regression() {
    assert_every_parameter_has_gradient(HeadSpec::Regression);
}

#[test]
fn every_parameter_gets_a_gradient_question_answering() {
    assert_every_parameter_has_gradient(HeadSpec::QuestionAnswering);
}

/// Central finite differences in f64 (step 1e-5) against backprop for entries of
/// every kind of parameter. Tolerance: |analytic − numeric| ≤ 1e-6·max(|numeric|, 1e-3).
fn finite_difference_check(spec: HeadSpec, checks: &[(&str, usize)]) {
    let model = tiny_model(spec, DType::F64, 11);
    let input = tiny_input();
    let eval = Mode::eval();
    let loss_value =
        |m: &BertTaskModel| -> f64 { head_loss(m, &input, &eval).to_scalar::<f64>().unwrap() };
    let grads = head_loss(&model, &input, &eval).backward().unwrap();
    let eps = 1e-5;
    let mut worst: f64 = 0.0;
    for (name, index) in checks {
        let var = model
            .parameter(name)
            .unwrap_or_else(|| panic!("no parameter {name}"));
        let original = var.as_tensor().copy().unwrap();
        let shape = original.dims().to_vec();
        let flat = original.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let analytic = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"))
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()[*index];
        let eval_at = |delta: f64| {
            let mut v = flat.clone();
            v[*index] += delta;
            var.set(&Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap())
                .unwrap();
            loss_value(&model)
        };
        let numeric = (eval_at(eps) - eval_at(-eps)) / (2.0 * eps);
        var.set(&original).unwrap();
        let err = (analytic - numeric).abs() / numeric.abs().max(1e-3);
        worst = worst.max(err);
        assert!(
            err <= 1e-6,
            "{name}[{index}]: analytic {analytic:.10e} vs numeric {numeric:.10e} (rel {err:.2e})"
        );
        assert!(
            numeric.abs() > 1e-8,
            "{name}[{index}]: gradient too small to test ({numeric:e})"
        );
    }
    eprintln!("{spec:?}: worst finite-difference relative error {worst:.2e}");
}

#[test]
fn finite_differences_match_backprop_sequence_head() {
    let h = 12;
    // Token 7 is used (row 7 of the word embeddings); position 2 and type 1 rows are used.
    finite_difference_check(
        HeadSpec::Classification { num_labels: 3 },
        &[
            ("bert.embeddings.word_embeddings.weight", 7 * h + 3),
            ("bert.embeddings.position_embeddings.weight", 2 * h + 5),
            ("bert.embeddings.token_type_embeddings.weight", h + 1),
            ("bert.embeddings.LayerNorm.weight", 4),
            ("bert.embeddings.LayerNorm.bias", 9),
            ("bert.encoder.layer.0.attention.self.query.weight", 17),
            ("bert.encoder.layer.0.attention.self.key.weight", 40),
            ("bert.encoder.layer.0.attention.self.value.weight", 77),
            ("bert.encoder.layer.1.attention.self.query.bias", 3),
            ("bert.encoder.layer.0.attention.output.dense.weight", 30),
            ("bert.encoder.layer.0.attention.output.LayerNorm.weight", 2),
            ("bert.encoder.layer.1.attention.output.LayerNorm.bias", 6),
            ("bert.encoder.layer.0.intermediate.dense.weight", 100),
            ("bert.encoder.layer.1.intermediate.dense.bias", 5),
            ("bert.encoder.layer.1.output.dense.weight", 50),
            ("bert.encoder.layer.1.output.LayerNorm.weight", 11),
            ("bert.encoder.layer.1.output.LayerNorm.bias", 0),
            ("bert.pooler.dense.weight", 13),
            ("bert.pooler.dense.bias", 4),
            ("classifier.weight", 20),
            ("classifier.bias", 1),
        ],
    );
}

#[test]
fn finite_differences_match_backprop_regression_and_span_heads() {
    finite_difference_check(
        HeadSpec::Regression,
        &[
            ("classifier.weight", 5),
            ("bert.encoder.layer.1.attention.self.value.bias", 2),
        ],
    );
    finite_difference_check(
        HeadSpec::QuestionAnswering,
        &[
            ("qa_outputs.weight", 14),
            ("bert.encoder.layer.0.attention.self.query.weight", 3),
            ("bert.encoder.layer.1.output.dense.bias", 3),
            ("bert.embeddings.word_embeddings.weight", 13 * 12 + 2),
        ],
    );
}

#[test]
fn dropout_active_in_train_mode_only() {
    let model = tiny_model(HeadSpec::Classification { num_labels: 3 }, DType::F32, 3);
    let input = tiny_input();
    let logits = |mode: &Mode| -> Vec<f32> {
        model
            .forward(&input, mode)
            .unwrap()
            .logits()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let e1 = logits(&Mode::eval());
    let e2 = logits(&Mode::eval());
    assert_eq!(e1, e2, "eval mode must be deterministic");
    let t1 = logits(&Mode::train(42));
    let t1_again = logits(&Mode::train(42));
    let t2 = logits(&Mode::train(43));
    assert_ne!(t1, e1, "train mode must drop units");
    assert_eq!(t1, t1_again, "same dropout seed, same result");
    assert_ne!(t1, t2, "different dropout seeds, different masks");

    // The mask itself: about p of the units are zeroed, the rest scaled by 1/(1-p).
    let x = Tensor::ones((100, 100), DType::F32, &Device::Cpu).unwrap();
    let y: Vec<f32> = Mode::train(5)
        .dropout(&x, 0.25)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let zeros = y.iter().filter(|v| **v == 0.0).count() as f64 / y.len() as f64;
    assert!((zeros - 0.25).abs() < 0.02, "dropped fraction {zeros}");
    assert!(y
        .iter()
        .all(|v| *v == 0.0 || (*v - 1.0 / 0.75).abs() < 1e-6));
    let same = Mode::eval().dropout(&x, 0.25).unwrap();
    assert_eq!(
        same.sum_all().unwrap().to_scalar::<f32>().unwrap(),
        10_000.0
    );
}

#[test]
fn fresh_heads_are_seeded() {
    let a = tiny_model(HeadSpec::Classification { num_labels: 3 }, DType::F32, 9);
    let b = tiny_model(HeadSpec::Classification { num_labels: 3 }, DType::F32, 9);
    let c = tiny_model(HeadSpec::Classification { num_labels: 3 }, DType::F32, 10);
    let w = |m: &BertTaskModel| -> Vec<f32> {
        m.parameter("classifier.weight")
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    assert_eq!(w(&a), w(&b));
    assert_ne!(w(&a), w(&c));
    // Normal(0, initializer_range = 0.3) within sampling error.
    let v = w(&a);
    let std = (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
    assert!((0.2..0.4).contains(&std), "std {std}");
}
