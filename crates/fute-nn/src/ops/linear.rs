//! `y = x Wᵀ + b` as one op whose backward computes only the gradients the
//! graph asks for.
//!
//! candle's `Matmul` backward always forms both operand gradients, and its
//! broadcast bias add always sums the output gradient once more: for a frozen
//! weight (PEFT backbones, parameters outside a Fisher scope) the `[out, in]`
//! weight-gradient matmul is computed and thrown away, about a third of a
//! backward pass. This op asks each input whether it tracks gradients
//! ([`Tensor::track_op`]) and computes `dx = g W`, `dW = gᵀ x`, `db = Σ_rows g`
//! only for those that do.
//!
//! The forward pass calls the same `gemm` routine with the same strides as
//! candle's CPU matmul of `x` by `Wᵀ`, then adds the bias, so outputs are
//! bit-identical to the composite `x.matmul(&w.t())?.broadcast_add(&b)`.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::kernels::Real;
use super::{fused, slice};
use crate::Result;

struct LinearOp;

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "fute-linear"
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
        let (m, k) = l1.shape().dims2()?;
        let (n, k_w) = l2.shape().dims2()?;
        if k != k_w || l3.shape().elem_count() != n {
            candle_core::bail!(
                "fute-linear: input {:?}, weight {:?}, bias {:?} do not fit",
                l1.dims(),
                l2.dims(),
                l3.dims()
            );
        }
        let out = dispatch!(self.name(), [(s1, l1) => x, (s2, l2) => w, (s3, l3) => b], {
            gemm_bias(x, w, b, m, n, k)
        });
        Ok((out, Shape::from((m, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = grad_res.contiguous()?;
        // The operands are detached: a product with a tracked operand would
        // record its op, and the gradient store would then keep `g` (and the
        // chain behind it) alive through every weight's gradient until the
        // backward pass ends (~1 GB per worker for a SmolLM2 Fisher batch).
        let dx = if x.track_op() {
            Some(g.matmul(&w.detach())?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(g.t()?.matmul(&x.detach())?)
        } else {
            None
        };
        let db = if b.track_op() { Some(g.sum(0)?) } else { None };
        Ok((dx, dw, db))
    }
}

/// `x [m, k] · w[n, k]ᵀ + b`, row-major, with the gemm call candle makes for
/// `x.matmul(&w.t())` (same strides and parallelism, so the same rounding).
fn gemm_bias<T: Real + 'static>(x: &[T], w: &[T], b: &[T], m: usize, n: usize, k: usize) -> Vec<T> {
    let mut out = vec![T::zero(); m * n];
    let threads = candle_core::utils::get_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    if m > 0 && n > 0 {
        // SAFETY: `out` is m×n (row stride n), `x` m×k (row stride k) and `w` n×k
        // read as its transpose (row stride 1, column stride k); the slices hold
        // exactly these elements (contiguous layouts checked by `slice`).
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                false,
                x.as_ptr(),
                1,
                k as isize,
                w.as_ptr(),
                k as isize,
                1,
                T::zero(),
                T::from_f64(1.0),
                false,
                false,
                false,
                parallelism,
            );
        }
    }
    for row in out.chunks_mut(n.max(1)) {
        for (o, &bias) in row.iter_mut().zip(b) {
            *o = *o + bias;
        }
    }
    out
}

/// `x Wᵀ + b` over the last dimension of `x` (any rank ≥ 1) for `weight`
/// `[out, in]` and `bias` `[out]`. Gradients flow to exactly those of `x`,
/// `weight` and `bias` that track them (a detached weight costs no
/// weight-gradient matmul). Other devices and dtypes use the composite ops.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let in_dim = *dims.last().ok_or_else(|| {
        crate::Error::Bug("linear: input must have at least one dimension".into())
    })?;
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let (out_dim, w_in) = weight.dims2()?;
    if w_in != in_dim || bias.dims() != [out_dim] {
        return Err(crate::Error::Bug(format!(
            "linear: input {:?}, weight {:?}, bias {:?} do not fit",
            dims,
            weight.dims(),
            bias.dims()
        )));
    }
    let x2 = x.reshape((rows, in_dim))?;
    let y = if fused(x) && weight.dtype() == x.dtype() && bias.dtype() == x.dtype() {
        x2.contiguous()?
            .apply_op3(&weight.contiguous()?, &bias.contiguous()?, LinearOp)?
    } else {
        x2.matmul(&weight.t()?)?.broadcast_add(bias)?
    };
    let mut out_dims = dims;
    *out_dims.last_mut().expect("rank >= 1") = out_dim;
    Ok(y.reshape(out_dims)?)
}
