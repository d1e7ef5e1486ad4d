//! From a Gram matrix to two dimensions: PCA (classical scaling of the centred Gram
//! matrix) and t-SNE (the `bhtsne` crate, exact gradient, on cosine distances).
//!
//! Only the n×n Gram matrix of pairwise dot products is needed, which the store streams
//! from the vector files chunk by chunk: a map of 10⁷-float Fisher vectors never holds
//! more than a few chunks of them in memory.

use nalgebra::{DMatrix, SymmetricEigen};

/// Two principal components of n points, from their Gram matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// `coords[i]` = point i's scores on the first two principal components.
    pub coords: Vec<[f64; 2]>,
    /// Share of the total variance each of the two components explains (0..1).
    pub explained: [f64; 2],
}

/// PCA from the Gram matrix `g` (`g[i][j]` = ⟨xᵢ, xⱼ⟩) of n ≥ 1 points.
///
/// The double-centred matrix `J G J` (J = I − 11ᵀ/n) is the Gram matrix of the centred
/// points; its eigenvectors scaled by √λ are the points' principal-component scores,
/// exactly what PCA of the raw vectors gives (classical multidimensional scaling;
/// Gower 1966). Each component's sign is fixed so that its largest-magnitude score is
/// positive. Components with no variance (n ≤ 2, or all points on a line) get scores 0.
pub fn pca_from_gram(g: &[Vec<f64>]) -> Pca {
    let n = g.len();
    if n == 0 {
        return Pca {
            coords: Vec::new(),
            explained: [0.0, 0.0],
        };
    }
    let centred = double_centre(g);
    let m = DMatrix::from_fn(n, n, |i, j| centred[i][j]);
    let eig = SymmetricEigen::new(m);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let total: f64 = eig.eigenvalues.iter().map(|l| l.max(0.0)).sum();
    let mut coords = vec![[0.0; 2]; n];
    let mut explained = [0.0; 2];
    for (k, &e) in order.iter().take(2).enumerate() {
        let lambda = eig.eigenvalues[e];
        // Eigenvalues at rounding level (a rank-deficient Gram matrix) carry no variance.
        if lambda <= total * 1e-12 || lambda <= 0.0 {
            continue;
        }
        explained[k] = lambda / total;
        let v = eig.eigenvectors.column(e);
        let pivot = (0..n)
            .max_by(|&a, &b| v[a].abs().total_cmp(&v[b].abs()))
            .unwrap_or(0);
        let sign = if v[pivot] < 0.0 { -1.0 } else { 1.0 };
        for i in 0..n {
            coords[i][k] = sign * v[i] * lambda.sqrt();
        }
    }
    Pca { coords, explained }
}

/// `J G J`: the Gram matrix of the points after subtracting their mean.
pub fn double_centre(g: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = g.len();
    let nf = n as f64;
    let row: Vec<f64> = g.iter().map(|r| r.iter().sum::<f64>() / nf).collect();
    let grand = row.iter().sum::<f64>() / nf;
    (0..n)
        .map(|i| (0..n).map(|j| g[i][j] - row[i] - row[j] + grand).collect())
        .collect()
}

/// The n×n cosine matrix from a Gram matrix, optionally of the centred points (each
/// vector minus the mean of all n): task embeddings share a large common part (plain
/// cosines of Fisher vectors sit near 1), and centring shows what sets them apart.
/// A zero vector has cosine 0 with everything and 1 with itself.
pub fn cosine_matrix(g: &[Vec<f64>], centre: bool) -> Vec<Vec<f64>> {
    let g = if centre { double_centre(g) } else { g.to_vec() };
    let n = g.len();
    let norm: Vec<f64> = (0..n).map(|i| g[i][i].max(0.0).sqrt()).collect();
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    if i == j {
                        1.0
                    } else if norm[i] * norm[j] <= f64::EPSILON {
                        0.0
                    } else {
                        (g[i][j] / (norm[i] * norm[j])).clamp(-1.0, 1.0)
                    }
                })
                .collect()
        })
        .collect()
}

/// Settings of the t-SNE layout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TsneSettings {
    /// Upper bound on the perplexity; the one used is min(this, (n − 1)/3), the most
    /// `bhtsne` accepts for n points.
    pub max_perplexity: f64,
    /// Gradient-descent iterations.
    pub epochs: usize,
}

impl Default for TsneSettings {
    fn default() -> Self {
        TsneSettings {
            max_perplexity: 30.0,
            epochs: 1000,
        }
    }
}

/// The perplexity t-SNE uses for n points (`None`: too few points for t-SNE, n < 4).
pub fn tsne_perplexity(n: usize, settings: &TsneSettings) -> Option<f64> {
    (n >= 4).then(|| ((n - 1) as f64 / 3.0).min(settings.max_perplexity))
}

