//! Summary statistics of a dataset: sizes, label balance, lengths.

use super::example::{Split, Target};
use super::Dataset;
use serde::Serialize;
use std::collections::BTreeMap;

/// Quantiles of a length distribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LengthSummary {
    /// Shortest.
    pub min: usize,
    /// Median.
    pub p50: usize,
    /// 90th percentile.
    pub p90: usize,
    /// Longest.
    pub max: usize,
    /// Mean.
    pub mean: f64,
}

impl LengthSummary {
    fn of(mut v: Vec<usize>) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        Some(LengthSummary {
            min: v[0],
            p50: q(0.5),
            p90: q(0.9),
            max: v[v.len() - 1],
            mean: v.iter().sum::<usize>() as f64 / v.len() as f64,
        })
    }
}

/// Statistics of one dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetStats {
    /// Examples per split.
    pub split_sizes: BTreeMap<String, usize>,
    /// Examples per label (classification), per split.
    pub label_counts: BTreeMap<String, BTreeMap<String, usize>>,
    /// Unanswerable questions (QA).
    pub unanswerable: usize,
    /// Regression target summary: (min, mean, max).
    pub value_range: Option<(f64, f64, f64)>,
    /// Input length in characters.
    pub chars: Option<LengthSummary>,
    /// Input length in whitespace-separated words.
    pub words: Option<LengthSummary>,
}

/// Computes [`DatasetStats`].
pub fn stats(ds: &Dataset) -> DatasetStats {
    let mut split_sizes = BTreeMap::new();
    let mut label_counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut unanswerable = 0;
    let mut values = Vec::new();
    let (mut chars, mut words) = (Vec::new(), Vec::new());
    let labels = ds.card.schema.labels();
    for ex in &ds.examples {
        let split = ds.split_of(ex);
        *split_sizes.entry(split.as_str().to_owned()).or_insert(0) += 1;
        match &ex.target {
            Target::Label(i) => {
                let name = labels
                    .and_then(|l| l.get(*i))
                    .cloned()
                    .unwrap_or_else(|| i.to_string());
                *label_counts
                    .entry(name)
                    .or_default()
                    .entry(split.as_str().to_owned())
                    .or_insert(0) += 1;
            }
            Target::Value(v) => values.push(*v),
            Target::Span(None) => unanswerable += 1,
            Target::Span(Some(_)) => {}
        }
        chars.push(ex.input.char_len());
        words.push(
            ex.input
                .segments()
                .iter()
                .map(|s| s.split_whitespace().count())
                .sum(),
        );
    }
    for s in Split::ALL {
        split_sizes.entry(s.as_str().to_owned()).or_insert(0);
    }
    let value_range = (!values.is_empty()).then(|| {
        let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        (min, values.iter().sum::<f64>() / values.len() as f64, max)
    });
    DatasetStats {
        split_sizes,
        label_counts,
        unanswerable,
        value_range,
        chars: LengthSummary::of(chars),
        words: LengthSummary::of(words),
    }
}
