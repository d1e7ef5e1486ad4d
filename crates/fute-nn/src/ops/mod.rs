//! Fused element-wise ops with their own exact backward passes.
//!
//! candle composes softmax, GELU and LayerNorm from several primitive ops, each of
//! which allocates a full-size tensor forward and several more backward. On the
//! 2-core CPU these allocations and passes, not the matmuls, dominated a training
//! step. The ops here do one pass forward and one pass backward, through candle's
//! `CustomOp` API (`cpu_fwd` + `bwd`), so gradients still flow. Backward passes
//! are themselves fused ops (without a second-order backward).
//!
//! All ops work on CPU tensors of dtype F32 and F64; other dtypes or devices fall
//! back to the composite candle ops, with the same values up to rounding.
//!
//! Parallel work is split into fixed blocks of rows and reduced in block order,
//! so results do not depend on the number of threads.

mod kernels;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, D};

use crate::Result;

use kernels::Real;

/// Whether the fused kernels handle `t` (CPU, F32 or F64).
fn fused(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// The contiguous slice a layout describes.
fn slice<'a, T>(data: &'a [T], layout: &Layout, op: &'static str) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: input is not contiguous"),
    }
}

/// Runs `f` on the F32 or F64 slices of one storage.
macro_rules! dispatch1 {
    ($s:expr, $l:expr, $op:expr, |$x:ident| $body:expr) => {
        match $s {
            CpuStorage::F32(v) => {
                let $x = slice(v, $l, $op)?;
                CpuStorage::F32($body)
            }
            CpuStorage::F64(v) => {
                let $x = slice(v, $l, $op)?;
                CpuStorage::F64($body)
            }
            _ => candle_core::bail!("{}: unsupported dtype", $op),
        }
    };
}

/// Runs `f` on the F32 or F64 slices of storages of equal dtype.
macro_rules! dispatch {
    ($op:expr, [$(($s:expr, $l:expr) => $x:ident),+], $body:expr) => {{
        #[allow(unused_parens)]
        match ($($s),+) {
            ($(CpuStorage::F32($x)),+) => {
                $(let $x = slice($x, $l, $op)?;)+
                CpuStorage::F32($body)
            }
            ($(CpuStorage::F64($x)),+) => {
                $(let $x = slice($x, $l, $op)?;)+
                CpuStorage::F64($body)
            }
            _ => candle_core::bail!("{}: unsupported or mixed dtypes", $op),
        }
    }};
}

mod linear;
mod rms_norm;
mod rotary;
pub use linear::linear;
pub use rms_norm::rms_norm;
pub use rotary::rotary;

// ---------------------------------------------------------------------------
// Masked, scaled softmax over the last dimension (attention).

struct MaskedSoftmax {
    scale: f64,
    /// Rows of `scores` per example (`heads * queries`).
    rows_per_example: usize,
    /// Mask rows per example: 1 (one row for every query) or `queries`.
    mask_rows: usize,
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "fute-masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let k = l1.dims()[l1.dims().len() - 1];
        let out = dispatch!(self.name(), [(s1, l1) => x, (s2, l2) => m], {
            kernels::masked_softmax(
                x,
                m,
                k,
                (self.rows_per_example, self.mask_rows),
                Real::from_f64(self.scale),
            )
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _scores: &Tensor,
        _mask: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad_res.contiguous()?;
        let d = res.apply_op2_no_bwd(&g, &SoftmaxBwd { scale: self.scale })?;
        Ok((Some(d), None))
    }
}

struct SoftmaxBwd {
    scale: f64,
}

impl CustomOp2 for SoftmaxBwd {
    fn name(&self) -> &'static str {
        "fute-softmax-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let k = l1.dims()[l1.dims().len() - 1];
        let out = dispatch!(self.name(), [(s1, l1) => y, (s2, l2) => g], {
            kernels::softmax_bwd(y, g, k, Real::from_f64(self.scale))
        });
        Ok((out, l1.shape().clone()))
    }
}

