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

use std::collections::{BTreeMap, HashMap};

use candle_core::{Tensor, Var};
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
#[derive(Debug, Clone)]
pub struct Moments {
    /// First moment `m`.
    pub m: Tensor,
    /// Second moment `v`.
    pub v: Tensor,
    /// Number of updates this parameter has received.
    pub step: u64,
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
            let m = ((&entry.m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            let v = ((&entry.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let bc1 = 1.0 - c.beta1.powi(t as i32);
            let bc2 = 1.0 - c.beta2.powi(t as i32);
            let wd = if decays(name) { c.weight_decay } else { 0.0 };
            let p = var.as_tensor();
            let decayed = if wd != 0.0 {
                (p * (1.0 - lr * wd))?
            } else {
                p.copy()?
            };
            let denom = ((v.sqrt()? / bc2.sqrt())? + c.eps)?;
            let update = (m.div(&denom)? * (lr / bc1))?;
            var.set(&(decayed - update)?)?;
            self.state.insert(name.clone(), Moments { m, v, step: t });
        }
        Ok(())
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
    use super::decays;

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
