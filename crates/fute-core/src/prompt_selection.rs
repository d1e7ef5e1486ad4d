//! Scores that rank prompts without labels (the baselines FUTE is compared with).
//!
//! Input: for each prompt p, the LLM's label distribution P_p(·|x_i) on the same
//! unlabelled inputs x_1..x_N. Every score is "higher is better". Formulas follow
//! the FUTE reference implementation (`paper.md` §6); entropies use natural logs.

use crate::{Error, Result};

/// Label distributions of one prompt: `[N inputs][K labels]`.
pub type Distributions = [Vec<f64>];

fn entropy(q: &[f64]) -> f64 {
    -q.iter()
        .filter(|&&x| x > 0.0)
        .map(|&x| x * x.ln())
        .sum::<f64>()
}

fn argmax(q: &[f64]) -> usize {
    // Ties go to the lowest index, as numpy's argmax.
    let mut best = 0;
    for (i, &x) in q.iter().enumerate() {
        if x > q[best] {
            best = i;
        }
    }
    best
}

fn check(d: &Distributions) -> Result<usize> {
    let k = d
        .first()
        .map(Vec::len)
        .ok_or_else(|| Error::Invalid("no inputs to score a prompt on".into()))?;
    if k == 0 || d.iter().any(|q| q.len() != k) {
        return Err(Error::Invalid(
            "every input needs a distribution over the same labels".into(),
        ));
    }
    Ok(k)
}

/// Mutual information between input and prediction (Sorensen et al. 2022):
/// H(mean_i P_i) − mean_i H(P_i).
pub fn mutual_information(d: &Distributions) -> Result<f64> {
    let k = check(d)?;
    let n = d.len() as f64;
    let mean: Vec<f64> = (0..k)
        .map(|y| d.iter().map(|q| q[y]).sum::<f64>() / n)
        .collect();
    Ok(entropy(&mean) - local_entropy(d)?)
}

/// LocalE (Lu et al. 2022): the mean per-input prediction entropy.
pub fn local_entropy(d: &Distributions) -> Result<f64> {
    check(d)?;
    Ok(d.iter().map(|q| entropy(q)).sum::<f64>() / d.len() as f64)
}

/// GlobalE (Lu et al. 2022): entropy of the histogram of predicted labels.
pub fn global_entropy(d: &Distributions) -> Result<f64> {
    let k = check(d)?;
    let mut counts = vec![0.0; k];
    for q in d {
        counts[argmax(q)] += 1.0;
    }
    let n = d.len() as f64;
    Ok(entropy(&counts.iter().map(|c| c / n).collect::<Vec<_>>()))
}

/// MDL as the FUTE reference scores it (`paper.md` §6, §12):
/// +mean_i mean_y (−ln P(y|x_i)), the mean code length of every label, ranked
/// higher = better like every other score here (only SPELL is negated). It is
/// smallest (ln K) for a uniform distribution and grows as the distributions
/// sharpen, so confident prompts rank first. Probabilities are floored at 1e-12
/// so a hard 0 stays finite.
pub fn mdl(d: &Distributions) -> Result<f64> {
    let k = check(d)? as f64;
    let total: f64 = d
        .iter()
        .map(|q| q.iter().map(|&p| -(p.max(1e-12)).ln()).sum::<f64>() / k)
        .sum();
    Ok(total / d.len() as f64)
}

/// SPELL (Gonen et al. 2023): −mean perplexity of the prompt-formatted inputs.
pub fn spell(perplexities: &[f64]) -> Result<f64> {
    if perplexities.is_empty() {
        return Err(Error::Invalid(
            "no perplexities to score a prompt on".into(),
        ));
    }
    Ok(-perplexities.iter().sum::<f64>() / perplexities.len() as f64)
}

/// How ZPS ensembles the kept prompts into pseudo-labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZpsEnsemble {
    /// argmax of the mean log-probability.
    Log,
    /// argmax of the mean probability.
    Prob,
    /// Majority vote of the prompts' predictions (ties: lowest label).
    Vote,
}

