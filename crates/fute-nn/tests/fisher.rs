//! The diagonal Fisher (`fute_nn::fisher`): golden parity with PyTorch for all
//! three variants (fixtures from `scripts/golden/fisher_golden.py`), the relations
//! between variants, invariances, sparse = dense embeddings, seeded sampling.
//!
//! Golden tolerances (normwise relative error per component,
//! max|ours − ref| / max|ref|, with a floor of 1e-6 of the embedding's largest
//! value, see `rel_floor`): tiny BERT, f64 model ≤ 2e-6 (reached ≤ 3.3e-7; the
//! accumulators and stored references are f32), f32 model ≤ 2e-5 (reached
//! ≤ 2.1e-6). MiniLM, f32 model against the f64 reference: sum and L2 of every
//! component ≤ 5e-4 relative, first 8 values ≤ 5e-4 of the component's L∞
//! (reached: per-example/per-batch ≤ 5e-6, square-of-mean ≤ 5e-5).
//! `--nocapture` prints the errors reached.

mod common;

use fute_nn::TaskModel;
use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use common::fixture;
use fute_nn::fisher::{
    fisher_embedding, EmbeddingGradients, FisherEmbedding, FisherExample, FisherLabels,
    FisherOptions, FisherScope, FisherTarget, FisherVariant, LayerSelection, SoftLoss,
};
use fute_nn::{BertTaskModel, BuildOptions, Encoding, HeadSpec};

fn encoding(ids: Vec<u32>, types: Vec<u32>) -> Encoding {
    let n = ids.len();
    Encoding {
        ids,
        type_ids: types,
        sequence_ids: vec![None; n],
        offsets: vec![None; n],
        truncated: false,
    }
}

fn examples_from_json(v: &serde_json::Value) -> Vec<FisherExample> {
    v["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let ids: Vec<u32> = serde_json::from_value(e["input_ids"].clone()).unwrap();
            let types: Vec<u32> = serde_json::from_value(e["token_type_ids"].clone()).unwrap();
            FisherExample {
                encoding: encoding(ids, types),
                target: FisherTarget::Label(e["label"].as_u64().unwrap() as u32),
            }
        })
        .collect()
}

fn tiny_model(dtype: DType) -> (BertTaskModel, Vec<FisherExample>, HashMap<String, Tensor>) {
    let meta = common::json("fisher/tiny.json");
    let golden = common::tensors("fisher/tiny.safetensors");
    let opts = BuildOptions {
        dtype,
        device: Device::Cpu,
        seed: 0,
        ..Default::default()
    };
    let spec = HeadSpec::Classification {
        num_labels: meta["num_labels"].as_u64().unwrap() as usize,
    };
    let model = BertTaskModel::from_folder(fixture("tiny-bert"), spec, &opts).unwrap();
    for p in ["classifier.weight", "classifier.bias"] {
        model
            .set_parameter(p, &golden[&format!("head.{p}")])
            .unwrap();
    }
    (model, examples_from_json(&meta), golden)
}

fn opts(variant: FisherVariant, batch_size: usize, workers: usize) -> FisherOptions {
    FisherOptions {
        variant,
        batch_size,
        labels: FisherLabels::Gold,
        soft_loss: SoftLoss::BceWithLogits,
        scope: FisherScope::taskemb(),
        embedding_gradients: EmbeddingGradients::Sparse,
        workers,
    }
}

fn variant_name(v: FisherVariant) -> &'static str {
    match v {
        FisherVariant::PerExample => "per-example",
        FisherVariant::PerBatch => "per-batch",
        FisherVariant::SquareOfMean => "square-of-mean",
    }
}

const VARIANTS: [FisherVariant; 3] = [
    FisherVariant::PerExample,
    FisherVariant::PerBatch,
    FisherVariant::SquareOfMean,
];

/// Normwise relative error of two equally long vectors.
fn rel(got: &[f32], want: &[f32]) -> f64 {
    rel_floor(got, want, 0.0)
}

