//! Real tier: every importer against the real packaged files.
//! Skipped when the asset is absent, unless FUTE_REQUIRE_ASSETS=1 (CI).

use fute_core::dataset::stats::stats;
use fute_core::dataset::{Dataset, Input, Split, Target};
use fute_core::import;
use fute_core::testing::real_asset;

/// Imports `name` if its asset is present.
fn import(name: &str) -> Option<Dataset> {
    let spec = import::find(name).unwrap();
    let dir = real_asset(spec.asset)?;
    Some(spec.import(dir.parent().unwrap()).unwrap())
}

fn label_total(ds: &Dataset, label: &str) -> usize {
    stats(ds)
        .label_counts
        .get(label)
        .map(|m| m.values().sum())
        .unwrap_or(0)
}

fn text(ex: &fute_core::dataset::Example) -> &str {
    ex.input.segments()[0]
}

fn dropped(ds: &Dataset, reason_part: &str) -> usize {
    ds.card
        .dropped
        .iter()
        .filter(|d| d.reason.contains(reason_part))
        .map(|d| d.count)
        .sum()
}

#[test]
fn imdb_has_50000_reviews_balanced() {
    let Some(ds) = import("imdb") else { return };
    assert_eq!(ds.card.source_rows, Some(50_000));
    assert_eq!(dropped(&ds, "duplicate"), 422);
    assert_eq!(ds.examples.len(), 49_578);
    assert_eq!(label_total(&ds, "negative"), 24_696);
    assert_eq!(label_total(&ds, "positive"), 24_882);
    let first = &ds.examples[0];
    assert_eq!(first.id, "imdb-00000");
    assert!(text(first).starts_with("Once again Mr. Costner has dragged out a movie"));
    assert_eq!(first.target, Target::Label(0));
    assert!(
        ds.examples.iter().all(|e| !text(e).contains("<br")),
        "HTML breaks removed"
    );
}

#[test]
fn rotten_tomatoes_drops_plot_summaries() {
    let Some(ds) = import("rotten-tomatoes") else {
        return;
    };
    assert_eq!(ds.card.source_rows, Some(13_905));
    assert_eq!(dropped(&ds, "plot"), 1_097);
    assert_eq!(dropped(&ds, "duplicate"), 56);
    assert_eq!(label_total(&ds, "positive"), 7_368);
    assert_eq!(label_total(&ds, "negative"), 5_384);
    let ex = ds.examples.iter().find(|e| e.id == "rt-01097").unwrap();
    assert_eq!(text(ex), "A three-hour cinema master class.");
    assert_eq!(ex.target, Target::Label(1));
}

#[test]
fn tweets_three_classes_latin1() {
    let Some(ds) = import("tweets") else { return };
    assert_eq!(ds.card.source_rows, Some(38_158));
    assert_eq!(dropped(&ds, "duplicate"), 925);
    assert_eq!(label_total(&ds, "negative"), 15_977);
    assert_eq!(label_total(&ds, "neutral"), 14_449);
    assert_eq!(label_total(&ds, "positive"), 6_807);
    let last = ds.examples.last().unwrap();
    assert_eq!(last.id, "tweet-38157");
    assert_eq!(text(last), "@jpritch_ One word: Claritin. Works wonders.");
    assert_eq!(last.target, Target::Label(2));
}

#[test]
fn spam_assassin_headers_stripped() {
    let Some(ds) = import("spam-assassin") else {
        return;
    };
    assert_eq!(ds.card.source_rows, Some(6_046));
    assert_eq!(dropped(&ds, "duplicate"), 207);
    assert_eq!(label_total(&ds, "ham"), 4_110);
    assert_eq!(label_total(&ds, "spam"), 1_729);
    // Bodies start after the headers: only the one spam that forwards a whole
    // message (headers included) in its body starts with a header line.
    let header_first: Vec<_> = ds
        .examples
        .iter()
        .filter(|e| text(e).starts_with("Return-Path:"))
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(header_first, ["spam-2/00403"]);
    let ham = ds
        .examples
        .iter()
        .find(|e| e.id == "easy-ham-1/00193")
        .unwrap();
    assert!(text(ham).starts_with("From the local paper this morning."));
    let spam = ds.examples.iter().find(|e| e.id == "spam-2/01400").unwrap();
    assert!(text(spam).starts_with("ATTN:SIR/MADAN STRICTLY CONFIDENTIAL."));
    assert_eq!(spam.target, Target::Label(1));
}

