//! How good is a predicted ranking? ρ (rank of the true best), NDCG, Performance, Rate.
//!
//! Predicted scores may tie. Instead of breaking ties arbitrarily (which makes
//! results depend on candidate order), every metric takes its expectation over
//! all orders of the tied candidates: a tied block shares its positions equally.
//! All-equal scores therefore give the value of a random ranking, not 0 or 1.

/// 1-based ranks by decreasing score, ties sharing the mean of their positions.
pub fn shared_ranks(scores: &[f64]) -> Vec<f64> {
    let neg: Vec<f64> = scores.iter().map(|s| -s).collect();
    super::target::average_ranks(&neg)
}

/// ρ for one target: the expected 1-based position, in the predicted ranking, of the
/// candidate whose true score is highest (lower is better; 1.0 is perfect).
/// Several true bests: the best-placed of them counts (as "find a best source").
pub fn rank_of_best(predicted: &[f64], truth: &[f64]) -> f64 {
    assert_eq!(predicted.len(), truth.len(), "lengths differ");
    assert!(!truth.is_empty(), "no candidates");
    let best = truth.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let ranks = shared_ranks(predicted);
    (0..truth.len())
        .filter(|&i| truth[i] == best)
        .map(|i| ranks[i])
        .fold(f64::INFINITY, f64::min)
}

/// NDCG over the full ranking (Järvelin & Kekäläinen 2002), gain 2^rel − 1,
/// discount log₂(position + 1). Returns a value in [0, 1] (×100 for the papers'
/// tables); 0 when no candidate has positive gain.
pub fn ndcg(predicted: &[f64], relevance: &[f64]) -> f64 {
    assert_eq!(predicted.len(), relevance.len(), "lengths differ");
    let n = relevance.len();
    let gain = |r: f64| r.exp2() - 1.0;
    let discount = |pos: usize| 1.0 / ((pos + 1) as f64).log2();
    // Ideal DCG: relevance sorted decreasingly.
    let mut ideal: Vec<f64> = relevance.to_vec();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal
        .iter()
        .enumerate()
        .map(|(i, r)| gain(*r) * discount(i + 1))
        .sum();
    if idcg <= 0.0 {
        return 0.0;
    }
    // Expected DCG: a tied block of size m at positions p..p+m-1 gives each member
    // the mean discount of those positions.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| predicted[b].total_cmp(&predicted[a]));
    let mut dcg = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && predicted[order[j + 1]] == predicted[order[i]] {
            j += 1;
        }
        let mean_discount = (i..=j).map(|p| discount(p + 1)).sum::<f64>() / (j - i + 1) as f64;
        dcg += order[i..=j]
            .iter()
            .map(|&c| gain(relevance[c]))
            .sum::<f64>()
            * mean_discount;
        i = j + 1;
    }
    dcg / idcg
}

/// Performance of the selection: the true performance of the top-scored candidate
/// (the mean over candidates tied at the top).
pub fn performance(predicted: &[f64], truth: &[f64]) -> f64 {
    assert_eq!(predicted.len(), truth.len(), "lengths differ");
    assert!(!truth.is_empty(), "no candidates");
    let top = predicted.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let tied: Vec<f64> = (0..truth.len())
        .filter(|&i| predicted[i] == top)
        .map(|i| truth[i])
        .collect();
    tied.iter().sum::<f64>() / tied.len() as f64
}

/// Rate: [`performance`] divided by the best candidate's true performance (1.0 = the best was chosen).
pub fn rate(predicted: &[f64], truth: &[f64]) -> f64 {
    let best = truth.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if best <= 0.0 {
        return 0.0;
    }
    performance(predicted, truth) / best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_of_best_is_1_when_right_and_shares_ties() {
        assert_eq!(rank_of_best(&[0.9, 0.5, 0.1], &[3.0, 2.0, 1.0]), 1.0);
        assert_eq!(rank_of_best(&[0.1, 0.5, 0.9], &[3.0, 2.0, 1.0]), 3.0);
        // The best is tied with one other at the top: expected position 1.5.
        assert_eq!(rank_of_best(&[0.9, 0.9, 0.1], &[3.0, 2.0, 1.0]), 1.5);
        // All-equal scores: the middle of the list.
        assert_eq!(rank_of_best(&[0.0; 4], &[1.0, 4.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn ndcg_by_hand() {
        // Relevances 3, 2, 0 ranked perfectly → 1.
        assert!((ndcg(&[3.0, 2.0, 1.0], &[3.0, 2.0, 0.0]) - 1.0).abs() < 1e-12);
        // Reversed: DCG = 0/1 + 3/log2(3) + 7/2 ; IDCG = 7 + 3/log2(3) + 0.
        let dcg = 3.0 / 3f64.log2() + 7.0 / 2.0;
        let idcg = 7.0 + 3.0 / 3f64.log2();
        assert!((ndcg(&[1.0, 2.0, 3.0], &[3.0, 2.0, 0.0]) - dcg / idcg).abs() < 1e-12);
    }

    #[test]
    fn ndcg_ties_average_the_orders() {
        // Two candidates tied: the expectation over both orders.
        let rel = [1.0, 0.0];
        let expected = (1.0 + 1.0 / 3f64.log2()) / 2.0;
        assert!((ndcg(&[0.5, 0.5], &rel) - expected).abs() < 1e-12);
        // Same as averaging the two strict rankings.
        let avg = (ndcg(&[1.0, 0.0], &rel) + ndcg(&[0.0, 1.0], &rel)) / 2.0;
        assert!((ndcg(&[0.5, 0.5], &rel) - avg).abs() < 1e-12);
        // No positive gain anywhere → 0.
        assert_eq!(ndcg(&[1.0, 2.0], &[0.0, 0.0]), 0.0);
    }

    #[test]
    fn performance_and_rate() {
        let truth = [0.80, 0.90, 0.60];
        assert_eq!(performance(&[0.1, 0.9, 0.2], &truth), 0.90);
        assert_eq!(rate(&[0.1, 0.9, 0.2], &truth), 1.0);
        assert!((rate(&[0.9, 0.1, 0.2], &truth) - 0.8 / 0.9).abs() < 1e-12);
        // Tie at the top between 0.80 and 0.60 → 0.70.
        assert!((performance(&[0.9, 0.1, 0.9], &truth) - 0.70).abs() < 1e-12);
        assert!((performance(&[0.0; 3], &truth) - (2.3 / 3.0)).abs() < 1e-12);
    }
}
