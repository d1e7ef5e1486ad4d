//! LogME (You, Liu, Wang & Long, ICML 2021, "LogME: Practical Assessment of
//! Pre-trained Models for Transfer Learning", Algorithm 1): how well a model's
//! features predict a target's labels, as the log marginal likelihood (evidence)
//! of Bayesian linear regression on the features, maximised over the prior
//! precision α and the noise precision β, divided by the number of examples.
//! Higher is better; it needs no training, only one forward pass.
//!
//! For features F (n × D) and one target column y (n):
//!
//! ```text
//! A  = α I + β FᵀF,   m = β A⁻¹ Fᵀ y
//! L(α, β) = n/2 log β + D/2 log α − n/2 log 2π − β/2 ‖F m − y‖² − α/2 ‖m‖² − 1/2 log |A|
//! fixed point:  γ = Σ_i β σ_i / (α + β σ_i),  α ← γ / ‖m‖²,  β ← (n − γ) / ‖F m − y‖²
//! ```
//!
//! σ_i are the eigenvalues of FᵀF. With F = U S Vᵀ and c = Uᵀ y every quantity is
//! a sum over the eigenvalues, so one eigendecomposition (of the smaller of FᵀF
//! and FFᵀ) serves every iteration and every label column. Classification: y is
//! the one-hot column of each class and LogME the mean over classes; regression:
//! y is the value.
//!
//! Iteration starts at α = β = 1 and stops when the evidence changes by less than
//! 10⁻⁹ relatively (at most 1000 iterations). Stopping on the evidence rather than
//! on α/β matters when n ≤ D: the features can then fit the labels exactly, β
//! grows without bound, and the evidence converges to its supremum (a finite
//! value: the n/2·log β terms cancel), which is what LogME reports.

use std::f64::consts::PI;

const MAX_ITERATIONS: usize = 1000;
const TOLERANCE: f64 = 1e-9;

/// The labels LogME scores features against.
#[derive(Debug, Clone, Copy)]
pub enum LogmeLabels<'a> {
    /// Class indices in `0..num_classes`; one one-hot column per class.
    Classes {
        /// One class index per example.
        labels: &'a [usize],
        /// Number of classes.
        num_classes: usize,
    },
    /// Real values (regression); one column.
    Values(&'a [f64]),
}

/// LogME of `features` (row-major, `n × dim`) for `labels` (length `n`): the
/// maximised evidence per example (nats). Panics when the sizes disagree or
/// `n == 0` (callers check their data first).
pub fn logme(features: &[f64], dim: usize, labels: LogmeLabels) -> f64 {
    assert!(dim > 0, "features need at least one dimension");
    assert_eq!(features.len() % dim, 0, "features are not n × dim");
    let n = features.len() / dim;
    assert!(n > 0, "no examples");
    let columns: Vec<Vec<f64>> = match labels {
        LogmeLabels::Classes {
            labels,
            num_classes,
        } => {
            assert_eq!(labels.len(), n, "one label per example");
            (0..num_classes)
                .map(|k| {
                    labels
                        .iter()
                        .map(|&l| if l == k { 1.0 } else { 0.0 })
                        .collect()
                })
                .collect()
        }
        LogmeLabels::Values(v) => {
            assert_eq!(v.len(), n, "one value per example");
            vec![v.to_vec()]
        }
    };
    let spectrum = Spectrum::new(features, n, dim);
    let total: f64 = columns.iter().map(|y| spectrum.evidence(y)).sum();
    total / columns.len() as f64 / n as f64
}

/// The eigen-structure of F shared by every label column.
struct Spectrum<'a> {
    features: &'a [f64],
    n: usize,
    dim: usize,
    /// Eigenvalues σ_i of FᵀF that are not zero (and the zero ones of FFᵀ when n ≤ D).
    sigma: Vec<f64>,
    /// Projection of y onto the i-th left singular vector is `c_i = basis_i · proj(y)`.
    basis: Vec<Vec<f64>>,
    /// Left vectors directly (n ≤ D: eigenvectors of FFᵀ) or right vectors (D < n).
    left: bool,
}

