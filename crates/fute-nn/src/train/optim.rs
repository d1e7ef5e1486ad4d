//! AdamW with decoupled weight decay (Loshchilov & Hutter), in PyTorch's form,
//! and global-norm gradient clipping.
//!
//! One step for a parameter `p` with gradient `g`, at its own step count `t`
//! (starting at 1), exactly as `torch.optim.AdamW`:
//!
//! ```text
//! p ← p · (1 − lr·wd)                      (decoupled decay; wd = 0 for no-decay names)
//! m ← β1·m + (1 − β1)·g
//! v ← β2·v + (1 − β2)·g²
//! p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
//! ```
//!
//! Biases and LayerNorm weights get no weight decay, chosen by parameter name
//! ([`decays`]), as the Hugging Face `Trainer` does. Moments are plain tensors
//! kept by parameter name so a checkpoint can save and restore them.
//!
//! On CPU tensors of dtype F32/F64 an update is one fused pass over the raw
//! slices of parameter, moments and gradient, in place (no temporaries). Every
//! element goes through the same f32/f64 operations, in the same order, as the
//! tensor-op formulation (kept for other devices and dtypes; a test checks the
//! two agree bit for bit).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use candle_core::{CpuStorage, InplaceOp1, Layout, Storage, Tensor, Var};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::Result;

/// AdamW hyper-parameters (PyTorch defaults except the learning rate).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// Peak learning rate (before the schedule's factor).
    pub lr: f64,
    /// First-moment decay β1.
    pub beta1: f64,
    /// Second-moment decay β2.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay for parameters [`decays`] accepts.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 2e-5,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// Whether parameter `name` gets weight decay: not biases, not LayerNorm
