//! The training loop: optimiser, schedule, clipping, learning, determinism,
//! early stopping and resuming from a checkpoint.

mod common;

use fute_nn::TaskModel;
use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use common::{fixture, tiny_model};
use fute_nn::rng::SeededRng;
use fute_nn::train::{
    answer_positions, best_span, clip_grad_norm, evaluate, predict, train, AdamW, AdamWConfig,
    Control, Event, LinearSchedule, RawPrediction, TrainConfig, TrainExample, TrainTarget,
};
use fute_nn::{BertTaskModel, Encoding, HeadSpec, TextInput, TextTokenizer, Truncation};

fn vec1(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn enc(ids: Vec<u32>) -> Encoding {
    let n = ids.len();
    let seq = (0..n).map(|i| (i > 0 && i + 1 < n).then_some(0)).collect();
    let offsets = (0..n)
        .map(|i| (i > 0 && i + 1 < n).then_some((i, i + 1)))
        .collect();
    Encoding {
        ids,
        type_ids: vec![0; n],
        sequence_ids: seq,
        offsets,
        truncated: false,
    }
}

/// A learnable toy task for the tiny config (vocab 23, ≤ 16 positions):
/// label 1 when the first word id is ≥ 13.
fn toy_task(n: usize, seed: u64) -> Vec<TrainExample> {
    let rng = SeededRng::new(seed);
    (0..n)
        .map(|_| {
            let len = 2 + (rng.next_u64() % 8) as usize;
            let words: Vec<u32> = (0..len).map(|_| 4 + (rng.next_u64() % 19) as u32).collect();
            let label = u32::from(words[0] >= 13);
            let mut ids = vec![2];
            ids.extend(&words);
            ids.push(3);
            TrainExample {
                encoding: enc(ids),
                target: TrainTarget::Label(label),
            }
        })
        .collect()
}

fn cls() -> HeadSpec {
    HeadSpec::Classification { num_labels: 2 }
}

fn cfg(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 8,
        optimizer: AdamWConfig {
            lr: 3e-3,
            ..Default::default()
        },
        eval_batch_size: 16,
        ..Default::default()
    }
}

fn quiet() -> impl FnMut(&Event) -> Control {
    |_| Control::Continue
}

fn weights_bits(m: &BertTaskModel) -> Vec<(String, Vec<u32>)> {
    m.named_parameters()
        .into_iter()
        .map(|(n, v)| {
            let bits = v
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect();
            (n, bits)
        })
        .collect()
}

#[test]
fn adamw_matches_pytorch_on_two_parameters() {
    // Reference: torch.optim.AdamW(lr=0.01, betas=(0.9, 0.999), eps=1e-8),
    // weight_decay 0.1 on `w`, 0 on `b` (a bias), float64, three steps.
    let dev = Device::Cpu;
    let w = Var::from_tensor(&Tensor::new(&[1.0f64, -2.0], &dev).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::new(&[0.5f64], &dev).unwrap()).unwrap();
    let params = vec![
        ("w.weight".to_string(), w.clone()),
        ("w.bias".to_string(), b.clone()),
    ];
    let mut opt = AdamW::new(AdamWConfig {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.1,
    });
    let steps = [
        ([0.5, -0.1], [2.0]),
        ([-0.3, 0.2], [1.0]),
        ([0.1, 0.4], [-0.5]),
    ];
    let torch = [
        ([0.9890000002, -1.9880000009999999], [0.49000000005]),
        (
            [0.9860960198939775, -1.989673036037849],
            [0.480678203720851],
        ),
        (
            [0.9825702720415429, -1.9946404442532208],
            [0.47504158999804386],
        ),
    ];
    for ((gw, gb), (tw, tb)) in steps.iter().zip(torch) {
        let grads = HashMap::from([
            ("w.weight".to_string(), Tensor::new(gw, &dev).unwrap()),
            ("w.bias".to_string(), Tensor::new(gb, &dev).unwrap()),
        ]);
        opt.step(&params, &grads, 0.01).unwrap();
        for (got, want) in vec1(w.as_tensor()).iter().zip(tw) {
            assert!((got - want).abs() < 1e-12, "w: {got} vs torch {want}");
        }
        assert!((vec1(b.as_tensor())[0] - tb[0]).abs() < 1e-12);
    }
    // Hand-computed first step: m̂ = g, v̂ = g², so p ← p(1 − lr·wd) − lr·g/(|g| + ε).
    let hand = 1.0 * (1.0 - 0.01 * 0.1) - 0.01 * 0.5 / (0.5 + 1e-8);
    assert!((hand - torch[0].0[0]).abs() < 1e-12);
    assert_eq!(opt.state["w.weight"].step, 3);
}

