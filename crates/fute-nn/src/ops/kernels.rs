//! Slice kernels of the fused ops, generic over f32 and f64.

use std::ops::{Add, Div, Mul, Neg, Sub};

use rayon::prelude::*;

/// Rows per parallel block (fixed, so results do not depend on the thread count).
const ROW_BLOCK: usize = 32;
/// Elements per parallel block of purely element-wise kernels.
const ELEM_BLOCK: usize = 8192;

/// The float operations the kernels need.
pub(crate) trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    fn from_f64(v: f64) -> Self;
    fn zero() -> Self;
    fn exp(self) -> Self;
    fn sqrt(self) -> Self;
    /// The same `erf` candle uses for its `erf` op.
    fn erf(self) -> Self;
}

impl Real for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn zero() -> Self {
        0.0
    }
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn erf(self) -> Self {
        candle_core::cpu::erf::erf_f32(self)
    }
}

impl Real for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn zero() -> Self {
        0.0
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn erf(self) -> Self {
        candle_core::cpu::erf::erf_f64(self)
    }
}

fn sum<T: Real>(xs: impl Iterator<Item = T>) -> T {
    xs.fold(T::zero(), |a, b| a + b)
}

/// Row-wise `softmax(x·scale + m)` over rows of `k`; with `(per_example,
/// mask_rows)`, example `e` (rows `e·per_example..`) reads mask rows
/// `e·mask_rows..`, row `r` of it mask row `r % mask_rows` (1: one mask row
/// for all its rows; the number of queries: one per query, repeated per head).
pub(crate) fn masked_softmax<T: Real>(
    x: &[T],
    m: &[T],
    k: usize,
    (per_example, mask_rows): (usize, usize),
    scale: T,
) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(k * ROW_BLOCK)
        .zip(x.par_chunks(k * ROW_BLOCK))
        .enumerate()
        .for_each(|(block, (o, xs))| {
            for (r, (o, xs)) in o.chunks_mut(k).zip(xs.chunks(k)).enumerate() {
                let row = block * ROW_BLOCK + r;
                let mask_row = (row / per_example) * mask_rows + row % mask_rows;
                let mask = &m[mask_row * k..][..k];
                let mut max = xs[0] * scale + mask[0];
                for ((o, &x), &mk) in o.iter_mut().zip(xs).zip(mask) {
                    let z = x * scale + mk;
                    if z > max {
                        max = z;
                    }
                    *o = z;
                }
                for o in o.iter_mut() {
                    *o = (*o - max).exp();
                }
                let s = sum(o.iter().copied());
                for o in o.iter_mut() {
                    *o = *o / s;
                }
            }
        });
    out
}

/// Row-wise softmax backward: `scale · y ⊙ (g − Σ g⊙y)`.
pub(crate) fn softmax_bwd<T: Real>(y: &[T], g: &[T], k: usize, scale: T) -> Vec<T> {
    let mut out = vec![T::zero(); y.len()];
    out.par_chunks_mut(k * ROW_BLOCK)
        .zip(y.par_chunks(k * ROW_BLOCK))
        .zip(g.par_chunks(k * ROW_BLOCK))
        .for_each(|((o, ys), gs)| {
            for ((o, y), g) in o.chunks_mut(k).zip(ys.chunks(k)).zip(gs.chunks(k)) {
                let dot = sum(y.iter().zip(g).map(|(&y, &g)| y * g));
                for ((o, &y), &g) in o.iter_mut().zip(y).zip(g) {
                    *o = y * (g - dot) * scale;
                }
            }
        });
    out
}

/// `(x·0.5)·(erf(x·(1/√2)) + 1)`.
pub(crate) fn gelu<T: Real>(x: &[T]) -> Vec<T> {
    let half = T::from_f64(0.5);
    let one = T::from_f64(1.0);
    let c = T::from_f64(std::f64::consts::FRAC_1_SQRT_2);
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(ELEM_BLOCK)
        .zip(x.par_chunks(ELEM_BLOCK))
        .for_each(|(o, xs)| {
            for (o, &x) in o.iter_mut().zip(xs) {
                *o = (x * half) * ((x * c).erf() + one);
            }
        });
    out
}