/// weights (`…LayerNorm.weight`, `…layer_norm.weight`, `…ln….weight`).
pub fn decays(name: &str) -> bool {
    if name.ends_with(".bias") || name == "bias" {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    !(lower.contains("layernorm") || lower.contains("layer_norm") || lower.contains(".ln"))
}

/// The optimiser state of one parameter.
///
/// [`AdamW::step`] updates `m` and `v` in place; a clone copies them, so a clone
/// is not affected by later steps.
#[derive(Debug)]
pub struct Moments {
    /// First moment `m`.
    pub m: Tensor,
    /// Second moment `v`.
    pub v: Tensor,
    /// Number of updates this parameter has received.
    pub step: u64,
}

impl Clone for Moments {
    fn clone(&self) -> Self {
        let deep = |t: &Tensor| t.copy().unwrap_or_else(|_| t.clone());
        Self {
            m: deep(&self.m),
            v: deep(&self.v),
            step: self.step,
        }
    }
}

/// AdamW over named parameters.
#[derive(Debug, Clone)]
pub struct AdamW {
    /// Hyper-parameters.
    pub config: AdamWConfig,
    /// State per parameter name (absent until its first update).
    pub state: BTreeMap<String, Moments>,
}

impl AdamW {
    /// A fresh optimiser.
    pub fn new(config: AdamWConfig) -> Self {
        Self {
            config,
            state: BTreeMap::new(),
        }
    }

    /// One update of every parameter in `params` that has a gradient in `grads`,
    /// with learning rate `lr` (the schedule's value for this step). Parameters
    /// without a gradient are left alone, state included (as PyTorch does).
    pub fn step(
        &mut self,
        params: &[(String, Var)],
        grads: &HashMap<String, Tensor>,
        lr: f64,
    ) -> Result<()> {
        let c = self.config;
        for (name, var) in params {
            let Some(g) = grads.get(name) else { continue };
            let g = g.to_dtype(var.dtype())?;
            let entry = match self.state.remove(name) {
                Some(s) => s,
                None => Moments {
                    m: g.zeros_like()?,
                    v: g.zeros_like()?,
                    step: 0,
                },
            };
            let t = entry.step + 1;
            let h = Hyper::new(&c, decays(name), lr, t);
            let (m, v) = if in_place_ok(var.as_tensor(), &entry, &g) {
                let g = g.contiguous()?;
                update_in_place(var.as_tensor(), &entry.m, &entry.v, &g, &h)?;
                (entry.m, entry.v)
            } else {
                update_with_tensor_ops(var, &entry.m, &entry.v, &g, &c, &h)?
            };
            self.state.insert(name.clone(), Moments { m, v, step: t });
        }
        Ok(())
    }
}

/// Per-step scalars of one parameter's update (f64; converted to the dtype
/// exactly where the tensor ops convert them).
struct Hyper {
    beta1: f64,
    beta2: f64,
    /// `1 − lr·wd`, `None` without decay.
    decay: Option<f64>,
    /// `1 / √(1 − β2ᵗ)`.
    inv_sqrt_bc2: f64,
    eps: f64,
    /// `lr / (1 − β1ᵗ)`.
    step_size: f64,
}

impl Hyper {
    fn new(c: &AdamWConfig, decays: bool, lr: f64, t: u64) -> Self {
        let bc1 = 1.0 - c.beta1.powi(t as i32);
        let bc2 = 1.0 - c.beta2.powi(t as i32);
        let wd = if decays { c.weight_decay } else { 0.0 };
        Self {
            beta1: c.beta1,
            beta2: c.beta2,
            decay: (wd != 0.0).then_some(1.0 - lr * wd),
            inv_sqrt_bc2: 1.0 / bc2.sqrt(),
            eps: c.eps,
            step_size: lr / bc1,
        }
    }
}

/// The tensor-op formulation (any device or dtype).
fn update_with_tensor_ops(
    var: &Var,
    m: &Tensor,
    v: &Tensor,
    g: &Tensor,
    c: &AdamWConfig,
    h: &Hyper,
) -> Result<(Tensor, Tensor)> {
    let m = ((m * c.beta1)? + (g * (1.0 - c.beta1))?)?;
    let v = ((v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
    let p = var.as_tensor();
    let decayed = match h.decay {
        Some(d) => (p * d)?,
        None => p.copy()?,
    };
    // `x / s` is `x · (1/s)` in candle, `x + e` is `x · 1 + e`.
    let denom = (v.sqrt()?.affine(h.inv_sqrt_bc2, 0.0)? + c.eps)?;
    let update = (m.div(&denom)? * h.step_size)?;
    var.set(&(decayed - update)?)?;
    Ok((m, v))
}

/// Whether the fused in-place update applies: CPU, one float dtype, contiguous
/// parameter and moments of the parameter's shape.
fn in_place_ok(p: &Tensor, s: &Moments, g: &Tensor) -> bool {
    let cpu_float = |t: &Tensor| {
        t.device().is_cpu()
            && t.dtype() == p.dtype()
            && matches!(t.dtype(), candle_core::DType::F32 | candle_core::DType::F64)
    };
    [p, &s.m, &s.v, g].iter().all(|t| cpu_float(t))
        && [p, &s.m, &s.v].iter().all(|t| t.is_contiguous())
        && s.m.shape() == p.shape()
        && s.v.shape() == p.shape()
        && g.shape() == p.shape()
}

/// Runs a closure on one tensor's storage, in place (a one-shot `InplaceOp1`).
struct InPlace<F>(RefCell<Option<F>>);

impl<F> InplaceOp1 for InPlace<F>
where
    F: FnOnce(&mut CpuStorage, &Layout) -> candle_core::Result<()>,
{
    fn name(&self) -> &'static str {
        "fute-adamw"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        match self.0.borrow_mut().take() {
            Some(f) => f(s, l),
            None => candle_core::bail!("fute-adamw: applied twice"),
        }
    }
}

fn with_storage_mut<F>(t: &Tensor, f: F) -> candle_core::Result<()>
where
    F: FnOnce(&mut CpuStorage, &Layout) -> candle_core::Result<()>,
{
    t.inplace_op1(&InPlace(RefCell::new(Some(f))))
}

fn range(l: &Layout) -> candle_core::Result<std::ops::Range<usize>> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(a..b),
        None => candle_core::bail!("fute-adamw: tensor is not contiguous"),
    }
}

