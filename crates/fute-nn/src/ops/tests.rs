//! Fused ops: values against the composite candle ops, gradients against the
//! composite backward and against f64 central finite differences.

use candle_core::{DType, Device, Tensor, Var, D};

use super::{embedding, gelu_erf, layer_norm, linear, masked_softmax, rms_norm, rotary};
use crate::rng::SeededRng;

fn randn(shape: &[usize], scale: f64, seed: u64, dtype: DType) -> Tensor {
    let rng = SeededRng::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.normal() * scale).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn vec(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    vec(a)
        .iter()
        .zip(vec(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// An attention-like mask `[B, 1, 1, K]`: 0 or the dtype's lowest value.
fn mask(b: usize, k: usize, dtype: DType) -> Tensor {
    let min = if dtype == DType::F64 {
        f64::MIN
    } else {
        f32::MIN as f64
    };
    let v: Vec<f64> = (0..b * k)
        .map(|i| if i % k >= k - 1 - i / k { min } else { 0.0 })
        .collect();
    Tensor::from_vec(v, (b, 1, 1, k), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// A decoder's causal mask `[B, 1, T, T]`: query `i` sees keys `j ≤ i`, and
/// the first example's first key is padding.
fn causal_mask(b: usize, t: usize, dtype: DType) -> Tensor {
    let min = if dtype == DType::F64 {
        f64::MIN
    } else {
        f32::MIN as f64
    };
    let v: Vec<f64> = (0..b * t * t)
        .map(|n| {
            let (e, i, j) = (n / (t * t), n / t % t, n % t);
            if j > i || (e == 0 && j == 0 && i > 0) {
                min
            } else {
                0.0
            }
        })
        .collect();
    Tensor::from_vec(v, (b, 1, t, t), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

type Op = dyn Fn(&[Tensor]) -> Tensor;

/// Name, composite op, fused op, inputs, number of inputs with gradients.
type Case = (&'static str, Box<Op>, Box<Op>, Vec<Tensor>, usize);

fn composite_softmax(t: &[Tensor]) -> Tensor {
    let z = (&t[0] * 0.3).unwrap().broadcast_add(&t[1]).unwrap();
    candle_nn::ops::softmax(&z, D::Minus1).unwrap()
}

fn fused_softmax(t: &[Tensor]) -> Tensor {
    masked_softmax(&t[0], &t[1], 0.3).unwrap()
}

fn composite_rotary(t: &[Tensor]) -> Tensor {
    // What the Llama layer did before the fused op.
    let (x, d) = (&t[0], t[0].dim(D::Minus1).unwrap());
    let x1 = x.narrow(D::Minus1, 0, d / 2).unwrap();
    let x2 = x.narrow(D::Minus1, d / 2, d / 2).unwrap();
    let rotated = Tensor::cat(&[&x2.neg().unwrap(), &x1], D::Minus1).unwrap();
    (x.broadcast_mul(&t[1]).unwrap() + rotated.broadcast_mul(&t[2]).unwrap()).unwrap()
}

fn fused_rotary(t: &[Tensor]) -> Tensor {
    rotary(&t[0], &t[1], &t[2]).unwrap()
}

fn composite_rms(t: &[Tensor]) -> Tensor {
    // What `nn::RmsNorm` did before the fused op.
    let inv = (t[0].sqr().unwrap().mean_keepdim(D::Minus1).unwrap() + 1e-5)
        .unwrap()
        .sqrt()
        .unwrap()
        .recip()
        .unwrap();
    t[0].broadcast_mul(&inv)
        .unwrap()
        .broadcast_mul(&t[1])
        .unwrap()
}

fn fused_rms(t: &[Tensor]) -> Tensor {
    rms_norm(&t[0], &t[1], 1e-5).unwrap()
}

fn composite_gelu(t: &[Tensor]) -> Tensor {
    let x = &t[0];
    let e = (x * std::f64::consts::FRAC_1_SQRT_2)
        .unwrap()
        .erf()
        .unwrap();
    (x * 0.5).unwrap().mul(&(e + 1.0).unwrap()).unwrap()
}

fn fused_gelu(t: &[Tensor]) -> Tensor {
    gelu_erf(&t[0]).unwrap()
}

fn composite_ln(t: &[Tensor]) -> Tensor {
    let x = &t[0];
    let mean = x.mean_keepdim(D::Minus1).unwrap();
    let c = x.broadcast_sub(&mean).unwrap();
    let var = c.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
    c.broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
        .unwrap()
        .broadcast_mul(&t[1])
        .unwrap()
        .broadcast_add(&t[2])
        .unwrap()
}

fn fused_ln(t: &[Tensor]) -> Tensor {
    layer_norm(&t[0], &t[1], &t[2], 1e-5).unwrap()
}

fn composite_embedding(t: &[Tensor]) -> Tensor {
    // What `nn::Embedding` did before the fused op: padding rows (id 0) detached.
    let rows = t[0].index_select(&t[1], 0).unwrap();
    let is_pad = t[1]
        .eq(0u32)
        .unwrap()
        .unsqueeze(1)
        .unwrap()
        .broadcast_as(rows.shape())
        .unwrap();
    is_pad.where_cond(&rows.detach(), &rows).unwrap()
}

fn fused_embedding(t: &[Tensor]) -> Tensor {
    embedding(&t[0], &t[1], Some(0)).unwrap()
}

fn composite_linear(t: &[Tensor]) -> Tensor {
    // What `nn::Linear` did before the fused op.
    let (b, s, k) = t[0].dims3().unwrap();
    t[0].reshape((b * s, k))
        .unwrap()
        .matmul(&t[1].t().unwrap())
        .unwrap()
        .broadcast_add(&t[2])
        .unwrap()
        .reshape((b, s, t[1].dim(0).unwrap()))
        .unwrap()
}

fn fused_linear(t: &[Tensor]) -> Tensor {
    linear(&t[0], &t[1], &t[2]).unwrap()
}

/// Inputs of each op (the ones with gradients first, `n_vars` of them).
fn cases(dtype: DType) -> Vec<Case> {
    vec![
        (
            "masked softmax",
            Box::new(composite_softmax),
            Box::new(fused_softmax),
            vec![randn(&[2, 3, 4, 5], 2.0, 1, dtype), mask(2, 5, dtype)],
            1,
        ),
        (
            "causal masked softmax",
            Box::new(composite_softmax),
            Box::new(fused_softmax),
            vec![
                randn(&[2, 3, 4, 4], 2.0, 11, dtype),
                causal_mask(2, 4, dtype),
            ],
            1,
        ),
        (
            "rotary",
            Box::new(composite_rotary),
            Box::new(fused_rotary),
            // Tables of any values: the op does not rely on HF's repeated halves.
            vec![
                randn(&[2, 3, 4, 6], 1.0, 12, dtype),
                randn(&[4, 6], 1.0, 13, dtype),
                randn(&[4, 6], 1.0, 14, dtype),
            ],
            1,
        ),
        (
            "rms norm",
            Box::new(composite_rms),
            Box::new(fused_rms),
            vec![
                (randn(&[2, 3, 9], 1.0, 15, dtype) + 0.4).unwrap(),
                (randn(&[9], 0.3, 16, dtype) + 1.0).unwrap(),
            ],
            2,
        ),
        (
            "gelu",
            Box::new(composite_gelu),
            Box::new(fused_gelu),
            vec![randn(&[3, 7, 11], 1.5, 2, dtype)],
            1,
        ),
        (
            "layer norm",
            Box::new(composite_ln),
            Box::new(fused_ln),
            vec![
                (randn(&[2, 3, 9], 1.0, 3, dtype) + 0.7).unwrap(),
                (randn(&[9], 0.3, 4, dtype) + 1.0).unwrap(),
                randn(&[9], 0.3, 5, dtype),
            ],
            3,
        ),
        (
            "embedding",
            Box::new(composite_embedding),
            Box::new(fused_embedding),
            vec![
                randn(&[6, 4], 1.0, 6, dtype),
                Tensor::new(&[3u32, 0, 5, 3, 1, 0, 3], &Device::Cpu).unwrap(),
            ],
            1,
        ),
        (
            "linear",
            Box::new(composite_linear),
            Box::new(fused_linear),
            vec![
                randn(&[2, 3, 5], 1.0, 7, dtype),
                randn(&[4, 5], 0.5, 8, dtype),
                randn(&[4], 0.5, 10, dtype),
            ],
            3,
        ),
    ]
}

/// Gradients of `Σ op(inputs) ⊙ r` with respect to the first `n_vars` inputs.
fn grads(op: &Op, inputs: &[Tensor], n_vars: usize, r: &Tensor) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs[..n_vars]
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let mut args: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    args.extend(inputs[n_vars..].iter().cloned());
    let y = op(&args);
    let loss = (&y * r).unwrap().sum_all().unwrap();
    let g = loss.backward().unwrap();
    let gs = vars
        .iter()
        .map(|v| g.get(v.as_tensor()).expect("gradient").clone())
        .collect();
    (y, gs)
}

#[test]
fn fused_ops_match_composite_ops_and_their_gradients() {
    for dtype in [DType::F32, DType::F64] {
        let tol = if dtype == DType::F32 { 2e-6 } else { 1e-14 };
        for (name, composite, fused, inputs, n_vars) in cases(dtype) {
            let r = randn(composite(&inputs).dims(), 1.0, 9, dtype);
            let (y0, g0) = grads(composite.as_ref(), &inputs, n_vars, &r);
            let (y1, g1) = grads(fused.as_ref(), &inputs, n_vars, &r);
            let d = max_abs_diff(&y0, &y1);
            assert!(d <= tol, "{name} {dtype:?}: values differ by {d}");
            for (i, (a, b)) in g0.iter().zip(&g1).enumerate() {
                let scale = vec(a).iter().fold(1.0f64, |m, v| m.max(v.abs()));
                let d = max_abs_diff(a, b) / scale;
                assert!(
                    d <= 10.0 * tol,
                    "{name} {dtype:?} input {i}: gradients differ by {d}"
                );
            }
        }
    }
}

#[test]
fn fused_gelu_forward_is_bit_identical_to_the_composite_form() {
    let x = randn(&[4, 1000], 3.0, 11, DType::F32);
    let a: Vec<f32> = composite_gelu(std::slice::from_ref(&x))
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f32> = fused_gelu(&[x]).flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(a, b);
}

#[test]
fn fused_ops_pass_f64_finite_differences() {
    let h = 1e-6;
    for (name, _, fused, inputs, n_vars) in cases(DType::F64) {
        let r = randn(fused(&inputs).dims(), 1.0, 9, DType::F64);
        let (_, analytic) = grads(fused.as_ref(), &inputs, n_vars, &r);
        let loss = |inputs: &[Tensor]| -> f64 {
            (fused(inputs) * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        for i in 0..n_vars {
            let base = vec(&inputs[i]);
            let an = vec(&analytic[i]);
            // The embedding's padding row (id 0, the first 4 values) has no gradient
            // by design (PyTorch `padding_idx`), although the output depends on it.
            let first = if name == "embedding" { 4 } else { 0 };
            for j in first..base.len() {
                let at = |delta: f64| {
                    let mut v = base.clone();
                    v[j] += delta;
                    let mut ins = inputs.to_vec();
                    ins[i] = Tensor::from_vec(v, inputs[i].shape(), &Device::Cpu).unwrap();
                    loss(&ins)
                };
                let fd = (at(h) - at(-h)) / (2.0 * h);
                let err = (fd - an[j]).abs() / an[j].abs().max(1e-3);
                assert!(
                    err < 1e-6,
                    "{name} input {i}[{j}]: analytic {} vs finite difference {fd}",
                    an[j]
                );
            }
        }
    }
}

#[test]
fn fused_ops_do_not_depend_on_the_thread_count() {
    // More rows than one parallel block, so blocks run on different threads.
    let x = randn(&[70, 33], 1.0, 21, DType::F32);
    let w = randn(&[33], 1.0, 22, DType::F32);
    let b = randn(&[33], 1.0, 23, DType::F32);
    let run = |threads: usize| -> (Vec<f32>, Vec<f32>) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (y, g) = grads(
                &|t: &[Tensor]| layer_norm(&t[0], &t[1], &t[2], 1e-12).unwrap(),
                &[x.clone(), w.clone(), b.clone()],
                3,
                &x,
            );
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let mut gs = Vec::new();
            for g in &g {
                gs.extend(flat(g));
            }
            (flat(&y), gs)
        })
    };
    assert_eq!(run(1), run(3));
}

#[test]
fn linear_forward_is_bit_identical_and_skips_untracked_gradients() {
    // Large enough for gemm's blocked, threaded path.
    let x = randn(&[3, 70, 96], 1.0, 31, DType::F32);
    let w = randn(&[130, 96], 0.2, 32, DType::F32);
    let b = randn(&[130], 0.2, 33, DType::F32);
    let inputs = [x.clone(), w.clone(), b.clone()];
    assert_eq!(vec(&composite_linear(&inputs)), vec(&fused_linear(&inputs)));
    // Weight and bias detached: only the input gradient is formed, and it equals
    // the input gradient of the fully tracked op bit for bit.
    let r = randn(&[3, 70, 130], 1.0, 34, DType::F32);
    let (_, all) = grads(&fused_linear, &inputs, 3, &r);
    let xv = Var::from_tensor(&x).unwrap();
    let wv = Var::from_tensor(&w).unwrap();
    let y = linear(xv.as_tensor(), &wv.as_tensor().detach(), &b).unwrap();
    let store = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(store.get(wv.as_tensor()).is_none());
    assert_eq!(vec(store.get(xv.as_tensor()).unwrap()), vec(&all[0]));
}

#[test]
fn rotary_forward_is_bit_identical_to_the_composite_form() {
    let t = [
        randn(&[2, 3, 40, 64], 1.0, 41, DType::F32),
        randn(&[40, 64], 1.0, 42, DType::F32),
        randn(&[40, 64], 1.0, 43, DType::F32),
    ];
    assert_eq!(vec(&composite_rotary(&t)), vec(&fused_rotary(&t)));
}

/// The gradient store after a backward pass through every fused op holds the
/// inputs' gradients only, none of them holding an autograd graph: candle keeps
/// each stored gradient (and whatever it references) until the backward pass
/// ends, so a gradient formed for a constant (a mask, a rotary table) or one
/// that records its op (keeping the output gradient alive) costs memory per
/// layer (issue 13: a SmolLM2 Fisher batch was OOM-killed at 15.9 GB).
#[test]
fn fused_ops_leave_only_detached_gradients_of_their_inputs() {
    for (name, _, fused, inputs, n_vars) in cases(DType::F32) {
        let vars: Vec<Var> = inputs[..n_vars]
            .iter()
            .map(|t| Var::from_tensor(t).unwrap())
            .collect();
        let mut args: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        args.extend(inputs[n_vars..].iter().cloned());
        let y = fused(&args);
        let r = randn(y.dims(), 1.0, 9, DType::F32);
        // `r` enters through a product, so it gets a gradient of its own.
        let store = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let kept: Vec<_> = store.get_ids().copied().collect();
        let wanted: Vec<_> = vars.iter().map(|v| v.as_tensor().id()).collect();
        for id in kept.iter().filter(|&&id| id != r.id()) {
            let g = store.get_id(*id).unwrap();
            assert!(!g.track_op(), "{name}: a gradient holds an autograd graph");
            assert!(
                wanted.contains(id),
                "{name}: a gradient {:?} was kept for a constant input",
                g.dims()
            );
        }
        assert_eq!(kept.len(), n_vars + 1, "{name}: gradients kept");
    }
}