/// `softmax(scores · scale + mask, last dim)` for attention scores `[B, H, T, K]`
/// and an additive mask of either `B · K` elements (`[B, 1, 1, K]`: one row per
/// example, broadcast over heads and queries) or `B · T · K` elements
/// (`[B, 1, T, K]`: one row per query, broadcast over heads, as a decoder's
/// causal mask). Gradient flows to `scores` only (the mask is a constant, and
/// gets no gradient: candle would keep a `[B, H, T, K]` one for it until the
/// end of the backward pass).
///
/// Computes `z = s·scale + m` element by element exactly as
/// `(scores * scale).broadcast_add(mask)` does, then a max-shifted softmax;
/// only the output is kept for the backward pass (the composite form keeps
/// five `[B, H, T, K]` tensors).
pub fn masked_softmax(scores: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    let (b, h, t, k) = scores.dims4()?;
    let mask_rows = if mask.elem_count() == b * k {
        1
    } else if mask.elem_count() == b * t * k && mask.dims().get(2) == Some(&t) {
        t
    } else {
        return Err(crate::Error::Bug(format!(
            "attention mask has shape {:?}, expected [{b}, 1, 1, {k}] or [{b}, 1, {t}, {k}] for scores {:?}",
            mask.dims(),
            scores.dims()
        )));
    };
    if !fused(scores) || mask.dtype() != scores.dtype() {
        let z = (scores * scale)?.broadcast_add(mask)?;
        return Ok(candle_nn::ops::softmax(&z, D::Minus1)?);
    }
    let mask = mask.contiguous()?;
    let op = MaskedSoftmax {
        scale,
        rows_per_example: h * t,
        mask_rows,
    };
    Ok(scores.contiguous()?.apply_op2(&mask, op)?)
}

// ---------------------------------------------------------------------------
// Exact GELU.

struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "fute-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = dispatch1!(s, l, self.name(), |x| kernels::gelu(x));
        Ok((out, l.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let g = grad_res.contiguous()?;
        Ok(Some(arg.contiguous()?.apply_op2_no_bwd(&g, &GeluBwd)?))
    }
}

struct GeluBwd;

impl CustomOp2 for GeluBwd {
    fn name(&self) -> &'static str {
        "fute-gelu-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = dispatch!(self.name(), [(s1, l1) => x, (s2, l2) => g], kernels::gelu_bwd(x, g));
        Ok((out, l1.shape().clone()))
    }
}

/// Exact GELU, `0.5·x·(1 + erf(x/√2))`, computed per element as
/// `(x·0.5)·(erf(x·(1/√2)) + 1)` (the same rounding steps as the composite form),
/// with the exact derivative `½(1 + erf(x/√2)) + x·exp(−x²/2)/√(2π)` backward.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if !fused(x) {
        let e = (x * std::f64::consts::FRAC_1_SQRT_2)?.erf()?;
        return Ok((x * 0.5)?.mul(&(e + 1.0)?)?);
    }
    Ok(x.contiguous()?.apply_op1(Gelu)?)
}

// ---------------------------------------------------------------------------
// LayerNorm over the last dimension.

struct LayerNormOp {
    eps: f64,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "fute-layer-norm"
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
        let out = dispatch!(self.name(), [(s1, l1) => x, (s2, l2) => w, (s3, l3) => b], {
            kernels::layer_norm(x, w, b, n, Real::from_f64(self.eps))
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let n = w.elem_count();
        let total = x.elem_count();
        let g = grad_res.contiguous()?;
        // One pass: [dx (total) | dw (n) | db (n)].
        let all = x
            .contiguous()?
            .apply_op3_no_bwd(w, &g, &LayerNormBwd { eps: self.eps })?;
        let dx = all.narrow(0, 0, total)?.reshape(x.shape())?;
        let dw = all.narrow(0, total, n)?.reshape(w.shape())?;
        let db = all.narrow(0, total + n, n)?.reshape(w.shape())?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

struct LayerNormBwd {
    eps: f64,
}

impl CustomOp3 for LayerNormBwd {
    fn name(&self) -> &'static str {
        "fute-layer-norm-bwd"
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
            kernels::layer_norm_bwd(x, w, g, n, Real::from_f64(self.eps))
        });
        Ok((out, Shape::from(total + 2 * n)))
    }
}

