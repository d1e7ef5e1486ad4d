//! ρ and NDCG on hand-made rankings, each value worked out by hand: a perfect and
//! a reversed ranking, ties (expectation over the tied orders), one candidate,
//! and negative scores and relevances (LogME scores are negative; a target score
//! in points can be a negative correlation).

use fute_core::metrics::{ndcg, rank_of_best};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn perfect_and_reversed() {
    let truth = [70.0, 60.0, 50.0, 40.0];
    let perfect = [4.0, 3.0, 2.0, 1.0];
    let reversed = [1.0, 2.0, 3.0, 4.0];
    assert_eq!(rank_of_best(&perfect, &truth), 1.0);
    assert_eq!(rank_of_best(&reversed, &truth), 4.0);
    assert!(close(ndcg(&perfect, &[3.0, 2.0, 1.0, 0.0]), 1.0));
    // Reversed, relevances 3,2,1,0 placed 0,1,2,3:
    // DCG = 0/log2(2) + 1/log2(3) + 3/log2(4) + 7/log2(5)
    // IDCG = 7/log2(2) + 3/log2(3) + 1/log2(4) + 0
    let dcg = 1.0 / 3f64.log2() + 3.0 / 2.0 + 7.0 / 5f64.log2();
    let idcg = 7.0 + 3.0 / 3f64.log2() + 1.0 / 2.0;
    assert!(close(ndcg(&reversed, &[3.0, 2.0, 1.0, 0.0]), dcg / idcg));
}

#[test]
fn ties_take_the_expectation_over_orders() {
    // The true best (index 0) is tied with index 2 at the top: positions 1 and 2
    // are equally likely, expected 1.5.
    assert_eq!(rank_of_best(&[5.0, 1.0, 5.0], &[9.0, 3.0, 4.0]), 1.5);
    // Three tied at the bottom, best among them: positions 2, 3, 4 → 3.
    assert_eq!(
        rank_of_best(&[9.0, 0.0, 0.0, 0.0], &[1.0, 5.0, 2.0, 3.0]),
        3.0
    );
    // NDCG with a tied pair (rel 2 and 0) behind a strict first (rel 1):
    // expected DCG = 1/1 + (3 + 0) * (1/log2(3) + 1/log2(4)) / 2
    let exp_dcg = 1.0 + 3.0 * (1.0 / 3f64.log2() + 0.5) / 2.0;
    let idcg = 3.0 + 1.0 / 3f64.log2();
    assert!(close(
        ndcg(&[9.0, 1.0, 1.0], &[1.0, 2.0, 0.0]),
        exp_dcg / idcg
    ));
}

#[test]
fn one_candidate_is_always_perfect() {
    assert_eq!(rank_of_best(&[0.3], &[42.0]), 1.0);
    assert!(close(ndcg(&[-7.0], &[42.0]), 1.0));
}

#[test]
fn negative_scores_rank_like_any_others() {
    // LogME-like negative predictions: −0.2 > −0.9 > −1.5.
    let pred = [-0.9, -0.2, -1.5];
    assert_eq!(rank_of_best(&pred, &[10.0, 30.0, 20.0]), 1.0);
    assert_eq!(rank_of_best(&pred, &[10.0, 20.0, 30.0]), 3.0);
    // Shifting or scaling the predictions changes nothing.
    let shifted: Vec<f64> = pred.iter().map(|p| 3.0 * p + 100.0).collect();
    let rel = [2.0, 3.0, 1.0];
    assert!(close(ndcg(&pred, &rel), ndcg(&shifted, &rel)));
    assert!(close(ndcg(&pred, &rel), 1.0));
}

#[test]
fn negative_relevances_have_negative_gain() {
    // rel −1 has gain 2^−1 − 1 = −0.5: placing it first lowers DCG below the ideal.
    // Ideal: 3 (gain 7) at 1, −1 (gain −0.5) at 2 → 7 − 0.5/log2(3).
    // Reversed: −0.5 + 7/log2(3).
    let rel = [3.0, -1.0];
    let idcg = 7.0 - 0.5 / 3f64.log2();
    let dcg = -0.5 + 7.0 / 3f64.log2();
    assert!(close(ndcg(&[0.0, 1.0], &rel), dcg / idcg));
    assert!(ndcg(&[0.0, 1.0], &rel) < 1.0);
}
