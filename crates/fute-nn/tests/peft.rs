//! Parameter-efficient tuning (prefix, prompt tuning, LoRA, BitFit): gradients,
//! finite differences, frozen backbone, zero-initialised LoRA, masks, vectors
//! and determinism.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{tiny_input, tiny_model};
use fute_nn::models::bert::LAYER_LINEARS;
use fute_nn::peft::{Adapted, LoraConfig, Peft, PeftConfig, PrefixConfig, PromptConfig, Reduce};
use fute_nn::rng::SeededRng;
use fute_nn::train::{train, AdamWConfig, Control, TrainConfig, TrainExample, TrainTarget};
use fute_nn::TaskModel;
use fute_nn::{loss, BertInput, BertTaskModel, Encoding, HeadSpec, Mode, TaskOutput};

fn cls() -> HeadSpec {
    HeadSpec::Classification { num_labels: 3 }
}

fn prefix(len: usize, projection: Option<usize>) -> PeftConfig {
    PeftConfig::Prefix(PrefixConfig {
        len,
        projection,
        dropout: 0.1,
    })
}

fn prompt(len: usize) -> PeftConfig {
    PeftConfig::PromptTuning(PromptConfig { len })
}

fn lora_all_sites() -> PeftConfig {
    PeftConfig::Lora(LoraConfig {
        rank: 2,
        alpha: 4.0,
        targets: LAYER_LINEARS.iter().map(|s| s.to_string()).collect(),
    })
}

/// Every configuration the tests run.
fn all_configs() -> Vec<PeftConfig> {
    vec![
        prefix(3, None),
        prefix(3, Some(5)),
        prompt(4),
        PeftConfig::Lora(LoraConfig::default()),
        lora_all_sites(),
        PeftConfig::BitFit,
    ]
}

type Model = Adapted<BertTaskModel>;

fn with_peft(spec: HeadSpec, dtype: DType, cfg: &PeftConfig, seed: u64) -> Model {
    Peft::adapt(tiny_model(spec, dtype, seed), cfg, seed).unwrap()
}

fn peft(m: &Model) -> &Peft {
    &m.peft
}

/// Gives every LoRA `B` random values (they start at zero, which zeroes `A`'s gradient).
fn randomise_lora_b(m: &Model) {
    let rng = SeededRng::new(5);
    for name in peft(m).own_names() {
        if name.ends_with("lora_B") {
            let var = m.parameter(name).unwrap();
            let n = var.elem_count();
            let v: Vec<f64> = (0..n).map(|_| rng.normal() * 0.3).collect();
            let t = Tensor::from_vec(v, var.dims(), &Device::Cpu).unwrap();
            m.set_parameter(name, &t).unwrap();
        }
    }
}

fn head_loss(model: &dyn TaskModel, input: &BertInput, mode: &Mode) -> Tensor {
    let labels = |v: &[u32]| Tensor::new(v, &Device::Cpu).unwrap();
    match model.forward(input, mode).unwrap() {
        TaskOutput::Logits(l) => loss::cross_entropy(&l, &labels(&[2, 0, 1])).unwrap(),
        TaskOutput::Span { start, end } => {
            loss::span_cross_entropy(&start, &end, &labels(&[1, 5, 3]), &labels(&[2, 6, 4]))
                .unwrap()
        }
        TaskOutput::Scores(_) => unreachable!(),
    }
}

fn bits(t: &Tensor) -> Vec<u64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
        .into_iter()
        .map(f64::to_bits)
        .collect()
}