/// `(x − mean) / √(var + eps) · weight + bias` over the last dimension, with the
/// biased variance (as PyTorch), forward and backward (x, weight, bias) in one
/// pass each.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let n = x.dim(D::Minus1)?;
    if !fused(x)
        || weight.dtype() != x.dtype()
        || bias.dtype() != x.dtype()
        || weight.dims() != [n]
        || bias.dims() != [n]
    {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
        return Ok(normed.broadcast_mul(weight)?.broadcast_add(bias)?);
    }
    Ok(x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        LayerNormOp { eps },
    )?)
}

// ---------------------------------------------------------------------------
// Embedding lookup.

struct EmbeddingOp {
    padding_idx: Option<u32>,
}

fn ids_slice<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [u32]> {
    match s {
        CpuStorage::U32(v) => slice(v, l, "fute-embedding"),
        _ => candle_core::bail!("fute-embedding: ids must be u32"),
    }
}

impl CustomOp2 for EmbeddingOp {
    fn name(&self) -> &'static str {
        "fute-embedding"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, dim) = l1.shape().dims2()?;
        let ids = ids_slice(s2, l2)?;
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= rows) {
            candle_core::bail!("fute-embedding: id {bad} out of range for {rows} rows");
        }
        let out = dispatch1!(s1, l1, self.name(), |w| kernels::gather(w, ids, dim));
        Ok((out, Shape::from((ids.len(), dim))))
    }

    fn bwd(
        &self,
        weight: &Tensor,
        ids: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let op = EmbeddingBwd {
            rows: weight.dim(0)?,
            padding_idx: self.padding_idx,
        };
        let g = grad_res.contiguous()?.apply_op2_no_bwd(ids, &op)?;
        Ok((Some(g), None))
    }
}

struct EmbeddingBwd {
    rows: usize,
    padding_idx: Option<u32>,
}

impl CustomOp2 for EmbeddingBwd {
    fn name(&self) -> &'static str {
        "fute-embedding-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, dim) = l1.shape().dims2()?;
        let ids = ids_slice(s2, l2)?;
        let out = dispatch1!(s1, l1, self.name(), |g| {
            kernels::scatter_add(g, ids, dim, self.rows, self.padding_idx)
        });
        Ok((out, Shape::from((self.rows, dim))))
    }
}

/// Rows of `weight` (`[rows, dim]`) for the u32 `ids` (any shape, flattened):
/// `[ids.len(), dim]`. Backward gives the dense `[rows, dim]` gradient directly
/// (each row the sum, in token order, of its tokens' gradients), with no
/// gradient for `padding_idx` (PyTorch `padding_idx`), in one pass.
pub fn embedding(weight: &Tensor, ids: &Tensor, padding_idx: Option<u32>) -> Result<Tensor> {
    let flat = ids.flatten_all()?.to_dtype(DType::U32)?;
    if !fused(weight) {
        let rows = weight.index_select(&flat, 0)?;
        return Ok(match padding_idx {
            Some(pad) if flat.to_vec1::<u32>()?.contains(&pad) => {
                let is_pad = flat.eq(pad)?.unsqueeze(1)?.broadcast_as(rows.shape())?;
                is_pad.where_cond(&rows.detach(), &rows)?
            }
            _ => rows,
        });
    }
    Ok(weight
        .contiguous()?
        .apply_op2(&flat.contiguous()?, EmbeddingOp { padding_idx })?)
}

#[cfg(test)]
mod tests;
