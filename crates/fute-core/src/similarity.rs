//! Similarity of embeddings and rankings of candidates.
//!
//! Everything is derived from Gram matrices (all pairwise dot products), which
//! are computed by streaming the vector files in aligned chunks: memory stays at
//! a few chunks whatever the dimension. Cosine, cosine after centring on the
//! candidates' mean (the references' cosines sit near 1, centring spreads them),
//! and per-component scores for reciprocal rank fusion all follow from it.

use crate::embedding::vectors::{Component, VectorFile};
use crate::{Error, Result};

/// Pairwise dot products of n vectors, in total and per component.
#[derive(Debug, Clone, PartialEq)]
pub struct Gram {
    /// Component names, in storage order.
    pub components: Vec<String>,
    /// `per_component[c][i][j]` = dot product of vectors i and j restricted to component c.
    pub per_component: Vec<Vec<Vec<f64>>>,
}

impl Gram {
    /// The Gram matrix of whole vectors (sum over components).
    pub fn total(&self) -> Vec<Vec<f64>> {
        let n = self.per_component.first().map_or(0, Vec::len);
        let mut t = vec![vec![0.0; n]; n];
        for c in &self.per_component {
            for i in 0..n {
                for j in 0..n {
                    t[i][j] += c[i][j];
                }
            }
        }
        t
    }