/// Like [`rel`], with the scale at least `floor`. The key biases' gradients are
/// zero in exact arithmetic (softmax ignores a shift shared by all keys), so
/// their Fisher is rounding noise on both sides: errors are measured against
/// a floor of 1e-6 of the largest value of the embedding.
fn rel_floor(got: &[f32], want: &[f32], floor: f64) -> f64 {
    assert_eq!(got.len(), want.len());
    let diff = got
        .iter()
        .zip(want)
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .fold(0.0, f64::max);
    let scale = want.iter().map(|b| (*b as f64).abs()).fold(floor, f64::max);
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

fn floor_of(f: &[f32]) -> f64 {
    1e-6 * f.iter().map(|x| x.abs() as f64).fold(0.0, f64::max)
}

/// Worst component error between two embeddings with the same components.
fn worst(a: &FisherEmbedding, b: &FisherEmbedding) -> f64 {
    assert_eq!(a.components.len(), b.components.len());
    let floor = floor_of(&b.flatten());
    a.components
        .iter()
        .zip(&b.components)
        .map(|((na, va), (nb, vb))| {
            assert_eq!(na, nb);
            rel_floor(va, vb, floor)
        })
        .fold(0.0, f64::max)
}

fn check_tiny_golden(dtype: DType, tol: f64) {
    let (model, examples, golden) = tiny_model(dtype);
    let batch_size = common::json("fisher/tiny.json")["batch_size"]
        .as_u64()
        .unwrap() as usize;
    for variant in VARIANTS {
        for workers in [1, 2] {
            let f =
                fisher_embedding(&model, &examples, &opts(variant, batch_size, workers)).unwrap();
            let prefix = format!("{}.", variant_name(variant));
            let n_golden = golden.keys().filter(|k| k.starts_with(&prefix)).count();
            assert_eq!(f.components.len(), n_golden, "{prefix} component count");
            let mut max_err: f64 = 0.0;
            let wants: Vec<Vec<f32>> = f
                .components
                .iter()
                .map(|(name, _)| {
                    golden
                        .get(&format!("{prefix}{name}"))
                        .unwrap_or_else(|| panic!("no golden {prefix}{name}"))
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                })
                .collect();
            let floor = floor_of(&wants.concat());
            for ((name, v), want) in f.components.iter().zip(&wants) {
                let e = rel_floor(v, want, floor);
                assert!(
                    e <= tol,
                    "{prefix}{name} ({dtype:?}): rel err {e:.2e} > {tol:.0e}"
                );
                max_err = max_err.max(e);
            }
            println!(
                "tiny {dtype:?} {prefix} workers={workers}: worst component rel err {max_err:.2e}"
            );
        }
    }
}

#[test]
fn golden_tiny_f64_all_variants() {
    check_tiny_golden(DType::F64, 2e-6);
}

#[test]
fn golden_tiny_f32_all_variants() {
    check_tiny_golden(DType::F32, 2e-5);
}

#[test]
fn golden_minilm_summaries() {
    let Some(dir) = fute_core::testing::real_asset("minilm") else {
        eprintln!("skipped: MiniLM asset not fetched");
        return;
    };
    let meta = common::json("fisher/minilm.json");
    let head = common::tensors("fisher/minilm-head.safetensors");
    let model = BertTaskModel::from_folder(
        &dir,
        HeadSpec::Classification { num_labels: 2 },
        &BuildOptions::default(),
    )
    .unwrap();
    for (p, t) in &head {
        model.set_parameter(p, t).unwrap();
    }
    let examples = examples_from_json(&meta);
    let batch_size = meta["batch_size"].as_u64().unwrap() as usize;
    for variant in VARIANTS {
        let f = fisher_embedding(&model, &examples, &opts(variant, batch_size, 2)).unwrap();
        let want = &meta["variants"][variant_name(variant)];
        assert_eq!(
            f.components.len(),
            want.as_object().unwrap().len(),
            "component count"
        );
        let (mut e_sum, mut e_l2, mut e_first): (f64, f64, f64) = (0.0, 0.0, 0.0);
        // Floors (see `rel_floor`): 1e-6 of the largest golden sum / L2 / first value.
        let all = want.as_object().unwrap();
        let max_of = |key: &str| {
            all.values()
                .map(|w| w[key].as_f64().unwrap().abs())
                .fold(0.0, f64::max)
                * 1e-6
        };
        let (fs, fl) = (max_of("sum"), max_of("l2"));
        let ff = all
            .values()
            .flat_map(|w| w["first"].as_array().unwrap().clone())
            .map(|x| x.as_f64().unwrap().abs())
            .fold(0.0, f64::max)
            * 1e-6;
        for (name, v) in &f.components {
            let w = &want[name];
            assert!(w.is_object(), "no golden summary for {name}");
            assert_eq!(v.len() as u64, w["numel"].as_u64().unwrap(), "{name} numel");
            let sum: f64 = v.iter().map(|&x| x as f64).sum();
            let l2: f64 = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
            let ws = w["sum"].as_f64().unwrap();
            let wl = w["l2"].as_f64().unwrap();
            let linf = v.iter().map(|x| x.abs() as f64).fold(0.0, f64::max);
            let rs = (sum - ws).abs() / ws.abs().max(fs);
            let rl = (l2 - wl).abs() / wl.max(fl);
            let first: Vec<f64> = serde_json::from_value(w["first"].clone()).unwrap();
            let rf = v
                .iter()
                .zip(&first)
                .map(|(&a, &b)| (a as f64 - b).abs())
                .fold(0.0, f64::max)
                / linf.max(ff);
            assert!(
                rs <= 5e-4 && rl <= 5e-4 && rf <= 5e-4,
                "{} {name}: sum {rs:.1e} l2 {rl:.1e} first {rf:.1e}",
                variant_name(variant)
            );
            e_sum = e_sum.max(rs);
            e_l2 = e_l2.max(rl);
            e_first = e_first.max(rf);
        }
        println!(
            "minilm {}: worst rel err sum {e_sum:.1e}, L2 {e_l2:.1e}, first values {e_first:.1e}",
            variant_name(variant)
        );
    }
}

#[test]
fn per_batch_with_one_batch_is_square_of_mean_over_n() {
    let (model, examples, _) = tiny_model(DType::F64);
    let n = examples.len();
    let pb = fisher_embedding(&model, &examples, &opts(FisherVariant::PerBatch, n, 1)).unwrap();
    let sm = fisher_embedding(&model, &examples, &opts(FisherVariant::SquareOfMean, 3, 2)).unwrap();
    let floor = floor_of(&pb.flatten());
    for ((name, a), (_, b)) in pb.components.iter().zip(&sm.components) {
        let scaled: Vec<f32> = b.iter().map(|x| x / n as f32).collect();
        let e = rel_floor(a, &scaled, floor);
        assert!(
            e < 1e-5,
            "{name}: per-batch(one batch) vs square-of-mean/N: {e:.2e}"
        );
    }
}

#[test]
fn per_example_equals_per_batch_with_batch_one() {
    let (model, examples, _) = tiny_model(DType::F64);
    let pe = fisher_embedding(&model, &examples, &opts(FisherVariant::PerExample, 4, 1)).unwrap();
    let pb = fisher_embedding(&model, &examples, &opts(FisherVariant::PerBatch, 1, 1)).unwrap();
    assert_eq!(worst(&pe, &pb), 0.0);
}

#[test]
fn per_example_invariant_to_order_batch_size_and_workers() {
    let (model, examples, _) = tiny_model(DType::F64);
    let base = fisher_embedding(&model, &examples, &opts(FisherVariant::PerExample, 3, 1)).unwrap();
    let mut reversed = examples.clone();
    reversed.reverse();
    reversed.swap(0, 3);
    for (ex, bs, w) in [
        (&reversed, 3, 1),
        (&examples, 1, 1),
        (&examples, 7, 2),
        (&reversed, 2, 2),
    ] {
        let f = fisher_embedding(&model, ex, &opts(FisherVariant::PerExample, bs, w)).unwrap();
        let e = worst(&base, &f);
        assert!(e < 1e-6, "order/batch {bs}/workers {w}: {e:.2e}");
    }
}

#[test]
fn sparse_embedding_fisher_equals_dense() {
    let (model, examples, _) = tiny_model(DType::F64);
    for variant in VARIANTS {
        let mut o = opts(variant, 3, 1);
        let sparse = fisher_embedding(&model, &examples, &o).unwrap();
        o.embedding_gradients = EmbeddingGradients::Dense;
        let dense = fisher_embedding(&model, &examples, &o).unwrap();
        let e = worst(&sparse, &dense);
        assert!(e < 1e-6, "{variant:?}: sparse vs dense {e:.2e}");
        let word = sparse
            .get("bert.embeddings.word_embeddings.weight")
            .unwrap();
        assert!(
            word[..32].iter().all(|&x| x == 0.0),
            "padding row has Fisher"
        );
    }
}

#[test]
fn sampled_labels_are_deterministic_by_seed() {
    let (model, examples, _) = tiny_model(DType::F64);
    let run = |labels: FisherLabels| {
        let mut o = opts(FisherVariant::PerExample, 3, 2);
        o.labels = labels;
        fisher_embedding(&model, &examples, &o).unwrap().flatten()
    };
    let a = run(FisherLabels::Sampled {
        trials: 20,
        seed: 1,
    });
    let b = run(FisherLabels::Sampled {
        trials: 20,
        seed: 1,
    });
    let c = run(FisherLabels::Sampled {
        trials: 20,
        seed: 2,
    });
    let gold = run(FisherLabels::Gold);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, gold);
    assert!(a.iter().all(|x| x.is_finite() && *x >= 0.0));
}

