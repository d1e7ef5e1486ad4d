//! Task metrics of a fine-tuned model: accuracy, macro-F1, Matthews correlation,
//! Pearson and Spearman correlation, SQuAD exact match and F1.
//!
//! Conventions for degenerate inputs (empty slices, zero variance) return 0.0,
//! like scikit-learn's `zero_division=0`, rather than NaN, so tables stay readable.

use std::collections::HashMap;

/// Fraction of positions where `pred == gold`.
pub fn accuracy(pred: &[usize], gold: &[usize]) -> f64 {
    assert_eq!(pred.len(), gold.len(), "prediction and gold lengths differ");
    if gold.is_empty() {
        return 0.0;
    }
    pred.iter().zip(gold).filter(|(p, g)| p == g).count() as f64 / gold.len() as f64
}

fn confusion(pred: &[usize], gold: &[usize], k: usize) -> Vec<Vec<f64>> {
    assert_eq!(pred.len(), gold.len(), "prediction and gold lengths differ");
    let mut c = vec![vec![0.0; k]; k];
    for (&p, &g) in pred.iter().zip(gold) {
        assert!(p < k && g < k, "class index out of range 0..{k}");
        c[g][p] += 1.0;
    }
    c
}

/// Macro-averaged F1 as scikit-learn's `f1_score(gold, pred, average="macro")`:
/// the unweighted mean of per-class F1 over the classes that occur in the gold
/// labels or the predictions. A class of the label set that occurs in neither
/// is left out (counting it as F1 = 0 would score a binary dataset mapped onto
/// a 3-label set at 2/3 of its value). `num_classes` bounds the class indices.
/// Empty inputs give 0.0.
pub fn macro_f1(pred: &[usize], gold: &[usize], num_classes: usize) -> f64 {
    if num_classes == 0 {
        return 0.0;
    }
    let c = confusion(pred, gold, num_classes);
    let mut sum = 0.0;
    let mut present = 0usize;
    for (k, row) in c.iter().enumerate() {
        let tp = row[k];
        let predicted: f64 = c.iter().map(|r| r[k]).sum();
        let actual: f64 = row.iter().sum();
        let denom = predicted + actual;
        if denom > 0.0 {
            present += 1;
            sum += 2.0 * tp / denom;
        }
    }
    if present == 0 {
        0.0
    } else {
        sum / present as f64
    }
}

/// Matthews correlation coefficient, multi-class form (Gorodkin 2004); binary MCC for 2 classes.
pub fn matthews(pred: &[usize], gold: &[usize], num_classes: usize) -> f64 {
    let c = confusion(pred, gold, num_classes);
    let s: f64 = c.iter().flatten().sum();
    let correct: f64 = (0..num_classes).map(|k| c[k][k]).sum();
    let p: Vec<f64> = (0..num_classes)
        .map(|k| (0..num_classes).map(|g| c[g][k]).sum())
        .collect();
    let t: Vec<f64> = (0..num_classes).map(|k| c[k].iter().sum()).collect();
    let pt: f64 = p.iter().zip(&t).map(|(a, b)| a * b).sum();
    let denom = ((s * s - p.iter().map(|x| x * x).sum::<f64>())
        * (s * s - t.iter().map(|x| x * x).sum::<f64>()))
    .sqrt();
    if denom == 0.0 {
        0.0
    } else {
        (correct * s - pt) / denom
    }
}

/// Pearson correlation.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "lengths differ");
    let n = x.len() as f64;
    if x.is_empty() {
        return 0.0;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// 1-based ranks with ties given their average rank.
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman rank correlation (Pearson of average ranks, so ties are handled as SciPy).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&average_ranks(x), &average_ranks(y))
}

/// SQuAD answer normalisation: lower case, drop punctuation and the articles a/an/the, squash spaces.
pub fn normalize_answer(s: &str) -> String {
    let lower: String = s
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    lower
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// 1.0 when the normalised answers are equal (unanswerable = empty string).
pub fn squad_exact_match(pred: &str, gold: &str) -> f64 {
    f64::from(u8::from(normalize_answer(pred) == normalize_answer(gold)))
}

/// Token-overlap F1 of the normalised answers; for an unanswerable gold (empty),
/// 1.0 if the prediction is empty too, else 0.0 (SQuAD v2 rule).
pub fn squad_f1(pred: &str, gold: &str) -> f64 {
    let p = normalize_answer(pred);
    let g = normalize_answer(gold);
    let (pt, gt): (Vec<&str>, Vec<&str>) = (
        p.split_whitespace().collect(),
        g.split_whitespace().collect(),
    );
    if pt.is_empty() || gt.is_empty() {
        return f64::from(u8::from(pt.is_empty() && gt.is_empty()));
    }
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for t in &gt {
        *counts.entry(t).or_insert(0) += 1;
    }
    let mut common = 0;
    for t in &pt {
        if let Some(c) = counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                common += 1;
            }
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / pt.len() as f64;
    let recall = common as f64 / gt.len() as f64;
    2.0 * precision * recall / (precision + recall)
}