/// The fused update of `p`, `m`, `v` in place from gradient `g`.
fn update_in_place(p: &Tensor, m: &Tensor, v: &Tensor, g: &Tensor, h: &Hyper) -> Result<()> {
    let (gs, gl) = g.storage_and_layout();
    let Storage::Cpu(gs) = &*gs else {
        return Err(crate::Error::BadInput(
            "AdamW: gradient is not on the CPU".into(),
        ));
    };
    let gr = range(gl)?;
    with_storage_mut(m, |ms, ml| {
        let mr = range(ml)?;
        with_storage_mut(v, |vs, vl| {
            let vr = range(vl)?;
            with_storage_mut(p, |ps, pl| {
                let pr = range(pl)?;
                match (ps, ms, vs, gs) {
                    (
                        CpuStorage::F32(p),
                        CpuStorage::F32(m),
                        CpuStorage::F32(v),
                        CpuStorage::F32(g),
                    ) => adamw_kernel(&mut p[pr], &mut m[mr], &mut v[vr], &g[gr], h, |x| x as f32),
                    (
                        CpuStorage::F64(p),
                        CpuStorage::F64(m),
                        CpuStorage::F64(v),
                        CpuStorage::F64(g),
                    ) => adamw_kernel(&mut p[pr], &mut m[mr], &mut v[vr], &g[gr], h, |x| x),
                    _ => candle_core::bail!("fute-adamw: mixed dtypes"),
                }
                Ok(())
            })
        })
    })?;
    Ok(())
}

/// Elements per parallel block.
const BLOCK: usize = 1 << 14;

/// The per-element update, with the operations of [`update_with_tensor_ops`] in
/// the same order (`affine(a, b)` is `x·a + b`, so the `+ zero`s are kept).
fn adamw_kernel<T>(p: &mut [T], m: &mut [T], v: &mut [T], g: &[T], h: &Hyper, cast: fn(f64) -> T)
where
    T: Copy
        + Send
        + Sync
        + std::ops::Add<Output = T>
        + std::ops::Sub<Output = T>
        + std::ops::Mul<Output = T>
        + std::ops::Div<Output = T>
        + Sqrt,
{
    let zero = cast(0.0);
    let one = cast(1.0);
    let b1 = cast(h.beta1);
    let omb1 = cast(1.0 - h.beta1);
    let b2 = cast(h.beta2);
    let omb2 = cast(1.0 - h.beta2);
    let decay = h.decay.map(cast);
    let inv_sqrt_bc2 = cast(h.inv_sqrt_bc2);
    let eps = cast(h.eps);
    let step_size = cast(h.step_size);
    p.par_chunks_mut(BLOCK)
        .zip(m.par_chunks_mut(BLOCK))
        .zip(v.par_chunks_mut(BLOCK))
        .zip(g.par_chunks(BLOCK))
        .for_each(|(((p, m), v), g)| {
            for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
                let m1 = (*m * b1 + zero) + (g * omb1 + zero);
                let v1 = (*v * b2 + zero) + ((g * g) * omb2 + zero);
                let decayed = match decay {
                    Some(d) => *p * d + zero,
                    None => *p,
                };
                let denom = (v1.sqrt() * inv_sqrt_bc2 + zero) * one + eps;
                let update = (m1 / denom) * step_size + zero;
                *p = decayed - update;
                *m = m1;
                *v = v1;
            }
        });
}

/// Square root of f32 / f64.
trait Sqrt {
    fn sqrt(self) -> Self;
}

impl Sqrt for f32 {
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
}

impl Sqrt for f64 {
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
}

/// The global L2 norm of all gradients, `√Σ‖g‖²` (computed in f64).
pub fn global_norm(grads: &HashMap<String, Tensor>) -> Result<f64> {
    let mut names: Vec<&String> = grads.keys().collect();
    names.sort();
    let mut sum = 0.0f64;
    for n in names {
        let g = &grads[n];
        sum += g
            .to_dtype(candle_core::DType::F64)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f64>()?;
    }
    Ok(sum.sqrt())
}