#[test]
fn scope_selects_components_with_the_same_values() {
    let (model, examples, _) = tiny_model(DType::F64);
    let full = fisher_embedding(&model, &examples, &opts(FisherVariant::PerBatch, 3, 1)).unwrap();
    let mut o = opts(FisherVariant::PerBatch, 3, 1);
    o.scope = FisherScope {
        embeddings: false,
        layers: LayerSelection::Only(vec![1]),
        pooler: false,
        head: false,
        activations: true,
    };
    let part = fisher_embedding(&model, &examples, &o).unwrap();
    let names: Vec<&str> = part.components.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names
        .iter()
        .all(|n| n.starts_with("bert.encoder.layer.1.") || *n == "cls_output"));
    assert!(names.contains(&"bert.encoder.layer.1.output.dense.weight"));
    assert!(names.contains(&"bert.encoder.layer.1.multihead_output"));
    for (name, v) in &part.components {
        assert_eq!(rel(v, full.get(name).unwrap()), 0.0, "{name}");
    }
    // FUTE's scope: encoder parameters, no head, no activations.
    o.scope = FisherScope::encoder();
    let enc = fisher_embedding(&model, &examples, &o).unwrap();
    assert!(enc.get("classifier.weight").is_none());
    assert!(enc.get("cls_output").is_none());
    assert_eq!(enc.components.len() + 2 + 5, full.components.len());
    o.scope.layers = LayerSelection::Only(vec![5]);
    assert!(fisher_embedding(&model, &examples, &o).is_err());
}

