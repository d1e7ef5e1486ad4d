//! Target metrics against scikit-learn / SciPy golden values
//! (`scripts/golden/metrics_golden.py`), to 1e-12.

use fute_core::metrics::{
    accuracy, macro_f1, matthews, pearson, spearman, squad_exact_match, squad_f1,
};
use serde_json::Value;

fn golden() -> Value {
    serde_json::from_str(include_str!("fixtures/metrics_golden.json")).unwrap()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 1e-12, "{what}: fute {a} vs reference {b}");
}

#[test]
fn classification_metrics_match_scikit_learn() {
    for c in golden()["classification"].as_array().unwrap() {
        let (p, g, k) = (
            usizes(&c["pred"]),
            usizes(&c["gold"]),
            c["num_classes"].as_u64().unwrap() as usize,
        );
        close(
            accuracy(&p, &g),
            c["accuracy"].as_f64().unwrap(),
            "accuracy",
        );
        close(
            macro_f1(&p, &g, k),
            c["macro_f1"].as_f64().unwrap(),
            "macro-F1",
        );
        close(matthews(&p, &g, k), c["matthews"].as_f64().unwrap(), "MCC");
    }
}

#[test]
fn correlations_match_scipy_including_ties() {
    for c in golden()["regression"].as_array().unwrap() {
        let (x, y) = (floats(&c["x"]), floats(&c["y"]));
        close(pearson(&x, &y), c["pearson"].as_f64().unwrap(), "Pearson");
        close(
            spearman(&x, &y),
            c["spearman"].as_f64().unwrap(),
            "Spearman",
        );
    }
}

#[test]
fn squad_em_and_f1_match_the_official_definition() {
    for c in golden()["squad"].as_array().unwrap() {
        let (p, g) = (c["pred"].as_str().unwrap(), c["gold"].as_str().unwrap());
        close(
            squad_exact_match(p, g),
            c["em"].as_f64().unwrap(),
            &format!("EM {p:?} {g:?}"),
        );
        close(
            squad_f1(p, g),
            c["f1"].as_f64().unwrap(),
            &format!("F1 {p:?} {g:?}"),
        );
    }
}

#[test]
fn degenerate_inputs_give_zero_not_nan() {
    assert_eq!(accuracy(&[], &[]), 0.0);
    assert_eq!(pearson(&[1.0, 1.0], &[2.0, 3.0]), 0.0);
    assert_eq!(matthews(&[0, 0], &[0, 0], 2), 0.0);
    // Only class 1 occurs: scikit-learn averages over it alone.
    assert_eq!(macro_f1(&[1, 1], &[1, 1], 2), 1.0);
    assert_eq!(macro_f1(&[], &[], 3), 0.0);
}

#[test]
fn macro_f1_leaves_out_classes_absent_from_gold_and_predictions() {
    // A binary dataset scored against a 3-label set: class 1 never occurs.
    // Class 0: tp 2, 3 predicted, 2 gold → F1 = 4/5; class 2: tp 1, 1 predicted, 2 gold → 2/3.
    // scikit-learn: (4/5 + 2/3) / 2 = 11/15; averaging over all 3 classes would give 22/45.
    let gold = [0, 0, 2, 2];
    let pred = [0, 0, 0, 2];
    close(macro_f1(&pred, &gold, 3), 11.0 / 15.0, "absent class");
    let golden = golden();
    let absent: Vec<&Value> = golden["classification"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["absent_classes"] == Value::Bool(true))
        .collect();
    assert_eq!(absent.len(), 5, "the fixture's absent-class cases");
}