/// Confidence of a prompt: mean over inputs of (top-1 − top-2 probability).
pub fn confidence(d: &Distributions) -> Result<f64> {
    check(d)?;
    Ok(d.iter()
        .map(|q| {
            let mut s = q.clone();
            s.sort_by(|a, b| b.total_cmp(a));
            s[0] - s.get(1).copied().unwrap_or(0.0)
        })
        .sum::<f64>()
        / d.len() as f64)
}

/// Splits values into two clusters minimising the within-cluster sum of squares
/// (exact 1-D 2-means) and returns which values are in the cluster with the larger centre.
pub fn upper_cluster(values: &[f64]) -> Vec<bool> {
    let n = values.len();
    if n < 2 {
        return vec![true; n];
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let sorted: Vec<f64> = order.iter().map(|&i| values[i]).collect();
    let sse = |s: &[f64]| {
        let m = s.iter().sum::<f64>() / s.len() as f64;
        s.iter().map(|x| (x - m).powi(2)).sum::<f64>()
    };
    // The split after position `cut` (lower = sorted[..cut]); the first best split wins.
    let mut best = (f64::INFINITY, n);
    for cut in 1..n {
        let cost = sse(&sorted[..cut]) + sse(&sorted[cut..]);
        if cost < best.0 - 1e-15 {
            best = (cost, cut);
        }
    }
    let threshold_rank = best.1;
    let mut keep = vec![false; n];
    for (rank, &i) in order.iter().enumerate() {
        keep[i] = rank >= threshold_rank;
    }
    if sorted[0] == sorted[n - 1] {
        return vec![true; n];
    }
    keep
}

/// Zero-label prompt selection (Liao et al.): keep the confident prompts (upper
/// cluster of [`confidence`]), ensemble them into pseudo-labels, and score every
/// prompt by its accuracy against the pseudo-labels.
pub fn zps(prompts: &[Vec<Vec<f64>>], ensemble: ZpsEnsemble) -> Result<Vec<f64>> {
    if prompts.is_empty() {
        return Err(Error::Invalid("no prompts to score".into()));
    }
    let n = prompts[0].len();
    let k = check(&prompts[0])?;
    for p in prompts {
        if p.len() != n || check(p)? != k {
            return Err(Error::Invalid(
                "every prompt must be scored on the same inputs and labels".into(),
            ));
        }
    }
    let conf = prompts
        .iter()
        .map(|p| confidence(p))
        .collect::<Result<Vec<_>>>()?;
    let kept: Vec<usize> = upper_cluster(&conf)
        .iter()
        .enumerate()
        .filter(|(_, k)| **k)
        .map(|(i, _)| i)
        .collect();
    let pseudo: Vec<usize> = (0..n)
        .map(|i| match ensemble {
            ZpsEnsemble::Log => argmax(
                &(0..k)
                    .map(|y| {
                        kept.iter()
                            .map(|&p| prompts[p][i][y].max(1e-12).ln())
                            .sum::<f64>()
                    })
                    .collect::<Vec<_>>(),
            ),
            ZpsEnsemble::Prob => argmax(
                &(0..k)
                    .map(|y| kept.iter().map(|&p| prompts[p][i][y]).sum::<f64>())
                    .collect::<Vec<_>>(),
            ),
            ZpsEnsemble::Vote => {
                let mut votes = vec![0.0; k];
                for &p in &kept {
                    votes[argmax(&prompts[p][i])] += 1.0;
                }
                argmax(&votes)
            }
        })
        .collect();
    Ok(prompts
        .iter()
        .map(|p| {
            p.iter()
                .zip(&pseudo)
                .filter(|(q, y)| argmax(q) == **y)
                .count() as f64
                / n as f64
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LN2: f64 = std::f64::consts::LN_2;

    #[test]
    fn entropies_by_hand() {
        // Two confident, opposite predictions.
        let d = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        assert!((local_entropy(&d).unwrap()).abs() < 1e-12);
        assert!((global_entropy(&d).unwrap() - LN2).abs() < 1e-12);
        assert!((mutual_information(&d).unwrap() - LN2).abs() < 1e-12);
        // Uniform predictions: no information.
        let u = vec![vec![0.5, 0.5]; 3];
        assert!((local_entropy(&u).unwrap() - LN2).abs() < 1e-12);
        assert!(mutual_information(&u).unwrap().abs() < 1e-12);
        // Ties predict label 0: histogram all on 0.
        assert_eq!(global_entropy(&u).unwrap(), 0.0);
    }

    #[test]
    fn mdl_and_spell_by_hand() {
        let d = vec![vec![0.5, 0.5]];
        assert!((mdl(&d).unwrap() - LN2).abs() < 1e-12);
        // By hand: input 1 = (0.8, 0.2), input 2 = (0.5, 0.5):
        // mean_y(−ln p) = (0.22314355 + 1.60943791)/2 = 0.91629073 and ln 2 = 0.69314718,
        // so MDL = (0.91629073 + 0.69314718)/2 = 0.80471896, positive as in the reference.
        let two = vec![vec![0.8, 0.2], vec![0.5, 0.5]];
        assert!((mdl(&two).unwrap() - 0.804_718_956_217_050_2).abs() < 1e-12);
        // Higher = better: the confident prompt (2.3076) outranks the flat one (ln 2), as in the reference.
        let confident = vec![vec![0.99, 0.01]];
        assert!((mdl(&confident).unwrap() - 2.307_610_260_920_796).abs() < 1e-12);
        assert!(mdl(&d).unwrap() < mdl(&confident).unwrap());
        assert_eq!(spell(&[2.0, 4.0]).unwrap(), -3.0);
        assert!(spell(&[]).is_err());
    }

    #[test]
    fn confidence_and_clusters() {
        let d = vec![vec![0.9, 0.1], vec![0.6, 0.4]];
        assert!((confidence(&d).unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(
            upper_cluster(&[0.1, 0.8, 0.15, 0.9]),
            [false, true, false, true]
        );
        assert_eq!(upper_cluster(&[0.3, 0.3, 0.3]), [true, true, true]);
    }

    #[test]
    fn zps_scores_agreement_with_pseudo_labels() {
        // Prompts 0 and 1 are confident and agree; prompt 2 is unsure and disagrees.
        let p0 = vec![vec![0.9, 0.1], vec![0.1, 0.9], vec![0.8, 0.2]];
        let p1 = vec![vec![0.95, 0.05], vec![0.2, 0.8], vec![0.9, 0.1]];
        let p2 = vec![vec![0.45, 0.55], vec![0.55, 0.45], vec![0.45, 0.55]];
        for e in [ZpsEnsemble::Log, ZpsEnsemble::Prob, ZpsEnsemble::Vote] {
            let s = zps(&[p0.clone(), p1.clone(), p2.clone()], e).unwrap();
            assert_eq!(s, vec![1.0, 1.0, 0.0], "{e:?}");
        }
        // Vote ties go to label 0.
        let a = vec![vec![0.9, 0.1]];
        let b = vec![vec![0.1, 0.9]];
        assert_eq!(zps(&[a, b], ZpsEnsemble::Vote).unwrap(), vec![1.0, 0.0]);
    }

    #[test]
    fn mismatched_inputs_are_errors() {
        assert!(mutual_information(&[]).is_err());
        assert!(local_entropy(&[vec![0.5, 0.5], vec![1.0]]).is_err());
        assert!(zps(
            &[vec![vec![1.0, 0.0]], vec![vec![1.0, 0.0], vec![0.0, 1.0]]],
            ZpsEnsemble::Log
        )
        .is_err());
    }
}
