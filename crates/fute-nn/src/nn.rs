//! Differentiable building blocks: linear layers, layer normalisation,
//! embeddings, activations and dropout.
//!
//! Everything here is composed from candle ops that have a backward pass.
//! candle-nn's fused `LayerNorm`/`ops::layer_norm`/`softmax_last_dim` are never
//! used: they silently drop gradients (see `research/rust-stack.md` §1.3).

use candle_core::{DType, Tensor};

use crate::params::{Init, Need, Params};
use crate::rng::SeededRng;
use crate::{Error, Result};

/// Training or evaluation, plus the generator that draws dropout masks.
///
/// In [`Mode::eval`] dropout is the identity. In [`Mode::train`] every dropout
/// layer draws its mask from one SplitMix64 stream seeded by the given seed, so
/// two forward passes with equal seeds on equal inputs drop the same units.
/// (candle's own `ops::dropout` uses the CPU's unseedable generator; we do not.)
/// A `Mode` is not `Sync`: give each worker thread its own.
#[derive(Debug, Clone)]
pub struct Mode {
    train: bool,
    rng: SeededRng,
}

impl Mode {
    /// Evaluation: no dropout.
    pub fn eval() -> Self {
        Self {
            train: false,
            rng: SeededRng::new(0),
        }
    }

    /// Training: dropout active, masks drawn from a generator seeded with `seed`.
    pub fn train(seed: u64) -> Self {
        Self {
            train: true,
            rng: SeededRng::new(seed),
        }
    }

    /// Whether dropout is active.
    pub fn is_train(&self) -> bool {
        self.train
    }

    /// Inverted dropout: zeroes each element with probability `p` and scales the
    /// rest by `1/(1-p)` in training mode; returns `x` unchanged in eval mode.
    pub fn dropout(&self, x: &Tensor, p: f64) -> Result<Tensor> {
        if !self.train || p <= 0.0 {
            return Ok(x.clone());
        }
        if p >= 1.0 {
            return Ok(x.zeros_like()?);
        }
        let scale = 1.0 / (1.0 - p);
        let n = x.elem_count();
        let mask: Vec<f32> = (0..n)
            .map(|_| {
                if self.rng.uniform() < p {
                    0.0
                } else {
                    scale as f32
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        Ok(x.mul(&mask)?)
    }
}

/// `y = x Wᵀ + b` with `W` of shape `[out, in]` (PyTorch/HF layout).
#[derive(Debug, Clone)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Tensor,
}

impl Linear {
    /// Parameters `weight` (normal, std `init_std`) and `bias` (zeros) under `p`.
    pub fn new(
        p: &Params,
        in_dim: usize,
        out_dim: usize,
        init_std: f64,
        need: Need,
    ) -> Result<Self> {
        let weight = p.get(&[out_dim, in_dim], "weight", Init::Normal(init_std), need)?;
        let bias = p.get(&[out_dim], "bias", Init::Zeros, need)?;
        Ok(Self { weight, bias })
    }

    /// A layer without bias (PyTorch `bias=False`): only `weight` is a
    /// parameter; `bias` is a constant zero vector that is neither trained nor
    /// saved, so [`Linear::forward`] stays one op for both kinds.
    pub fn without_bias(
        p: &Params,
        in_dim: usize,
        out_dim: usize,
        init_std: f64,
        need: Need,
    ) -> Result<Self> {
        let weight = p.get(&[out_dim, in_dim], "weight", Init::Normal(init_std), need)?;
        let bias = Tensor::zeros(out_dim, p.dtype(), p.device())?;
        Ok(Self { weight, bias })
    }

    /// Applies the layer to the last dimension of `x` (any rank ≥ 1).
    ///
    /// One op ([`crate::ops::linear`]) whose backward forms only the gradients
    /// that are tracked: a detached (frozen) weight costs no weight gradient.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::ops::linear(x, &self.weight, &self.bias)
    }
}

/// Layer normalisation over the last dimension, from primitive (differentiable) ops.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    /// Scale, `[hidden]`.
    pub weight: Tensor,
    /// Shift, `[hidden]`.
    pub bias: Tensor,
    /// Added to the variance before the square root.
    pub eps: f64,
}

impl LayerNorm {
    /// Parameters `weight` (ones) and `bias` (zeros) under `p`.
    pub fn new(p: &Params, size: usize, eps: f64, need: Need) -> Result<Self> {
        let weight = p.get(&[size], "weight", Init::Ones, need)?;
        let bias = p.get(&[size], "bias", Init::Zeros, need)?;
        Ok(Self { weight, bias, eps })
    }