#[test]
fn every_peft_parameter_gets_a_gradient() {
    for spec in [cls(), HeadSpec::QuestionAnswering] {
        for cfg in all_configs() {
            let m = with_peft(spec, DType::F32, &cfg, 7);
            randomise_lora_b(&m);
            let grads = head_loss(&m, &tiny_input(), &Mode::train(1))
                .backward()
                .unwrap();
            let names = peft(&m).trainable_names(&m);
            assert!(!names.is_empty());
            for name in &names {
                let var = m.parameter(name).unwrap();
                let g = grads
                    .get(var.as_tensor())
                    .unwrap_or_else(|| panic!("{}: no gradient for {name}", cfg.name()));
                let norm = g
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(norm.is_finite(), "{name}: {norm}");
                if !name.ends_with("attention.self.key.bias") {
                    assert!(norm > 0.0, "{}: zero gradient for {name}", cfg.name());
                }
            }
            // The modules' own parameters are all trainable; for BitFit the encoder biases are.
            for own in peft(&m).own_names() {
                assert!(names.contains(own), "{own} not trainable");
            }
            if cfg == PeftConfig::BitFit {
                assert!(names
                    .iter()
                    .any(|n| n.starts_with("bert.") && n.ends_with(".bias")));
                assert!(names
                    .iter()
                    .all(|n| !n.starts_with("bert.") || n.ends_with(".bias")));
            } else {
                assert!(names
                    .iter()
                    .all(|n| !n.starts_with("bert.") || n.contains("lora_")));
            }
        }
    }
}

#[test]
fn frozen_view_gives_the_same_gradients_for_trainable_parameters_and_none_else() {
    for spec in [cls(), HeadSpec::QuestionAnswering] {
        for cfg in all_configs() {
            let m = with_peft(spec, DType::F64, &cfg, 9);
            randomise_lora_b(&m);
            let names = peft(&m).trainable_names(&m);
            let view = fute_nn::train::frozen_view(&m, &names).unwrap();
            let full = head_loss(&m, &tiny_input(), &Mode::train(3))
                .backward()
                .unwrap();
            let frozen = head_loss(view.as_ref(), &tiny_input(), &Mode::train(3))
                .backward()
                .unwrap();
            for (name, var) in m.named_parameters() {
                let got = frozen.get(var.as_tensor());
                if names.contains(&name) {
                    let want = full.get(var.as_tensor()).unwrap();
                    let got =
                        got.unwrap_or_else(|| panic!("{}: {name} lost its gradient", cfg.name()));
                    assert_eq!(bits(got), bits(want), "{}: {name}", cfg.name());
                } else {
                    assert!(
                        got.is_none(),
                        "{}: frozen {name} got a gradient",
                        cfg.name()
                    );
                }
            }
        }
    }
}

/// Central differences in f64 against backprop, as `tests/gradients.rs`.
fn finite_differences(spec: HeadSpec, cfg: &PeftConfig, checks: &[(&str, usize)]) {
    let m = with_peft(spec, DType::F64, cfg, 11);
    randomise_lora_b(&m);
    let input = tiny_input();
    let eval = Mode::eval();
    let grads = head_loss(&m, &input, &eval).backward().unwrap();
    let eps = 1e-5;
    for (name, index) in checks {
        let var = m
            .parameter(name)
            .unwrap_or_else(|| panic!("no parameter {name}"));
        let original = var.as_tensor().copy().unwrap();
        let shape = original.dims().to_vec();
        let flat = original.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let analytic = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()[*index];
        let at = |delta: f64| {
            let mut v = flat.clone();
            v[*index] += delta;
            var.set(&Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap())
                .unwrap();
            head_loss(&m, &input, &eval).to_scalar::<f64>().unwrap()
        };
        let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
        var.set(&original).unwrap();
        let err = (analytic - numeric).abs() / numeric.abs().max(1e-3);
        assert!(
            err <= 1e-6,
            "{}: {name}[{index}]: analytic {analytic:.10e} vs numeric {numeric:.10e} ({err:.2e})",
            cfg.name()
        );
        assert!(
            numeric.abs() > 1e-9,
            "{name}[{index}]: too small ({numeric:e})"
        );
    }
}