impl<'a> Spectrum<'a> {
    fn new(features: &'a [f64], n: usize, dim: usize) -> Self {
        let left = n <= dim;
        let k = if left { n } else { dim };
        // Gram matrix of the smaller side.
        let mut g = vec![0.0; k * k];
        if left {
            for i in 0..n {
                for j in i..n {
                    let v: f64 = (0..dim)
                        .map(|d| features[i * dim + d] * features[j * dim + d])
                        .sum();
                    g[i * k + j] = v;
                    g[j * k + i] = v;
                }
            }
        } else {
            for row in features.chunks_exact(dim) {
                for a in 0..dim {
                    for b in a..dim {
                        g[a * k + b] += row[a] * row[b];
                    }
                }
            }
            for a in 0..dim {
                for b in 0..a {
                    g[a * k + b] = g[b * k + a];
                }
            }
        }
        let (vals, vecs) = symmetric_eigen(g, k);
        let top = vals.iter().cloned().fold(0.0, f64::max);
        let mut sigma = Vec::new();
        let mut basis = Vec::new();
        for (v, e) in vals.into_iter().zip(vecs) {
            let v = v.max(0.0);
            // Right vectors of a zero singular value carry no part of y.
            if !left && v <= top * 1e-12 {
                continue;
            }
            sigma.push(v);
            basis.push(e);
        }
        Self {
            features,
            n,
            dim,
            sigma,
            basis,
            left,
        }
    }

    /// c_i = u_iᵀ y for every kept eigenpair.
    fn projections(&self, y: &[f64]) -> Vec<f64> {
        if self.left {
            return self
                .basis
                .iter()
                .map(|u| u.iter().zip(y).map(|(a, b)| a * b).sum())
                .collect();
        }
        // u_i = F v_i / s_i, so u_iᵀ y = v_iᵀ (Fᵀ y) / s_i.
        let mut fty = vec![0.0; self.dim];
        for (row, yi) in self.features.chunks_exact(self.dim).zip(y) {
            for (acc, f) in fty.iter_mut().zip(row) {
                *acc += f * yi;
            }
        }
        self.basis
            .iter()
            .zip(&self.sigma)
            .map(|(v, s)| v.iter().zip(&fty).map(|(a, b)| a * b).sum::<f64>() / s.sqrt())
            .collect()
    }

    /// The maximised log evidence of one column (not yet divided by n).
    fn evidence(&self, y: &[f64]) -> f64 {
        let n = self.n as f64;
        let d = self.dim as f64;
        let c = self.projections(y);
        let c2: Vec<f64> = c.iter().map(|x| x * x).collect();
        let y2: f64 = y.iter().map(|v| v * v).sum();
        // Part of ‖y‖² outside the span of the kept left vectors (exactly 0 when n ≤ D).
        let rest = if self.left {
            0.0
        } else {
            (y2 - c2.iter().sum::<f64>()).max(0.0)
        };
        let terms = |alpha: f64, beta: f64| {
            let mut gamma = 0.0;
            let mut mm = 0.0;
            let mut res = rest;
            for (s, cc) in self.sigma.iter().zip(&c2) {
                let den = alpha + beta * s;
                gamma += beta * s / den;
                mm += beta * beta * s * cc / (den * den);
                res += (alpha / den).powi(2) * cc;
            }
            (gamma, mm, res)
        };
        let zero_dims = d - self.sigma.len() as f64;
        let log_evidence = |alpha: f64, beta: f64, mm: f64, res: f64| {
            let logdet = self
                .sigma
                .iter()
                .map(|s| (alpha + beta * s).ln())
                .sum::<f64>()
                + zero_dims * alpha.ln();
            n / 2.0 * beta.ln() + d / 2.0 * alpha.ln()
                - n / 2.0 * (2.0 * PI).ln()
                - beta / 2.0 * res
                - alpha / 2.0 * mm
                - logdet / 2.0
        };
        let (mut alpha, mut beta) = (1.0f64, 1.0f64);
        let mut best = f64::NEG_INFINITY;
        for _ in 0..MAX_ITERATIONS {
            let (gamma, mm, res) = terms(alpha, beta);
            let l = log_evidence(alpha, beta, mm, res);
            let converged = (l - best).abs() <= TOLERANCE * l.abs().max(1.0);
            best = l;
            if converged {
                break;
            }
            let (new_alpha, new_beta) = (gamma / mm, (n - gamma) / res);
            // When the features interpolate the labels (n ≤ D) β grows without
            // bound while the evidence converges; stop before it overflows.
            if !(new_alpha.is_finite() && new_beta.is_finite() && new_alpha > 0.0 && new_beta > 0.0)
            {
                break;
            }
            alpha = new_alpha;
            beta = new_beta;
        }
        best
    }
}