#[test]
fn no_weight_decay_on_bias_and_layernorm() {
    let model = tiny_model(cls(), DType::F32, 1);
    let params = model.named_parameters();
    let before: HashMap<String, Vec<f64>> = params
        .iter()
        .map(|(n, v)| (n.clone(), vec1(v.as_tensor())))
        .collect();
    // Zero gradients: only the decoupled decay can move a parameter.
    let grads: HashMap<String, Tensor> = params
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().zeros_like().unwrap()))
        .collect();
    let mut opt = AdamW::new(AdamWConfig {
        lr: 0.1,
        weight_decay: 0.5,
        ..Default::default()
    });
    opt.step(&params, &grads, 0.1).unwrap();
    let mut decayed = 0;
    for (name, var) in &params {
        let after = vec1(var.as_tensor());
        let frozen = name.ends_with(".bias") || name.contains("LayerNorm");
        for (a, b) in after.iter().zip(&before[name]) {
            if frozen {
                assert_eq!(a, b, "{name} was decayed");
            } else {
                assert!(
                    (a - b * 0.95).abs() <= 1e-6 * b.abs().max(1.0),
                    "{name}: {a} vs {b}"
                );
            }
        }
        decayed += usize::from(!frozen);
    }
    assert!(decayed > 5);
}

#[test]
fn schedule_values_at_known_steps() {
    let s = LinearSchedule::with_fraction(100, 0.05);
    assert_eq!(s.warmup_steps, 5);
    assert_eq!(s.factor(0), 0.0);
    assert_eq!(s.factor(1), 0.2);
    assert_eq!(s.factor(4), 0.8);
    assert_eq!(s.factor(5), 1.0);
    assert!((s.factor(50) - 50.0 / 95.0).abs() < 1e-15);
    assert_eq!(s.factor(100), 0.0);
    assert_eq!(s.factor(120), 0.0);
    let none = LinearSchedule::with_fraction(10, 0.0);
    assert_eq!(none.factor(0), 1.0);
    assert!((none.factor(5) - 0.5).abs() < 1e-15);
    // HF's warmup_ratio rounds up.
    assert_eq!(LinearSchedule::with_fraction(30, 0.05).warmup_steps, 2);
}

#[test]
fn clipping_scales_to_the_max_norm() {
    let dev = Device::Cpu;
    let mut grads = HashMap::from([
        ("a".to_string(), Tensor::new(&[3.0f32], &dev).unwrap()),
        ("b".to_string(), Tensor::new(&[0.0f32, 4.0], &dev).unwrap()),
    ]);
    let norm = clip_grad_norm(&mut grads, 1.0).unwrap();
    assert!((norm - 5.0).abs() < 1e-9);
    let a = vec1(&grads["a"])[0];
    let b = vec1(&grads["b"])[1];
    assert!((a - 0.6).abs() < 1e-6 && (b - 0.8).abs() < 1e-6, "{a} {b}");
    assert!(((a * a + b * b).sqrt() - 1.0).abs() < 1e-6);
    // Below the limit nothing changes.
    let norm = clip_grad_norm(&mut grads, 10.0).unwrap();
    assert!((norm - 1.0).abs() < 1e-6);
    assert!((vec1(&grads["a"])[0] - a).abs() < 1e-12);
}