    /// Gram matrix of plain in-memory vectors (one component named `all`).
    pub fn of_vectors(v: &[Vec<f32>]) -> Gram {
        let n = v.len();
        let mut g = vec![vec![0.0; n]; n];
        for i in 0..n {
            for j in i..n {
                let d = dot(&v[i], &v[j]);
                g[i][j] = d;
                g[j][i] = d;
            }
        }
        Gram {
            components: vec!["all".into()],
            per_component: vec![g],
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    // f64 products and sums: centring subtracts large, nearly equal Gram entries,
    // so f32 accumulation would lose the digits that matter.
    a.iter()
        .zip(b)
        .map(|(p, q)| f64::from(*p) * f64::from(*q))
        .sum()
}

/// Streams `files` (same component layout) in lockstep and returns their Gram matrices.
pub fn gram(files: &[VectorFile]) -> Result<Gram> {
    const CHUNK: usize = 1 << 16;
    let Some(first) = files.first() else {
        return Err(Error::Invalid("nothing to compare".into()));
    };
    let layout = first.components();
    for f in &files[1..] {
        let other = f.components();
        if other != layout {
            return Err(Error::Invalid(layout_mismatch(&layout, &other)));
        }
    }
    let n = files.len();
    let mut per = vec![vec![vec![0.0; n]; n]; layout.len()];
    let mut readers = files
        .iter()
        .map(|f| f.reader(CHUNK))
        .collect::<Result<Vec<_>>>()?;
    let mut bufs: Vec<Vec<f32>> = vec![Vec::new(); n];
    loop {
        let mut comp = None;
        for (r, buf) in readers.iter_mut().zip(bufs.iter_mut()) {
            match r.next_chunk()? {
                Some((c, vals)) => {
                    comp = Some(c);
                    buf.clear();
                    buf.extend_from_slice(vals);
                }
                None => buf.clear(),
            }
        }
        let Some(c) = comp else { break };
        for i in 0..n {
            for j in i..n {
                let d = dot(&bufs[i], &bufs[j]);
                per[c][i][j] += d;
                if i != j {
                    per[c][j][i] += d;
                }
            }
        }
    }
    Ok(Gram {
        components: layout.into_iter().map(|c| c.name).collect(),
        per_component: per,
    })
}

/// Why two vectors of one space have different layouts, and what to do about it.
/// The usual cause is a task head in the vector (`--components taskemb`, Vu et
/// al.'s set): its size follows the label count, so a 2-label and a 3-label
/// task give vectors of different lengths.
pub fn layout_mismatch(a: &[Component], b: &[Component]) -> String {
    let is_head = |n: &str| n.starts_with("classifier.") || n.starts_with("qa_outputs.");
    let by_name = |v: &[Component], name: &str| v.iter().find(|c| c.name == name).map(|c| c.len);
    for c in a {
        match by_name(b, &c.name) {
            Some(len) if len != c.len && is_head(&c.name) => {
                return format!(
                    "the task heads differ in size (`{}` has {} values in one vector and {len} in the other: the tasks have different numbers of labels). The vectors include the head (`--components taskemb`, as Vu et al.); recompute both with `--components encoder` (FUTE's choice, head excluded) or `--components activations` to compare tasks with different label counts",
                    c.name, c.len
                )
            }
            Some(len) if len != c.len => {
                return format!(
                    "component `{}` has {} values in one vector and {len} in the other, so they cannot be compared",
                    c.name, c.len
                )
            }
            _ => {}
        }
    }
    let only = |x: &[Component], y: &[Component]| {
        x.iter()
            .find(|c| by_name(y, &c.name).is_none())
            .map(|c| c.name.clone())
    };
    match (only(a, b), only(b, a)) {
        (Some(n), _) | (_, Some(n)) if is_head(&n) => format!(
            "only one of the vectors holds the task head component `{n}` (one task is a classification, the other another head): compare them with `--components encoder`"
        ),
        (Some(n), _) | (_, Some(n)) => format!(
            "the vectors hold different components (`{n}` is in only one), so they cannot be compared (different layer selections?)"
        ),
        (None, None) => "the vectors list their components in different orders, so they cannot be compared".into(),
    }
}

/// Cosine similarity of `target` with each of `candidates` (indices into `g`),
/// optionally after subtracting the mean of the candidates from every vector.
/// A zero vector has similarity 0 with everything.
pub fn cosines(g: &[Vec<f64>], target: usize, candidates: &[usize], centre: bool) -> Vec<f64> {
    let n = candidates.len() as f64;
    // Row means over candidates: r[i] = (1/n) Σ_c G[i][c]; grand mean mm = (1/n²) Σ_{c,d} G[c][d].
    let r = |i: usize| {
        if centre && n > 0.0 {
            candidates.iter().map(|&c| g[i][c]).sum::<f64>() / n
        } else {
            0.0
        }
    };
    let mm = if centre && n > 0.0 {
        candidates.iter().map(|&c| r(c)).sum::<f64>() / n
    } else {
        0.0
    };
    let inner = |a: usize, b: usize| g[a][b] - r(a) - r(b) + mm;
    let norm_t = inner(target, target).max(0.0).sqrt();
    candidates
        .iter()
        .map(|&c| {
            let denom = norm_t * inner(c, c).max(0.0).sqrt();
            if denom <= f64::EPSILON {
                0.0
            } else {
                (inner(target, c) / denom).clamp(-1.0, 1.0)
            }
        })
        .collect()
}

/// Candidate positions ordered by decreasing score (ties: lower position first).
pub fn order_by_score(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx
}

/// Reciprocal rank fusion (Cormack et al. 2009): score(c) = Σ_lists 1 / (k + rank_list(c)),
/// ranks 1-based. `k = 60` is the usual constant.
pub fn reciprocal_rank_fusion(score_lists: &[Vec<f64>], k: f64) -> Vec<f64> {
    let n = score_lists.first().map_or(0, Vec::len);
    let mut fused = vec![0.0; n];
    for scores in score_lists {
        for (rank, &c) in order_by_score(scores).iter().enumerate() {
            fused[c] += 1.0 / (k + rank as f64 + 1.0);
        }
    }
    fused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_from_gram_matches_direct_computation() {
        let v = vec![
            vec![1.0f32, 2.0, 3.0],
            vec![2.0, 4.0, 6.5],
            vec![-1.0, 0.5, 0.0],
            vec![0.0, 0.0, 1.0],
        ];
        let g = Gram::of_vectors(&v).total();
        let s = cosines(&g, 0, &[1, 2, 3], false);
        let direct = |a: &[f32], b: &[f32]| {
            let d: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let n = |x: &[f32]| x.iter().map(|y| y * y).sum::<f32>().sqrt();
            (d / (n(a) * n(b))) as f64
        };
        for (k, c) in [1, 2, 3].iter().enumerate() {
            assert!((s[k] - direct(&v[0], &v[*c])).abs() < 1e-6);
        }
    }

    #[test]
    fn centred_cosine_equals_cosine_of_centred_vectors() {
        let v = vec![
            vec![1.0f32, 2.0, 3.0, 0.5],
            vec![1.1, 2.1, 2.9, 0.4],
            vec![0.9, 2.2, 3.1, 0.6],
            vec![1.0, 1.8, 3.3, 0.5],
        ];
        let cands = [1usize, 2, 3];
        let m: Vec<f32> = (0..4)
            .map(|d| cands.iter().map(|&c| v[c][d]).sum::<f32>() / 3.0)
            .collect();
        let centred: Vec<Vec<f32>> = v
            .iter()
            .map(|x| x.iter().zip(&m).map(|(a, b)| a - b).collect())
            .collect();
        let expect = cosines(&Gram::of_vectors(&centred).total(), 0, &cands, false);
        let got = cosines(&Gram::of_vectors(&v).total(), 0, &cands, true);
        for (a, b) in got.iter().zip(&expect) {
            assert!((a - b).abs() < 1e-5, "{got:?} vs {expect:?}");
        }
        // Raw cosines are all near 1; centred ones spread.
        let raw = cosines(&Gram::of_vectors(&v).total(), 0, &cands, false);
        assert!(raw.iter().all(|c| *c > 0.99));
        assert!(got.iter().cloned().fold(f64::INFINITY, f64::min) < 0.5);
    }

    #[test]
    fn rrf_sums_reciprocal_ranks() {
        // Candidate 0 is first then third, candidate 1 second twice, candidate 2 third then first.
        let fused = reciprocal_rank_fusion(&[vec![0.9, 0.8, 0.1], vec![0.0, 0.8, 0.9]], 60.0);
        assert!((fused[0] - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-15);
        assert!((fused[1] - 2.0 / 62.0).abs() < 1e-15);
        assert!((fused[2] - (1.0 / 63.0 + 1.0 / 61.0)).abs() < 1e-15);
        // Ties keep the earlier candidate first.
        assert_eq!(order_by_score(&fused), [0, 2, 1]);
    }

    #[test]
    fn a_head_of_another_size_is_named_as_the_reason() {
        let c = |name: &str, len| Component {
            name: name.into(),
            len,
        };
        let two = [c("encoder.layer.0.w", 4), c("classifier.weight", 2 * 8)];
        let three = [c("encoder.layer.0.w", 4), c("classifier.weight", 3 * 8)];
        let why = layout_mismatch(&two, &three);
        assert!(
            why.contains("task heads differ in size")
                && why.contains("different numbers of labels")
                && why.contains("--components encoder")
                && !why.contains("surrogates"),
            "{why}"
        );
        let other = [c("encoder.layer.1.w", 4), c("classifier.weight", 16)];
        assert!(layout_mismatch(&two, &other).contains("`encoder.layer.0.w` is in only one"));
    }

    #[test]
    fn zero_vector_has_zero_similarity() {
        let g = Gram::of_vectors(&[vec![0.0, 0.0], vec![1.0, 0.0]]).total();
        assert_eq!(cosines(&g, 0, &[1], false), vec![0.0]);
    }
}