#[test]
fn lee_similarity_is_1225_pairs_in_unit_range() {
    let Some(ds) = import("lee-similarity") else {
        return;
    };
    assert_eq!(ds.examples.len(), 1_225);
    let st = stats(&ds);
    let (min, _mean, max) = st.value_range.unwrap();
    assert!(min >= 0.0 && max <= 1.0);
    let first = &ds.examples[0];
    assert_eq!(first.id, "lee-00-01");
    assert_eq!(first.target, Target::Value(0.3));
    match &first.input {
        Input::Pair(a, b) => {
            assert!(a.starts_with("The national executive of the strife-torn Democrats"));
            assert!(b.starts_with("Cash-strapped financial services group AMP"));
        }
        other => panic!("expected a pair, got {other:?}"),
    }
}

#[test]
fn imported_splits_are_roughly_80_10_10() {
    let Some(ds) = import("imdb") else { return };
    let n = ds.examples.len() as f64;
    let frac = |s| ds.split(s).len() as f64 / n;
    assert!((frac(Split::Train) - 0.8).abs() < 0.01);
    assert!((frac(Split::Dev) - 0.1).abs() < 0.01);
    assert!((frac(Split::Test) - 0.1).abs() < 0.01);
}

#[test]
fn packaged_load_caches_and_round_trips() {
    let Some(dir) = real_asset("tweets") else {
        return;
    };
    // A private cache folder sharing the real asset (and its manifest).
    let root = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&dir, root.path().join("tweets")).unwrap();
    std::fs::copy(
        dir.parent().unwrap().join("manifest.json"),
        root.path().join("manifest.json"),
    )
    .unwrap();
    let spec = import::find("tweets").unwrap();
    let first = spec.load(root.path()).unwrap();
    assert!(spec.cache_dir(root.path()).join("card.json").is_file());
    let second = spec.load(root.path()).unwrap();
    assert_eq!(first, second);
    assert_eq!(first.content_hash(), second.content_hash());
}

/// BIG-bench is opt-in (342 MB): these run when it was fetched.
#[test]
fn bigbench_tasks_import_with_expected_counts() {
    type LabelCounts = &'static [(&'static str, usize)];
    let expected: &[(&str, usize, LabelCounts)] = &[
        (
            "vitaminc",
            54_668,
            &[("True", 27_242), ("False", 20_169), ("Neither", 7_257)],
        ),
        (
            "imppres",
            732,
            &[
                ("entailment", 299),
                ("neutral", 306),
                ("contradiction", 127),
            ],
        ),
        (
            "epistemic-reasoning",
            2_000,
            &[("entailment", 741), ("non-entailment", 1_259)],
        ),
        ("fever", 6_526, &[("true", 3_260), ("false", 3_266)]),
        ("strategyqa", 2_289, &[("Yes", 1_070), ("No", 1_219)]),
        ("snips", 693, &[("add_to_playlist", 122), ("rate_book", 80)]),
        (
            "multiemo",
            8_214,
            &[("negative", 3_111), ("ambivalent", 1_600)],
        ),
        ("metaphor-paraphrase", 680, &[("True", 261), ("False", 419)]),
    ];
    if std::env::var("FUTE_REQUIRE_BIGBENCH").as_deref() != Ok("1")
        && !fute_core::assets::default_root().join("bigbench").is_dir()
    {
        eprintln!("skipping: bigbench not fetched (opt-in)");
        return;
    }
    for (name, n, labels) in expected {
        let ds = import(name).unwrap();
        assert_eq!(ds.examples.len(), *n, "{name}");
        for (label, count) in *labels {
            assert_eq!(label_total(&ds, label), *count, "{name} {label}");
        }
    }
    for (name, n, unanswerable) in [("disfl-qa", 6_881, 2_107), ("nq-conflicts", 17_528, 0)] {
        let ds = import(name).unwrap();
        assert_eq!(ds.examples.len(), n, "{name}");
        assert_eq!(stats(&ds).unanswerable, unanswerable, "{name}");
        // Every answer sits exactly at its character offset.
        for ex in &ds.examples {
            if let (Input::Qa { context, .. }, Target::Span(Some(span))) = (&ex.input, &ex.target) {
                let at: String = context
                    .chars()
                    .skip(span.start)
                    .take(span.text.chars().count())
                    .collect();
                assert_eq!(at, span.text, "{}", ex.id);
            }
        }
    }
}