/// Eigenvalues and eigenvectors of a symmetric `k × k` matrix (row-major) by
/// cyclic Jacobi rotations; eigenvector i is returned as `vecs[i]`.
fn symmetric_eigen(mut a: Vec<f64>, k: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let mut v = vec![0.0; k * k];
    for i in 0..k {
        v[i * k + i] = 1.0;
    }
    let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
    for _sweep in 0..100 {
        let off: f64 = (0..k)
            .flat_map(|i| (0..k).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * k + j] * a[i * k + j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-15 * scale {
            break;
        }
        for p in 0..k {
            for q in p + 1..k {
                let apq = a[p * k + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let app = a[p * k + p];
                let aqq = a[q * k + q];
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let cs = 1.0 / (t * t + 1.0).sqrt();
                let sn = t * cs;
                // A ← Jᵀ A J on rows/columns p and q.
                for r in 0..k {
                    let arp = a[r * k + p];
                    let arq = a[r * k + q];
                    a[r * k + p] = cs * arp - sn * arq;
                    a[r * k + q] = sn * arp + cs * arq;
                }
                for r in 0..k {
                    let apr = a[p * k + r];
                    let aqr = a[q * k + r];
                    a[p * k + r] = cs * apr - sn * aqr;
                    a[q * k + r] = sn * apr + cs * aqr;
                }
                for r in 0..k {
                    let vrp = v[r * k + p];
                    let vrq = v[r * k + q];
                    v[r * k + p] = cs * vrp - sn * vrq;
                    v[r * k + q] = sn * vrp + cs * vrq;
                }
            }
        }
    }
    let vals = (0..k).map(|i| a[i * k + i]).collect();
    let vecs = (0..k)
        .map(|i| (0..k).map(|r| v[r * k + i]).collect())
        .collect();
    (vals, vecs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_reconstructs_a_symmetric_matrix() {
        let a = vec![4.0, 1.0, 2.0, 1.0, 3.0, 0.5, 2.0, 0.5, 5.0];
        let (vals, vecs) = symmetric_eigen(a.clone(), 3);
        for i in 0..3 {
            for j in 0..3 {
                let r: f64 = (0..3).map(|m| vals[m] * vecs[m][i] * vecs[m][j]).sum();
                assert!((r - a[i * 3 + j]).abs() < 1e-12, "({i},{j}) {r}");
            }
        }
        assert!((vals.iter().sum::<f64>() - 12.0).abs() < 1e-12);
    }

    #[test]
    fn features_that_determine_the_labels_score_higher() {
        // Feature 0 is the label (plus a constant column); the other set is noise.
        let n = 40;
        let labels: Vec<usize> = (0..n).map(|i| i % 2).collect();
        let mut good = Vec::new();
        let mut noise = Vec::new();
        let mut x = 0.37f64;
        for &l in &labels {
            x = (x * 9301.0 + 0.49297).fract();
            good.extend([l as f64 + 0.01 * x, 1.0]);
            noise.extend([x, 1.0]);
        }
        let lab = LogmeLabels::Classes {
            labels: &labels,
            num_classes: 2,
        };
        assert!(logme(&good, 2, lab) > logme(&noise, 2, lab) + 0.5);
    }
}