#[test]
fn soft_regression_and_qa_targets() {
    let (model, examples, _) = tiny_model(DType::F64);
    // One-hot soft targets with soft cross-entropy give the hard-label Fisher.
    let soft: Vec<FisherExample> = examples
        .iter()
        .map(|e| {
            let FisherTarget::Label(l) = e.target else {
                unreachable!()
            };
            let mut d = vec![0.0; 3];
            d[l as usize] = 1.0;
            FisherExample {
                encoding: e.encoding.clone(),
                target: FisherTarget::Soft(d),
            }
        })
        .collect();
    let mut o = opts(FisherVariant::PerExample, 3, 1);
    let hard = fisher_embedding(&model, &examples, &o).unwrap();
    o.soft_loss = SoftLoss::SoftCrossEntropy;
    let s = fisher_embedding(&model, &soft, &o).unwrap();
    assert!(worst(&hard, &s) < 1e-6);
    o.soft_loss = SoftLoss::BceWithLogits;
    let bce = fisher_embedding(&model, &soft, &o).unwrap();
    assert!(bce.flatten().iter().all(|x| x.is_finite()));
    // Wrong target kind for the head: an error.
    let bad: Vec<FisherExample> = examples
        .iter()
        .map(|e| FisherExample {
            encoding: e.encoding.clone(),
            target: FisherTarget::Value(1.0),
        })
        .collect();
    assert!(fisher_embedding(&model, &bad, &o).is_err());
    assert!(fisher_embedding(&model, &[], &o).is_err());

    let cfg = model.config().clone();
    let reg =
        BertTaskModel::build(&cfg, HeadSpec::Regression, None, &BuildOptions::default()).unwrap();
    let vals: Vec<FisherExample> = examples
        .iter()
        .enumerate()
        .map(|(i, e)| FisherExample {
            encoding: e.encoding.clone(),
            target: FisherTarget::Value(i as f32 * 0.5),
        })
        .collect();
    for labels in [
        FisherLabels::Gold,
        FisherLabels::Sampled {
            trials: 10,
            seed: 3,
        },
    ] {
        o.labels = labels;
        let f = fisher_embedding(&reg, &vals, &o).unwrap();
        assert!(f.flatten().iter().any(|x| *x > 0.0));
    }

    let qa = BertTaskModel::build(
        &cfg,
        HeadSpec::QuestionAnswering,
        None,
        &BuildOptions::default(),
    )
    .unwrap();
    let spans: Vec<FisherExample> = examples
        .iter()
        .map(|e| FisherExample {
            encoding: e.encoding.clone(),
            target: FisherTarget::Span { start: 1, end: 2 },
        })
        .collect();
    for labels in [
        FisherLabels::Gold,
        FisherLabels::Sampled {
            trials: 10,
            seed: 3,
        },
    ] {
        o.labels = labels;
        o.scope = FisherScope::taskemb();
        let f = fisher_embedding(&qa, &spans, &o).unwrap();
        assert!(f.get("cls_output").is_none(), "QA has no pooler");
        assert!(f.get("qa_outputs.weight").is_some());
        assert!(f.flatten().iter().any(|x| *x > 0.0));
    }
}