/// `g · (½(1 + erf(x/√2)) + x·exp(−x²/2)/√(2π))`.
pub(crate) fn gelu_bwd<T: Real>(x: &[T], g: &[T]) -> Vec<T> {
    let half = T::from_f64(0.5);
    let one = T::from_f64(1.0);
    let c = T::from_f64(std::f64::consts::FRAC_1_SQRT_2);
    let pdf = T::from_f64(1.0 / (2.0 * std::f64::consts::PI).sqrt());
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(ELEM_BLOCK)
        .zip(x.par_chunks(ELEM_BLOCK))
        .zip(g.par_chunks(ELEM_BLOCK))
        .for_each(|((o, xs), gs)| {
            for ((o, &x), &g) in o.iter_mut().zip(xs).zip(gs) {
                let cdf = half * (one + (x * c).erf());
                let dens = (-(half * x * x)).exp() * pdf;
                *o = g * (cdf + x * dens);
            }
        });
    out
}

/// Mean and `√(var + eps)` of one row (two passes, biased variance).
fn moments<T: Real>(x: &[T], eps: T) -> (T, T) {
    let n = T::from_f64(x.len() as f64);
    let mean = sum(x.iter().copied()) / n;
    let var = sum(x.iter().map(|&v| (v - mean) * (v - mean))) / n;
    (mean, (var + eps).sqrt())
}

/// Row-wise `(x − mean)/√(var + eps) · w + b`, rows of length `n`.
pub(crate) fn layer_norm<T: Real>(x: &[T], w: &[T], b: &[T], n: usize, eps: T) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(n * ROW_BLOCK)
        .zip(x.par_chunks(n * ROW_BLOCK))
        .for_each(|(o, xs)| {
            for (o, x) in o.chunks_mut(n).zip(xs.chunks(n)) {
                let (mean, d) = moments(x, eps);
                for (((o, &x), &w), &b) in o.iter_mut().zip(x).zip(w).zip(b) {
                    *o = (x - mean) / d * w + b;
                }
            }
        });
    out
}

/// LayerNorm backward: `[dx | dw | db]` for input `x`, weight `w`, output gradient `g`.
///
/// With `x̂ = (x − mean)/d`, `d = √(var + eps)` and `h = g ⊙ w`:
/// `dx = (h − mean(h) − x̂ · mean(h ⊙ x̂)) / d`, `dw = Σ_rows g ⊙ x̂`, `db = Σ_rows g`.
pub(crate) fn layer_norm_bwd<T: Real>(x: &[T], w: &[T], g: &[T], n: usize, eps: T) -> Vec<T> {
    let total = x.len();
    let mut out = vec![T::zero(); total + 2 * n];
    let (dx, tail) = out.split_at_mut(total);
    let nf = T::from_f64(n as f64);
    let partials: Vec<Vec<T>> = dx
        .par_chunks_mut(n * ROW_BLOCK)
        .zip(x.par_chunks(n * ROW_BLOCK))
        .zip(g.par_chunks(n * ROW_BLOCK))
        .map(|((dxs, xs), gs)| {
            // [dw | db] of this block.
            let mut part = vec![T::zero(); 2 * n];
            let mut xhat = vec![T::zero(); n];
            for ((dx, x), g) in dxs.chunks_mut(n).zip(xs.chunks(n)).zip(gs.chunks(n)) {
                let (mean, d) = moments(x, eps);
                let (mut s1, mut s2) = (T::zero(), T::zero());
                for (j, (&xv, &gv)) in x.iter().zip(g).enumerate() {
                    let xh = (xv - mean) / d;
                    xhat[j] = xh;
                    let h = gv * w[j];
                    s1 = s1 + h;
                    s2 = s2 + h * xh;
                    part[j] = part[j] + gv * xh;
                    part[n + j] = part[n + j] + gv;
                }
                let (m1, m2) = (s1 / nf, s2 / nf);
                for (j, (dx, &gv)) in dx.iter_mut().zip(g).enumerate() {
                    *dx = (gv * w[j] - m1 - xhat[j] * m2) / d;
                }
            }
            part
        })
        .collect();
    for part in partials {
        for (t, p) in tail.iter_mut().zip(part) {
            *t = *t + p;
        }
    }
    out
}

/// Rows `ids` of the row-major table `w` (rows of length `dim`).
pub(crate) fn gather<T: Real>(w: &[T], ids: &[u32], dim: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(ids.len() * dim);
    for &i in ids {
        out.extend_from_slice(&w[i as usize * dim..][..dim]);
    }
    out
}

/// Dense `[rows, dim]` sum of the rows of `g` by id, in order, skipping `skip`.
pub(crate) fn scatter_add<T: Real>(
    g: &[T],
    ids: &[u32],
    dim: usize,
    rows: usize,
    skip: Option<u32>,
) -> Vec<T> {
    let mut out = vec![T::zero(); rows * dim];
    for (&i, gr) in ids.iter().zip(g.chunks(dim)) {
        if Some(i) == skip {
            continue;
        }
        for (o, &v) in out[i as usize * dim..][..dim].iter_mut().zip(gr) {
            *o = *o + v;
        }
    }
    out
}

