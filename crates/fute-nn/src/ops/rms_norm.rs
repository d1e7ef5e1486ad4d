//! RMSNorm (Llama, T5) as one op forward and one backward.
//!
//! The composite form `x · 1/√(mean(x²) + eps) · w` keeps two tensors of the
//! size of `x` (the square and the normalised input) besides its output for
//! the backward pass; this op keeps only its input, and forms the weight
//! gradient only when the weight tracks one.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor, D};

use super::kernels::{self, Real};
use super::{fused, slice};
use crate::Result;

struct RmsNormOp {
    eps: f64,
}

impl CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "fute-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let n = l2.shape().elem_count();
        let out = dispatch!(self.name(), [(s1, l1) => x, (s2, l2) => w], {
            kernels::rms_norm(x, w, n, Real::from_f64(self.eps))
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, total) = (w.elem_count(), x.elem_count());
        let g = grad_res.contiguous()?;
        // One pass: [dx (total) | dw (n)].
        let all = x
            .contiguous()?
            .apply_op3_no_bwd(w, &g, &RmsNormBwd { eps: self.eps })?;
        let dx = if x.track_op() {
            Some(all.narrow(0, 0, total)?.reshape(x.shape())?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(all.narrow(0, total, n)?.reshape(w.shape())?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

struct RmsNormBwd {
    eps: f64,
}

impl CustomOp3 for RmsNormBwd {
    fn name(&self) -> &'static str {
        "fute-rms-norm-bwd"
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
        let n = l2.shape().elem_count();
        let total = l1.shape().elem_count();
        let out = dispatch!(self.name(), [(s1, l1) => x, (s2, l2) => w, (s3, l3) => g], {
            kernels::rms_norm_bwd(x, w, g, n, Real::from_f64(self.eps))
        });
        Ok((out, Shape::from(total + n)))
    }
}

/// `weight · (x · 1/√(mean(x²) + eps))` over the last dimension (transformers'
/// `LlamaRMSNorm` / `T5LayerNorm` in `x`'s own dtype), forward and backward
/// (x, weight) in one pass each.
///
/// # Errors
/// When `weight` is not `[last dimension of x]`.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let n = x.dim(D::Minus1)?;
    if weight.dims() != [n] {
        return Err(crate::Error::Bug(format!(
            "rms_norm: weight {:?} does not fit input {:?}",
            weight.dims(),
            x.dims()
        )));
    }
    if !fused(x) || weight.dtype() != x.dtype() {
        let mean_square = x.sqr()?.mean_keepdim(D::Minus1)?;
        let inv = (mean_square + eps)?.sqrt()?.recip()?;
        return Ok(x.broadcast_mul(&inv)?.broadcast_mul(weight)?);
    }
    Ok(x.contiguous()?
        .apply_op2(&weight.contiguous()?, RmsNormOp { eps })?)
}
