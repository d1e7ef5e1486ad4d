//! Rotary position embedding (transformers' `apply_rotary_pos_emb` with the
//! `rotate_half` layout) as one op whose backward is the transposed rotation.
//!
//! The composite form `x·cos + cat(−x₂, x₁)·sin` keeps five tensors of the
//! size of `x` for the backward pass, and candle forms (and keeps until the
//! backward pass ends) a gradient for each broadcast table, although the
//! tables are constants: per Llama layer and batch of 8 × 128 tokens that was
//! about 30 MB. This op keeps nothing but its input and gives the tables no
//! gradient.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor, D};

use super::kernels;
use super::{fused, slice};
use crate::Result;

struct Rotary {
    /// Apply the transposed rotation (the backward pass).
    transpose: bool,
}

impl CustomOp3 for Rotary {
    fn name(&self) -> &'static str {
        if self.transpose {
            "fute-rotary-bwd"
        } else {
            "fute-rotary"
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = l1.dims()[l1.dims().len() - 1];
        let positions = l2.dims()[0];
        let out = dispatch!(self.name(), [(s1, l1) => x, (s2, l2) => c, (s3, l3) => s], {
            kernels::rotary(x, c, s, (d, positions), self.transpose)
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = grad_res.contiguous()?;
        let dx = g.apply_op3_no_bwd(cos, sin, &Rotary { transpose: true })?;
        Ok((Some(dx), None, None))
    }
}

/// `x·cos + rotate_half(x)·sin` for `x` `[B, heads, T, head_dim]` and tables
/// `cos`, `sin` `[T, head_dim]` (as [`crate::models::llama::layer::rotary_tables`]
/// makes them), where `rotate_half(x) = [−x₂, x₁]` of the two halves of the
/// last dimension. Gradient flows to `x` only (the tables are constants).
///
/// Each output is `a·b + c·d` with the same roundings as the composite form,
/// so values are bit-identical to it.
///
/// # Errors
/// When the shapes do not fit (odd `head_dim`, tables not `[T, head_dim]`).
pub fn rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (_, _, t, d) = x.dims4()?;
    if d % 2 != 0 || cos.dims() != [t, d] || sin.dims() != [t, d] {
        return Err(crate::Error::Bug(format!(
            "rotary: input {:?} needs [{t}, {d}] tables with an even last dimension, got cos {:?}, sin {:?}",
            x.dims(),
            cos.dims(),
            sin.dims()
        )));
    }
    if !fused(x) || cos.dtype() != x.dtype() || sin.dtype() != x.dtype() {
        let x1 = x.narrow(D::Minus1, 0, d / 2)?;
        let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        return Ok((x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?)?);
    }
    Ok(x.contiguous()?.apply_op3(
        &cos.contiguous()?,
        &sin.contiguous()?,
        Rotary { transpose: false },
    )?)
}