/// Rotary embedding of rows of `d` (`d/2` pairs `(x[i], x[i + d/2])`), row `r`
/// at position `r % positions` with table rows `cos`, `sin` of `d` values:
/// `x·cos + rotate_half(x)·sin`, `rotate_half(x) = [−x₂, x₁]`. With
/// `transpose` it applies the transposed map (the backward pass):
/// `g·cos + [s₂·g₂, −s₁·g₁]`.
pub(crate) fn rotary<T: Real>(
    x: &[T],
    cos: &[T],
    sin: &[T],
    (d, positions): (usize, usize),
    transpose: bool,
) -> Vec<T> {
    let half = d / 2;
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(d * ROW_BLOCK)
        .zip(x.par_chunks(d * ROW_BLOCK))
        .enumerate()
        .for_each(|(block, (o, xs))| {
            for (r, (o, xs)) in o.chunks_mut(d).zip(xs.chunks(d)).enumerate() {
                let pos = (block * ROW_BLOCK + r) % positions;
                let (c, s) = (&cos[pos * d..][..d], &sin[pos * d..][..d]);
                let (o1, o2) = o.split_at_mut(half);
                for i in 0..half {
                    let (x1, x2) = (xs[i], xs[i + half]);
                    if transpose {
                        o1[i] = x1 * c[i] + x2 * s[i + half];
                        o2[i] = x2 * c[i + half] + (-x1) * s[i];
                    } else {
                        o1[i] = x1 * c[i] + (-x2) * s[i];
                        o2[i] = x2 * c[i + half] + x1 * s[i + half];
                    }
                }
            }
        });
    out
}

/// `1/√(mean(x²) + eps)` of one row, in the composite form's order.
fn inv_rms<T: Real>(x: &[T], eps: T) -> T {
    let ms = sum(x.iter().map(|&v| v * v)) / T::from_f64(x.len() as f64);
    T::from_f64(1.0) / (ms + eps).sqrt()
}

/// Row-wise RMSNorm `(x · r) · w`, `r = 1/√(mean(x²) + eps)`, rows of length `n`.
pub(crate) fn rms_norm<T: Real>(x: &[T], w: &[T], n: usize, eps: T) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(n * ROW_BLOCK)
        .zip(x.par_chunks(n * ROW_BLOCK))
        .for_each(|(o, xs)| {
            for (o, x) in o.chunks_mut(n).zip(xs.chunks(n)) {
                let r = inv_rms(x, eps);
                for ((o, &x), &w) in o.iter_mut().zip(x).zip(w) {
                    *o = x * r * w;
                }
            }
        });
    out
}

/// RMSNorm backward: `[dx | dw]` for input `x`, weight `w`, output gradient `g`.
///
/// With `x̂ = x · r` and `h = g ⊙ w`: `dx = r · (h − x̂ · mean(h ⊙ x̂))`,
/// `dw = Σ_rows g ⊙ x̂`.
pub(crate) fn rms_norm_bwd<T: Real>(x: &[T], w: &[T], g: &[T], n: usize, eps: T) -> Vec<T> {
    let total = x.len();
    let mut out = vec![T::zero(); total + n];
    let (dx, tail) = out.split_at_mut(total);
    let nf = T::from_f64(n as f64);
    let partials: Vec<Vec<T>> = dx
        .par_chunks_mut(n * ROW_BLOCK)
        .zip(x.par_chunks(n * ROW_BLOCK))
        .zip(g.par_chunks(n * ROW_BLOCK))
        .map(|((dxs, xs), gs)| {
            let mut part = vec![T::zero(); n];
            for ((dx, x), g) in dxs.chunks_mut(n).zip(xs.chunks(n)).zip(gs.chunks(n)) {
                let r = inv_rms(x, eps);
                let mut s = T::zero();
                for (j, (&xv, &gv)) in x.iter().zip(g).enumerate() {
                    let xh = xv * r;
                    s = s + gv * w[j] * xh;
                    part[j] = part[j] + gv * xh;
                }
                let m = s / nf;
                for (j, ((dx, &xv), &gv)) in dx.iter_mut().zip(x).zip(g).enumerate() {
                    *dx = r * (gv * w[j] - xv * r * m);
                }
            }
            part
        })
        .collect();
    for part in partials {
        for (t, p) in tail.iter_mut().zip(part) {
            *t = *t + p;
        }
    }
    out
}