#[test]
fn finite_differences_match_backprop_for_peft_parameters() {
    // tiny config: 2 layers, hidden 12 → prefix rows of 2·2·12 = 48.
    finite_differences(
        cls(),
        &prefix(3, None),
        &[
            ("prefix_encoder.embedding.weight", 5),
            ("prefix_encoder.embedding.weight", 48 + 30),
            ("prefix_encoder.embedding.weight", 2 * 48 + 47),
            ("classifier.weight", 3),
        ],
    );
    finite_differences(
        HeadSpec::QuestionAnswering,
        &prefix(3, Some(5)),
        &[
            ("prefix_encoder.embedding.weight", 7),
            ("prefix_encoder.trans.0.weight", 11),
            ("prefix_encoder.trans.2.bias", 40),
        ],
    );
    finite_differences(
        cls(),
        &prompt(4),
        &[
            ("prefix_encoder.weight", 2),
            ("prefix_encoder.weight", 3 * 12 + 9),
        ],
    );
    finite_differences(
        HeadSpec::QuestionAnswering,
        &prompt(2),
        &[("prefix_encoder.weight", 13)],
    );
    finite_differences(
        cls(),
        &lora_all_sites(),
        &[
            ("bert.encoder.layer.0.attention.self.query.lora_A", 5),
            ("bert.encoder.layer.1.attention.self.value.lora_B", 7),
            ("bert.encoder.layer.0.intermediate.dense.lora_A", 3),
            ("bert.encoder.layer.1.output.dense.lora_B", 2),
            ("bert.encoder.layer.0.attention.output.dense.lora_A", 1),
            ("bert.encoder.layer.1.attention.self.key.lora_B", 4),
        ],
    );
}