#[test]
fn loss_goes_down_on_a_learnable_task() {
    let model = tiny_model(cls(), DType::F32, 3);
    let data = toy_task(96, 11);
    let dev = toy_task(48, 12);
    let (dev_loss0, acc0) = evaluate(&model, &dev, 0, 16).unwrap();
    let mut c = cfg(25);
    c.optimizer.lr = 1e-2;
    let report = train(&model, &data, Some(&dev), 0, &c, &mut quiet()).unwrap();
    let first = report.history.first().unwrap().train_loss;
    let last = report.history.last().unwrap().train_loss;
    let (dev_loss, acc) = evaluate(&model, &dev, 0, 16).unwrap();
    eprintln!("train loss {first:.3} → {last:.3}; dev loss {dev_loss0:.3} → {dev_loss:.3}, acc {acc0:.2} → {acc:.2}");
    assert!(last < 0.5 * first, "train loss {first} → {last}");
    assert!(acc >= 0.85, "dev accuracy {acc}");
    assert_eq!(report.steps, 25 * 12);
    // The model holds the best epoch's weights.
    assert_eq!(Some(acc), report.best_score);
}

#[test]
fn same_seed_gives_bit_identical_weights() {
    let data = toy_task(40, 5);
    let mut c = cfg(2);
    c.grad_accum = 2;
    let run = |c: &TrainConfig| {
        let m = tiny_model(cls(), DType::F32, 9);
        train(&m, &data, None, 0, c, &mut quiet()).unwrap();
        weights_bits(&m)
    };
    let a = run(&c);
    assert_eq!(a, run(&c), "same seed, different weights");
    c.seed += 1;
    assert_ne!(a, run(&c), "the seed has no effect");
}

fn resume_case(checkpoint_every: Option<usize>, stop: impl Fn(&Event) -> bool) {
    resume_training(checkpoint_every, None, stop);
}

/// Trains straight through, and interrupted then resumed, and compares the weights;
/// `trainable` names the parameters the run updates (`None`: all).
fn resume_training(
    checkpoint_every: Option<usize>,
    trainable: Option<Vec<String>>,
    stop: impl Fn(&Event) -> bool,
) {
    let data = toy_task(44, 21);
    let dev = toy_task(16, 22);
    let mut c = cfg(2);
    c.patience = Some(5);
    c.trainable = trainable;
    // Straight run.
    let straight = tiny_model(cls(), DType::F32, 4);
    let r1 = train(&straight, &data, Some(&dev), 0, &c, &mut quiet()).unwrap();
    // Interrupted, then resumed from the checkpoint.
    let tmp = tempfile::tempdir().unwrap();
    c.checkpoint_dir = Some(tmp.path().join("state"));
    c.checkpoint_every = checkpoint_every;
    let crashed = tiny_model(cls(), DType::F32, 4);
    let r = train(&crashed, &data, Some(&dev), 0, &c, &mut |e: &Event| {
        if stop(e) {
            Control::Stop
        } else {
            Control::Continue
        }
    })
    .unwrap();
    assert!(r.interrupted);
    let fresh = tiny_model(cls(), DType::F32, 4);
    let r2 = train(&fresh, &data, Some(&dev), 0, &c, &mut quiet()).unwrap();
    assert!(r2.resumed && !r2.interrupted);
    assert_eq!(r1.steps, r2.steps);
    assert_eq!(r1.history, r2.history);
    assert_eq!(weights_bits(&straight), weights_bits(&fresh));
    // No temporary folders are left beside the checkpoint.
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["state".to_string()]);
}

#[test]
fn resuming_after_an_epoch_gives_the_same_weights() {
    resume_case(None, |e| matches!(e, Event::Epoch(r) if r.epoch == 1));
}