/// Scales all gradients so their global norm is at most `max_norm`, as PyTorch's
/// `clip_grad_norm_` (factor `max_norm / (norm + 1e-6)` when that is below 1).
/// Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut HashMap<String, Tensor>, max_norm: f64) -> Result<f64> {
    let norm = global_norm(grads)?;
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for g in grads.values_mut() {
            *g = (&*g * coef)?;
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// The fused in-place update equals the tensor-op formulation bit for bit.
    #[test]
    fn in_place_update_equals_tensor_ops_bitwise() {
        for dtype in [DType::F32, DType::F64] {
            let rng = crate::rng::SeededRng::new(7);
            let rand = |n: usize, s: f64| {
                let v: Vec<f64> = (0..n).map(|_| rng.normal() * s).collect();
                Tensor::from_vec(v, n, &Device::Cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap()
            };
            let n = 40_000;
            let init = rand(n, 1.0);
            let grads: Vec<Tensor> = (0..4).map(|_| rand(n, 1e-3)).collect();
            let c = AdamWConfig {
                lr: 1e-3,
                weight_decay: 0.01,
                ..Default::default()
            };
            for name in ["x.weight", "x.bias"] {
                let fused = Var::from_tensor(&init.copy().unwrap()).unwrap();
                let plain = Var::from_tensor(&init.copy().unwrap()).unwrap();
                let mut opt = AdamW::new(c);
                let (mut m, mut v) = (init.zeros_like().unwrap(), init.zeros_like().unwrap());
                for (t, g) in grads.iter().enumerate() {
                    let lr = 1e-3 * (t + 1) as f64;
                    let params = [(name.to_string(), fused.clone())];
                    let gm = HashMap::from([(name.to_string(), g.clone())]);
                    opt.step(&params, &gm, lr).unwrap();
                    let h = Hyper::new(&c, decays(name), lr, t as u64 + 1);
                    (m, v) = update_with_tensor_ops(&plain, &m, &v, g, &c, &h).unwrap();
                    let bits = |t: &Tensor| -> Vec<u64> {
                        let t = t.to_dtype(DType::F64).unwrap();
                        t.to_vec1::<f64>()
                            .unwrap()
                            .iter()
                            .map(|x| x.to_bits())
                            .collect()
                    };
                    assert_eq!(
                        bits(fused.as_tensor()),
                        bits(plain.as_tensor()),
                        "{dtype:?}"
                    );
                    assert_eq!(bits(&opt.state[name].m), bits(&m), "{dtype:?}");
                    assert_eq!(bits(&opt.state[name].v), bits(&v), "{dtype:?}");
                }
            }
        }
    }

    #[test]
    fn a_clone_keeps_its_moments() {
        let p = Var::from_tensor(&Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap()).unwrap();
        let params = [("w".to_string(), p)];
        let g = HashMap::from([(
            "w".to_string(),
            Tensor::new(&[0.5f32, -0.5], &Device::Cpu).unwrap(),
        )]);
        let mut opt = AdamW::new(AdamWConfig::default());
        opt.step(&params, &g, 0.1).unwrap();
        let snapshot = opt.clone();
        let before = snapshot.state["w"].m.to_vec1::<f32>().unwrap();
        opt.step(&params, &g, 0.1).unwrap();
        assert_eq!(snapshot.state["w"].m.to_vec1::<f32>().unwrap(), before);
        assert_ne!(opt.state["w"].m.to_vec1::<f32>().unwrap(), before);
    }

    #[test]
    fn no_decay_names() {
        assert!(decays("bert.encoder.layer.0.attention.self.query.weight"));
        assert!(decays("classifier.weight"));
        assert!(decays("bert.embeddings.word_embeddings.weight"));
        assert!(!decays("classifier.bias"));
        assert!(!decays("bert.embeddings.LayerNorm.weight"));
        assert!(!decays("bert.encoder.layer.3.output.LayerNorm.weight"));
        assert!(!decays("bert.encoder.layer.3.output.LayerNorm.bias"));
    }
}