fn logits(m: &dyn TaskModel, input: &BertInput) -> Vec<f32> {
    m.forward(input, &Mode::eval())
        .unwrap()
        .logits()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn zero_lora_b_leaves_the_output_unchanged_and_bitfit_changes_nothing() {
    let input = tiny_input();
    let m = tiny_model(cls(), DType::F32, 3);
    let before = logits(&m, &input);
    let m = Peft::adapt(m, &lora_all_sites(), 9).unwrap();
    assert_eq!(
        logits(&m, &input),
        before,
        "LoRA with B = 0 must not change the output"
    );
    randomise_lora_b(&m);
    assert_ne!(logits(&m, &input), before, "LoRA hook is not applied");

    let m = Peft::adapt(tiny_model(cls(), DType::F32, 3), &PeftConfig::BitFit, 9).unwrap();
    assert_eq!(logits(&m, &input), before);
    // A second LoRA would create the same parameters again.
    let m = Peft::adapt(m, &lora_all_sites(), 9).unwrap();
    assert!(Peft::attach(&m, &lora_all_sites(), 9).is_err());
}

/// Padding must stay masked and the prefix / prompt attended: an example alone
/// and the same example padded in a batch give the same output.
#[test]
fn prefix_and_prompt_masks_extend_the_attention_mask() {
    let full = tiny_input();
    for cfg in [prefix(3, None), prefix(2, Some(4)), prompt(4)] {
        for spec in [cls(), HeadSpec::QuestionAnswering] {
            let m = with_peft(spec, DType::F64, &cfg, 4);
            let out = m.forward(&full, &Mode::eval()).unwrap();
            // Row 2 has 5 real tokens of 7.
            let alone = BertInput {
                input_ids: full
                    .input_ids
                    .narrow(0, 2, 1)
                    .unwrap()
                    .narrow(1, 0, 5)
                    .unwrap(),
                token_type_ids: full
                    .token_type_ids
                    .as_ref()
                    .map(|t| t.narrow(0, 2, 1).unwrap().narrow(1, 0, 5).unwrap()),
                attention_mask: full
                    .attention_mask
                    .narrow(0, 2, 1)
                    .unwrap()
                    .narrow(1, 0, 5)
                    .unwrap(),
            };
            let one = m.forward(&alone, &Mode::eval()).unwrap();
            let (a, b) = match (&out, &one) {
                (TaskOutput::Logits(a), TaskOutput::Logits(b)) => {
                    (a.narrow(0, 2, 1).unwrap(), b.clone())
                }
                (TaskOutput::Span { start: a, .. }, TaskOutput::Span { start: b, .. }) => {
                    assert_eq!(a.dims(), &[3, 7], "span logits cover the real tokens only");
                    (
                        a.narrow(0, 2, 1).unwrap().narrow(1, 0, 5).unwrap(),
                        b.clone(),
                    )
                }
                _ => unreachable!(),
            };
            let err = common::rel_err(&a, &b);
            assert!(
                err < 1e-12,
                "{}: padded vs alone differ by {err:e}",
                cfg.name()
            );
        }
    }
}

fn enc(ids: Vec<u32>) -> Encoding {
    let n = ids.len();
    Encoding {
        ids,
        type_ids: vec![0; n],
        sequence_ids: (0..n).map(|i| (i > 0 && i + 1 < n).then_some(0)).collect(),
        offsets: (0..n)
            .map(|i| (i > 0 && i + 1 < n).then_some((i, i + 1)))
            .collect(),
        truncated: false,
    }
}

/// A learnable toy task (as tests/train.rs): label 1 when the first word id is ≥ 13.
fn toy_task(n: usize, seed: u64) -> Vec<TrainExample> {
    let rng = SeededRng::new(seed);
    (0..n)
        .map(|_| {
            let len = 2 + (rng.next_u64() % 7) as usize;
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

fn train_cfg(trainable: Vec<String>, seed: u64) -> TrainConfig {
    TrainConfig {
        epochs: 3,
        batch_size: 8,
        optimizer: AdamWConfig {
            lr: 1e-2,
            ..Default::default()
        },
        seed,
        trainable: Some(trainable),
        ..Default::default()
    }
}

/// Trains with the PEFT's trainable set and returns the epoch losses.
fn run(m: &Model, data: &[TrainExample], seed: u64) -> Vec<f64> {
    let cfg = train_cfg(peft(m).trainable_names(m), seed);
    let r = train(m, data, None, 0, &cfg, &mut |_| Control::Continue).unwrap();
    r.history.iter().map(|h| h.train_loss).collect()
}

#[test]
fn training_changes_only_the_intended_parameters() {
    let data = toy_task(48, 3);
    for cfg in all_configs() {
        let m = with_peft(
            HeadSpec::Classification { num_labels: 2 },
            DType::F32,
            &cfg,
            5,
        );
        let before: Vec<(String, Vec<u64>)> = m
            .named_parameters()
            .into_iter()
            .map(|(n, v)| (n, bits(v.as_tensor())))
            .collect();
        let trainable = peft(&m).trainable_names(&m);
        let losses = run(&m, &data, 1);
        assert!(
            losses.last().unwrap() < losses.first().unwrap(),
            "{}: loss did not go down: {losses:?}",
            cfg.name()
        );
        let (mut frozen, mut changed) = (0, 0);
        for (name, old) in &before {
            let new = bits(m.parameter(name).unwrap().as_tensor());
            // The key bias's true gradient is zero (softmax ignores it).
            if trainable.contains(name) && name.ends_with("attention.self.key.bias") {
                continue;
            }
            if trainable.contains(name) {
                assert_ne!(&new, old, "{}: trainable {name} did not change", cfg.name());
                changed += 1;
            } else {
                assert_eq!(&new, old, "{}: frozen {name} changed", cfg.name());
                frozen += 1;
            }
        }
        eprintln!(
            "{}: {changed} tensors trained, {frozen} frozen and bit-identical, losses {losses:?}",
            cfg.name()
        );
        // tiny BERT + head: 41 tensors; 20 of the backbone are not biases.
        assert!(frozen >= if cfg == PeftConfig::BitFit { 20 } else { 39 });
    }
}

#[test]
fn unknown_trainable_name_is_an_error() {
    let m = tiny_model(cls(), DType::F32, 1);
    let cfg = train_cfg(vec!["bert.nope".into()], 1);
    let err = train(&m, &toy_task(4, 1), None, 0, &cfg, &mut |_| {
        Control::Continue
    })
    .unwrap_err();
    assert!(err.to_string().contains("bert.nope"), "{err}");
}

fn trained_vector(cfg: &PeftConfig, seed: u64, reduce: Reduce) -> Vec<(String, Vec<f32>)> {
    let m = with_peft(
        HeadSpec::Classification { num_labels: 2 },
        DType::F32,
        cfg,
        seed,
    );
    run(&m, &toy_task(24, 8), seed);
    peft(&m).task_vector(&m, reduce).unwrap()
}

#[test]
fn vectors_have_the_reference_shapes() {
    let (l, h, p) = (2, 12, 3);
    let dim = |cfg: &PeftConfig, r: Reduce| -> usize {
        let m = with_peft(cls(), DType::F32, cfg, 1);
        peft(&m)
            .task_vector(&m, r)
            .unwrap()
            .iter()
            .map(|(_, v)| v.len())
            .sum()
    };
    assert_eq!(dim(&prefix(p, None), Reduce::Positions), l * 2 * h);
    assert_eq!(dim(&prefix(p, None), Reduce::Layers), p * 2 * h);
    assert_eq!(dim(&prefix(p, None), Reduce::Full), p * l * 2 * h);
    assert_eq!(dim(&prefix(p, Some(5)), Reduce::Positions), h);
    assert_eq!(dim(&prefix(p, Some(5)), Reduce::Layers), p * 2 * h);
    assert_eq!(dim(&prompt(4), Reduce::Positions), h);
    assert_eq!(dim(&prompt(4), Reduce::Full), 4 * h);
    // LoRA on query and value, rank 8: per layer 2 · (8·12 + 12·8).
    assert_eq!(
        dim(&PeftConfig::Lora(LoraConfig::default()), Reduce::Full),
        l * 2 * (8 * h + h * 8)
    );
    // BitFit: embeddings LN bias + per layer 8 biases + pooler bias.
    let per_layer = h + h + h + h + h + 17 + h + h;
    assert_eq!(
        dim(&PeftConfig::BitFit, Reduce::Full),
        h + l * per_layer + h
    );
    let m = with_peft(cls(), DType::F32, &prompt(4), 1);
    assert!(peft(&m).task_vector(&m, Reduce::Layers).is_err());

    // Mean over layers is the mean of the per-layer keys/values, FUTE's layout.
    let m = with_peft(cls(), DType::F64, &prefix(p, None), 2);
    let table = m
        .parameter("prefix_encoder.embedding.weight")
        .unwrap()
        .as_tensor()
        .to_vec2::<f64>()
        .unwrap();
    let v = &peft(&m).task_vector(&m, Reduce::Layers).unwrap()[0].1;
    let (heads, hd) = (3, 4);
    // [kv, head, pos, d] ← mean over layers of table[pos][layer·2h + kv·h + head·hd + d]
    let (kv, head, pos, d) = (1, 2, 1, 3);
    let want = (0..l)
        .map(|layer| table[pos][layer * 2 * h + kv * h + head * hd + d])
        .sum::<f64>()
        / l as f64;
    let got = v[((kv * heads + head) * p + pos) * hd + d];
    assert!((f64::from(got) - want).abs() < 1e-6, "{got} vs {want}");
}

#[test]
fn same_seed_same_vector_other_seed_other_prefix_vector() {
    for cfg in [
        prefix(3, None),
        prompt(3),
        lora_all_sites(),
        PeftConfig::BitFit,
    ] {
        let a = trained_vector(&cfg, 21, Reduce::Positions);
        let b = trained_vector(&cfg, 21, Reduce::Positions);
        assert_eq!(
            a,
            b,
            "{}: same seed must give bit-identical vectors",
            cfg.name()
        );
    }
    for reduce in [Reduce::Positions, Reduce::Layers] {
        let a = trained_vector(&prefix(3, None), 21, reduce);
        let c = trained_vector(&prefix(3, None), 22, reduce);
        assert_ne!(a, c, "a different seed must give a different prefix vector");
    }
}

/// LoRA targets are HF linear names, checked against the model's linears.
#[test]
fn lora_targets_by_name_and_unknown_targets_list_the_valid_ones() {
    let m = tiny_model(cls(), DType::F32, 3);
    let d = m.describe();
    let t = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
    assert_eq!(
        d.lora_targets(&[]).unwrap(),
        ["attention.self.query", "attention.self.value"]
    );
    assert_eq!(
        d.lora_targets(&t(&["output", "attention_output", "key"]))
            .unwrap(),
        [
            "attention.self.key",
            "attention.output.dense",
            "output.dense"
        ]
    );
    assert_eq!(
        d.lora_targets(&t(&["dense"])).unwrap(),
        [
            "attention.output.dense",
            "intermediate.dense",
            "output.dense"
        ]
    );
    let err = Peft::attach(
        &m,
        &PeftConfig::Lora(LoraConfig {
            targets: t(&["q_proj"]),
            ..Default::default()
        }),
        1,
    )
    .unwrap_err();
    assert!(err.is_user_error());
    let msg = err.to_string();
    assert!(
        msg.contains("`q_proj`") && msg.contains("attention.self.query"),
        "{msg}"
    );
    assert!(m
        .parameter("bert.encoder.layer.0.attention.self.query.lora_A")
        .is_none());
}