/// t-SNE (van der Maaten & Hinton 2008) of n points given their cosine matrix, by the
/// `bhtsne` crate's exact gradient. Input distances are squared Euclidean distances of
/// the unit-normalised vectors, 2(1 − cos). The start is the PCA layout `init`, scaled
/// to standard deviation 10⁻⁴ as scikit-learn's `init="pca"` does, which makes the
/// result reproducible (no random start). `None` when n < 4.
pub fn tsne(cos: &[Vec<f64>], init: &[[f64; 2]], settings: &TsneSettings) -> Option<Vec<[f64; 2]>> {
    let n = cos.len();
    let perplexity = tsne_perplexity(n, settings)?;
    let idx: Vec<usize> = (0..n).collect();
    let sd = {
        let vals: Vec<f64> = init.iter().map(|p| p[0]).collect();
        let mean = vals.iter().sum::<f64>() / n as f64;
        (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt()
    };
    let scale = if sd > 0.0 { 1e-4 / sd } else { 0.0 };
    let start: Vec<f64> = init
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            if scale > 0.0 {
                [p[0] * scale, p[1] * scale]
            } else {
                // All points at one place: a fixed, tiny spiral keeps the start deterministic.
                let a = i as f64;
                [1e-4 * a.cos(), 1e-4 * a.sin()]
            }
        })
        .collect();
    let mut t: bhtsne::tSNE<f64, usize> = bhtsne::tSNE::new(&idx);
    t.perplexity(perplexity)
        .epochs(settings.epochs)
        .initial_embedding(start)
        .exact(|&a, &b| 2.0 * (1.0 - cos[a][b]).max(0.0));
    let y = t.embedding();
    Some(y.chunks(2).map(|c| [c[0], c[1]]).collect())
}

/// For each point, the other points by decreasing cosine: `(index, cosine)`, at most `k`.
pub fn nearest(cos: &[Vec<f64>], k: usize) -> Vec<Vec<(usize, f64)>> {
    (0..cos.len())
        .map(|i| {
            let mut others: Vec<(usize, f64)> = (0..cos.len())
                .filter(|&j| j != i)
                .map(|j| (j, cos[i][j]))
                .collect();
            others.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            others.truncate(k);
            others
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pca_of_points_on_a_line_has_one_component() {
        // x = t·(1, 2), t = 0..4: all variance on the first component.
        let pts: Vec<[f64; 2]> = (0..4).map(|t| [t as f64, 2.0 * t as f64]).collect();
        let g: Vec<Vec<f64>> = pts
            .iter()
            .map(|a| pts.iter().map(|b| a[0] * b[0] + a[1] * b[1]).collect())
            .collect();
        let p = pca_from_gram(&g);
        assert!((p.explained[0] - 1.0).abs() < 1e-12, "{:?}", p.explained);
        assert_eq!(p.explained[1], 0.0);
        // Scores are distances along the line from the mean (1.5·√5 at the ends).
        let want = 1.5 * 5f64.sqrt();
        assert!((p.coords[0][0].abs() - want).abs() < 1e-9, "{:?}", p.coords);
        assert!(p.coords.iter().all(|c| c[1] == 0.0));
    }

    #[test]
    fn tsne_needs_four_points_and_separates_two_groups() {
        assert!(tsne(
            &vec![vec![1.0; 3]; 3],
            &[[0.0; 2]; 3],
            &TsneSettings::default()
        )
        .is_none());
        // Two tight groups of three: within-group cosine 0.95, across −0.5.
        let group = |i: usize| i / 3;
        let cos: Vec<Vec<f64>> = (0..6)
            .map(|i| {
                (0..6)
                    .map(|j| match (i == j, group(i) == group(j)) {
                        (true, _) => 1.0,
                        (false, true) => 0.95,
                        (false, false) => -0.5,
                    })
                    .collect()
            })
            .collect();
        let init: Vec<[f64; 2]> = (0..6).map(|i| [i as f64, (i * i) as f64]).collect();
        let y = tsne(&cos, &init, &TsneSettings::default()).unwrap();
        let d =
            |a: usize, b: usize| ((y[a][0] - y[b][0]).powi(2) + (y[a][1] - y[b][1]).powi(2)).sqrt();
        let within = (d(0, 1) + d(1, 2) + d(3, 4) + d(4, 5)) / 4.0;
        let across = (d(0, 3) + d(1, 4) + d(2, 5)) / 3.0;
        assert!(across > 3.0 * within, "within {within}, across {across}");
    }

    #[test]
    fn nearest_orders_by_cosine_and_skips_self() {
        let cos = vec![
            vec![1.0, 0.2, 0.9],
            vec![0.2, 1.0, -0.1],
            vec![0.9, -0.1, 1.0],
        ];
        let nn = nearest(&cos, 5);
        assert_eq!(nn[0], vec![(2, 0.9), (1, 0.2)]);
        assert_eq!(nn[1], vec![(0, 0.2), (2, -0.1)]);
    }
}
