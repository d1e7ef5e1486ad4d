//! LogME against an independent numpy implementation (scripts/golden/logme_golden.py,
//! weight-space formulas with slogdet; ours works in the Gram eigenbasis).

use fute_core::metrics::{logme, LogmeLabels};
use serde_json::Value;

fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/logme_golden.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn logme_matches_numpy_on_both_sides_of_n_equals_dim() {
    let g = golden();
    let cases = g["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    let mut interpolating = 0;
    for c in cases {
        let dim = c["dim"].as_u64().unwrap() as usize;
        let n = c["n"].as_u64().unwrap() as usize;
        let f = floats(&c["features"]);
        let got = if c["kind"] == "classes" {
            let labels: Vec<usize> = c["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            let k = c["num_classes"].as_u64().unwrap() as usize;
            logme(
                &f,
                dim,
                LogmeLabels::Classes {
                    labels: &labels,
                    num_classes: k,
                },
            )
        } else {
            logme(&f, dim, LogmeLabels::Values(&floats(&c["values"])))
        };
        let want = c["logme"].as_f64().unwrap();
        if n <= dim {
            interpolating += 1;
        }
        assert!(
            (got - want).abs() <= 1e-6 * want.abs().max(1.0),
            "n={n} dim={dim}: {got} vs numpy {want}"
        );
    }
    assert_eq!(interpolating, 2, "the fixture covers n ≤ D twice");
}

#[test]
fn logme_is_invariant_to_the_order_of_examples() {
    let g = golden();
    let c = &g["cases"][0];
    let dim = c["dim"].as_u64().unwrap() as usize;
    let f = floats(&c["features"]);
    let labels: Vec<usize> = c["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    let n = labels.len();
    let order: Vec<usize> = (0..n).rev().collect();
    let f2: Vec<f64> = order
        .iter()
        .flat_map(|&i| f[i * dim..(i + 1) * dim].to_vec())
        .collect();
    let l2: Vec<usize> = order.iter().map(|&i| labels[i]).collect();
    let a = logme(
        &f,
        dim,
        LogmeLabels::Classes {
            labels: &labels,
            num_classes: 2,
        },
    );
    let b = logme(
        &f2,
        dim,
        LogmeLabels::Classes {
            labels: &l2,
            num_classes: 2,
        },
    );
    assert!((a - b).abs() < 1e-10, "{a} vs {b}");
}