    /// `(x - mean) / sqrt(var + eps) * weight + bias` with the biased variance, as PyTorch.
    ///
    /// One fused pass forward and one backward ([`crate::ops::layer_norm`]).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// Root-mean-square normalisation over the last dimension (Zhang & Sennrich
/// 2019; Llama's `LlamaRMSNorm`, T5's `T5LayerNorm`): `weight · x / √(mean(x²) + eps)`,
/// no centring and no bias.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// Scale, `[hidden]`.
    pub weight: Tensor,
    /// Added to the mean square before the square root.
    pub eps: f64,
}

impl RmsNorm {
    /// Parameter `weight` (ones) under `p`.
    pub fn new(p: &Params, size: usize, eps: f64, need: Need) -> Result<Self> {
        let weight = p.get(&[size], "weight", Init::Ones, need)?;
        Ok(Self { weight, eps })
    }

    /// `weight · (x · 1/√(mean(x²) + eps))` in `x`'s own dtype, the operations
    /// in transformers' order ([`crate::ops::rms_norm`]). (transformers
    /// computes this in float32 even for a float64 model; see
    /// `scripts/golden/arch_golden.py`.)
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::ops::rms_norm(x, &self.weight, self.eps)
    }
}

/// A lookup table `[count, dim]`.
#[derive(Debug, Clone)]
pub struct Embedding {
    /// `[count, dim]`.
    pub weight: Tensor,
    /// Row that receives no gradient (PyTorch `padding_idx`), if any.
    pub padding_idx: Option<u32>,
}

impl Embedding {
    /// Parameter `weight` (normal, std `init_std`) under `p`.
    pub fn new(p: &Params, count: usize, dim: usize, init_std: f64, need: Need) -> Result<Self> {
        let weight = p.get(&[count, dim], "weight", Init::Normal(init_std), need)?;
        Ok(Self {
            weight,
            padding_idx: None,
        })
    }

    /// Rows of the table for integer `ids` of any shape; output has shape `ids.shape + [dim]`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let dim = self.weight.dim(1)?;
        let mut out_dims = ids.dims().to_vec();
        out_dims.push(dim);
        // One fused gather; backward builds the dense table gradient in one pass
        // and leaves the padding row without gradient.
        let rows = crate::ops::embedding(&self.weight, ids, self.padding_idx)?;
        Ok(rows.reshape(out_dims)?)
    }
}

/// Feed-forward activation functions supported in configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU, `0.5 x (1 + erf(x / √2))` (HF `"gelu"`).
    Gelu,
    /// Tanh approximation of GELU (HF `"gelu_new"`, also `"gelu_pytorch_tanh"`).
    GeluTanh,
    /// `max(x, 0)`.
    Relu,
}

impl Activation {
    /// Parses an HF `hidden_act` name.
    pub fn from_hf(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Some(Self::GeluTanh),
            "relu" => Some(Self::Relu),
            _ => None,
        }
    }

    /// Applies the activation element-wise.
    ///
    /// GELU is our fused op ([`crate::ops::gelu_erf`]) with the exact derivative;
    /// candle's fused `gelu_erf` backward rounds `1/√(2π)` to 6 digits, which
    /// would show up in f64 finite-difference checks.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Gelu => crate::ops::gelu_erf(x)?,
            Self::GeluTanh => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                let cube = x.sqr()?.mul(x)?;
                let inner = ((x + (cube * 0.044715)?)? * c)?;
                (x * 0.5)?.mul(&(inner.tanh()? + 1.0)?)?
            }
            Self::Relu => x.relu()?,
        })
    }
}

/// The additive attention mask `[B, 1, 1, extra + T]` of a `[B, T]` 0/1 mask:
/// 0 where attended, the dtype's lowest finite value on padding keys (what HF
/// uses), with `extra` attended keys (soft prompt, prefix) in front.
pub fn additive_mask(
    mask: &Tensor,
    (b, t): (usize, usize),
    extra: usize,
    dtype: DType,
) -> Result<Tensor> {
    if mask.dims() != [b, t] {
        return Err(Error::BadInput(format!(
            "attention_mask has shape {:?}, input_ids {:?}",
            mask.dims(),
            [b, t]
        )));
    }
    let min = match dtype {
        DType::F64 => f64::MIN,
        _ => f32::MIN as f64,
    };
    let mut keep = mask.to_dtype(dtype)?;
    if extra > 0 {
        keep = Tensor::cat(
            &[&Tensor::ones((b, extra), dtype, keep.device())?, &keep],
            1,
        )?;
    }
    Ok(((keep.affine(-1.0, 1.0)?) * min)?.reshape((b, 1, 1, t + extra))?)
}