#[test]
fn resuming_mid_epoch_gives_the_same_weights() {
    // 44 examples / batch 8 = 6 steps per epoch; checkpoint every 2, stop after step 4
    // plus one more (lost) step, as a crash would.
    resume_case(Some(2), |e| matches!(e, Event::Step { step: 5, .. }));
}

#[test]
fn resuming_a_run_that_trains_a_subset_gives_the_same_weights() {
    // A LoRA / PEFT run trains a few parameters; its checkpoint holds only those, and
    // resuming it (once refused: "training checkpoint lacks parameter") restores them.
    let names: Vec<String> = tiny_model(cls(), DType::F32, 4)
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with("classifier") || n.contains("layer.1.output"))
        .collect();
    assert!(names.len() >= 4, "{names:?}");
    resume_training(
        None,
        Some(names),
        |e| matches!(e, Event::Epoch(r) if r.epoch == 1),
    );
}

#[test]
fn a_checkpoint_from_other_settings_is_refused() {
    let data = toy_task(16, 1);
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cfg(1);
    c.checkpoint_dir = Some(tmp.path().join("state"));
    train(
        &tiny_model(cls(), DType::F32, 1),
        &data,
        None,
        0,
        &c,
        &mut quiet(),
    )
    .unwrap();
    c.optimizer.lr = 1e-4;
    let err = train(
        &tiny_model(cls(), DType::F32, 1),
        &data,
        None,
        0,
        &c,
        &mut quiet(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("other settings"), "{err}");
}

#[test]
fn early_stopping_keeps_the_best_weights() {
    let data = toy_task(32, 2);
    let dev = toy_task(16, 3);
    let mut c = cfg(10);
    c.patience = Some(2);
    c.optimizer.lr = 0.0; // no epoch improves on the first
    let model = tiny_model(cls(), DType::F32, 2);
    let before = weights_bits(&model);
    let r = train(&model, &data, Some(&dev), 0, &c, &mut quiet()).unwrap();
    assert!(r.stopped_early);
    assert_eq!(r.epochs_done, 3);
    assert_eq!(r.best_epoch, Some(1));
    assert_eq!(before, weights_bits(&model));

    // With learning, the model ends with the best epoch's weights, not the last.
    let mut c = cfg(6);
    c.optimizer.lr = 2e-2;
    c.patience = Some(3);
    let model = tiny_model(cls(), DType::F32, 2);
    let r = train(&model, &data, Some(&dev), 0, &c, &mut quiet()).unwrap();
    let (_, score) = evaluate(&model, &dev, 0, 16).unwrap();
    assert_eq!(Some(score), r.best_score);
    let best = r
        .history
        .iter()
        .filter_map(|h| h.dev_score)
        .fold(f64::MIN, f64::max);
    assert_eq!(Some(best), r.best_score);
}

#[test]
fn regression_and_qa_heads_train() {
    let data: Vec<TrainExample> = toy_task(24, 8)
        .into_iter()
        .map(|mut e| {
            e.target = TrainTarget::Value(e.encoding.ids[1] as f32 / 10.0);
            e
        })
        .collect();
    let m = tiny_model(HeadSpec::Regression, DType::F32, 1);
    let r = train(&m, &data, None, 0, &cfg(6), &mut quiet()).unwrap();
    assert!(r.history[5].train_loss < r.history[0].train_loss);
    let preds = predict(&m, &[data[0].encoding.clone()], 0, 4).unwrap();
    assert!(matches!(preds[0], RawPrediction::Score(_)));

    let qa: Vec<TrainExample> = toy_task(24, 9)
        .into_iter()
        .map(|mut e| {
            e.target = TrainTarget::Span { start: 1, end: 2 };
            e.encoding
                .sequence_ids
                .iter_mut()
                .flatten()
                .for_each(|s| *s = 1);
            e
        })
        .collect();
    let m = tiny_model(HeadSpec::QuestionAnswering, DType::F32, 1);
    let mut c = cfg(20);
    c.optimizer.lr = 1e-2;
    let r = train(&m, &qa, None, 0, &c, &mut quiet()).unwrap();
    assert!(r.history[19].train_loss < 0.5 * r.history[0].train_loss);
    let encs: Vec<Encoding> = qa.iter().map(|e| e.encoding.clone()).collect();
    let preds = predict(&m, &encs, 0, 5).unwrap();
    let RawPrediction::Span { start, end } = &preds[0] else {
        panic!("not a span")
    };
    assert_eq!(start.len(), encs[0].len());
    assert_eq!(best_span(&encs[0], start, end, 30), Some((1, 2)));
}

#[test]
fn qa_answers_map_to_tokens_or_cls() {
    let tok = TextTokenizer::from_folder(fixture("tiny-bert")).unwrap();
    let context = "the cat sat on the mat";
    let e = tok
        .encode(
            TextInput::Pair("where", context),
            32,
            Truncation::OnlySecond,
        )
        .unwrap();
    let start = context.find("mat").unwrap();
    let TrainTarget::Span { start: s, end: t } = answer_positions(&e, start, start + 3) else {
        panic!()
    };
    assert!(s > 0 && t >= s);
    assert_eq!(
        e.token_span_to_char_span(s as usize, t as usize),
        Some((start, start + 3))
    );
    // Unanswerable (empty span) and truncated-away answers point at [CLS].
    assert_eq!(
        answer_positions(&e, 0, 0),
        TrainTarget::Span { start: 0, end: 0 }
    );
    let short = tok
        .encode(TextInput::Pair("where", context), 6, Truncation::OnlySecond)
        .unwrap();
    assert!(short.truncated);
    assert_eq!(
        answer_positions(&short, start, start + 3),
        TrainTarget::Span { start: 0, end: 0 }
    );
}

/// Soft labels as another model would give them: 0.9 on the toy task's class.
fn soft_task(n: usize, seed: u64) -> Vec<TrainExample> {
    toy_task(n, seed)
        .into_iter()
        .map(|mut e| {
            if let TrainTarget::Label(l) = e.target {
                e.target = TrainTarget::Soft(if l == 1 {
                    vec![0.1, 0.9]
                } else {
                    vec![0.9, 0.1]
                });
            }
            e
        })
        .collect()
}

#[test]
fn soft_targets_train_with_either_loss() {
    use fute_nn::loss::SoftLoss;
    for loss in [SoftLoss::BceWithLogits, SoftLoss::SoftCrossEntropy] {
        let model = tiny_model(cls(), DType::F32, 3);
        let data = soft_task(96, 11);
        let mut c = cfg(25);
        c.optimizer.lr = 1e-2;
        c.soft_loss = loss;
        let report = train(&model, &data, None, 0, &c, &mut quiet()).unwrap();
        let first = report.history.first().unwrap().train_loss;
        let last = report.history.last().unwrap().train_loss;
        assert!(last < 0.8 * first, "{loss:?}: train loss {first} → {last}");
        // Dev score of soft targets = agreement of argmaxes.
        let (_, agree) = evaluate(&model, &soft_task(48, 12), 0, 16).unwrap();
        assert!(agree >= 0.85, "{loss:?}: agreement {agree}");
    }
}

#[test]
fn soft_targets_of_the_wrong_width_are_refused() {
    let model = tiny_model(cls(), DType::F32, 3);
    let mut data = soft_task(8, 1);
    for e in &mut data {
        e.target = TrainTarget::Soft(vec![0.2, 0.3, 0.5]);
    }
    let err = train(&model, &data, None, 0, &cfg(1), &mut quiet())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("soft targets have 3 classes but the head has 2"),
        "{err}"
    );
}
