//! Loaders, validation errors (each names file and line), round trips, splits.

use fute_core::dataset::{
    read_csv, read_jsonl, AnswerSpan, Dataset, DatasetCard, Example, FieldMap, Input, InputShape,
    Split, SplitConfig, Target, TaskSchema,
};
use std::path::{Path, PathBuf};

fn sentiment() -> TaskSchema {
    TaskSchema::Classification {
        inputs: InputShape::Single,
        labels: vec!["negative".into(), "positive".into()],
    }
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// Loads `content` as JSONL and returns the error message.
fn jsonl_error(schema: &TaskSchema, content: &str) -> (String, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "data.jsonl", content);
    let err = read_jsonl(&p, schema).unwrap_err().to_string();
    (err, p)
}

fn assert_names(err: &str, path: &Path, line: usize, needle: &str) {
    let at = format!("{}:{line}", path.display());
    assert!(err.contains(&at), "error `{err}` should name {at}");
    assert!(err.contains(needle), "error `{err}` should say `{needle}`");
}

#[test]
fn empty_text_is_rejected_with_file_and_line() {
    let (err, p) = jsonl_error(&sentiment(), "{\"id\":\"a\",\"text\":\"fine\",\"label\":\"positive\"}\n{\"id\":\"b\",\"text\":\"  \",\"label\":\"negative\"}\n");
    assert_names(&err, &p, 2, "empty text");
    assert!(err.contains("field `text`"), "{err}");
}

#[test]
fn unknown_label_lists_the_known_ones() {
    let (err, p) = jsonl_error(
        &sentiment(),
        "{\"id\":\"a\",\"text\":\"meh\",\"label\":\"neutral\"}\n",
    );
    assert_names(
        &err,
        &p,
        1,
        "unknown label `neutral`; expected one of: negative, positive",
    );
}

#[test]
fn answer_not_in_context_is_rejected() {
    let qa = TaskSchema::ExtractiveQa;
    let (err, p) = jsonl_error(
        &qa,
        "{\"id\":\"q\",\"question\":\"Who?\",\"context\":\"Ada wrote it.\",\"answer\":{\"text\":\"Bob\"}}\n",
    );
    assert_names(&err, &p, 1, "answer `Bob` does not occur in the context");
    let (err, p) = jsonl_error(
        &qa,
        "{\"id\":\"q\",\"question\":\"Who?\",\"context\":\"Ada wrote it.\",\"answer\":{\"text\":\"Ada\",\"start\":4}}\n",
    );
    assert_names(&err, &p, 1, "is not found in the context at character 4");
}

#[test]
fn wrong_type_is_named() {
    let (err, p) = jsonl_error(
        &sentiment(),
        "{\"id\":\"a\",\"text\":42,\"label\":\"positive\"}\n",
    );
    assert_names(&err, &p, 1, "expected a string, found a number");
    let reg = TaskSchema::Regression {
        inputs: InputShape::Single,
        range: None,
    };
    let (err, p) = jsonl_error(&reg, "{\"id\":\"a\",\"text\":\"x\",\"value\":[1]}\n");
    assert_names(&err, &p, 1, "expected a number, found an array");
}

#[test]
fn duplicate_id_names_both_lines() {
    let (err, p) = jsonl_error(
        &sentiment(),
        "{\"id\":\"a\",\"text\":\"one\",\"label\":\"positive\"}\n\n{\"id\":\"a\",\"text\":\"two\",\"label\":\"negative\"}\n",
    );
    assert_names(&err, &p, 3, "duplicate id `a` (first seen on line 1)");
}

#[test]
fn empty_dataset_is_an_error() {
    let (err, p) = jsonl_error(&sentiment(), "\n\n");
    assert!(
        err.contains(&p.display().to_string()) && err.contains("the dataset is empty"),
        "{err}"
    );
}

#[test]
fn malformed_json_names_the_line() {
    let (err, p) = jsonl_error(
        &sentiment(),
        "{\"id\":\"a\",\"text\":\"ok\",\"label\":\"positive\"}\n{not json\n",
    );
    assert_names(&err, &p, 2, "invalid JSON");
}

#[test]
fn regression_range_is_enforced() {
    let reg = TaskSchema::Regression {
        inputs: InputShape::Pair,
        range: Some([0.0, 1.0]),
    };
    let (err, p) = jsonl_error(
        &reg,
        "{\"id\":\"a\",\"text\":\"x\",\"text_pair\":\"y\",\"value\":1.5}\n",
    );
    assert_names(&err, &p, 1, "outside the declared range [0, 1]");
}

#[test]
fn csv_with_field_mapping_loads_like_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "reviews.csv",
        "review,stars,extra\n\"Great, really great\",positive,x\nAwful,negative,y\n",
    );
    let map = FieldMap::parse(&["text=review".into(), "label=stars".into()]).unwrap();
    let ex = read_csv(&p, &sentiment(), &map).unwrap();
    assert_eq!(ex.len(), 2);
    assert_eq!(ex[0].id, "row-1");
    assert_eq!(ex[0].input, Input::Single("Great, really great".into()));
    assert_eq!(ex[1].target, Target::Label(0));
}

#[test]
fn csv_errors_name_the_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "r.csv",
        "review,stars\nfine,positive\nbad,terrible\n",
    );
    let map = FieldMap::parse(&["text=review".into(), "label=stars".into()]).unwrap();
    let err = read_csv(&p, &sentiment(), &map).unwrap_err().to_string();
    assert_names(&err, &p, 3, "unknown label `terrible`");
    let map = FieldMap::parse(&["text=body".into()]).unwrap();
    let err = read_csv(&p, &sentiment(), &map).unwrap_err().to_string();
    assert!(
        err.contains("no column `body`") && err.contains("review, stars"),
        "{err}"
    );
    assert!(FieldMap::parse(&["txt=review".into()])
        .unwrap_err()
        .to_string()
        .contains("unknown field `txt`"));
}

#[test]
fn csv_qa_answers_with_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "qa.csv",
        "q,c,a,s\nWho?,Ada wrote it.,Ada,0\nWhen?,No date here.,,\n",
    );
    let map = FieldMap::parse(&[
        "question=q".into(),
        "context=c".into(),
        "answer=a".into(),
        "answer_start=s".into(),
    ])
    .unwrap();
    let ex = read_csv(&p, &TaskSchema::ExtractiveQa, &map).unwrap();
    assert_eq!(
        ex[0].target,
        Target::Span(Some(AnswerSpan {
            text: "Ada".into(),
            start: 0
        }))
    );
    assert_eq!(ex[1].target, Target::Span(None));
}

fn sample_dataset() -> Dataset {
    let schema = TaskSchema::ExtractiveQa;
    let mut card = DatasetCard::new("sample", schema);
    card.description = "round trip".into();
    let examples = vec![
        Example {
            id: "1".into(),
            input: Input::Qa {
                question: "Où?".into(),
                context: "Le café est à Paris.".into(),
            },
            target: Target::Span(Some(AnswerSpan {
                text: "Paris".into(),
                start: 14,
            })),
            fixed_split: Some(Split::Test),
        },
        Example {
            id: "2".into(),
            input: Input::Qa {
                question: "Why?".into(),
                context: "Nobody knows.".into(),
            },
            target: Target::Span(None),
            fixed_split: None,
        },
    ];
    Dataset { card, examples }
}

#[test]
fn dataset_folder_round_trip_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let ds = sample_dataset();
    ds.save_dir(&dir.path().join("sample")).unwrap();
    let back = Dataset::load_dir(&dir.path().join("sample")).unwrap();
    assert_eq!(back, ds);
    assert_eq!(back.content_hash(), ds.content_hash());
    // Saving again over the existing folder replaces it.
    let mut changed = ds.clone();
    changed.examples.truncate(1);
    changed.save_dir(&dir.path().join("sample")).unwrap();
    assert_eq!(
        Dataset::load_dir(&dir.path().join("sample"))
            .unwrap()
            .examples
            .len(),
        1
    );
    assert_ne!(changed.content_hash(), ds.content_hash());
}

#[test]
fn fixed_split_overrides_the_hash() {
    let ds = sample_dataset();
    assert_eq!(ds.split_of(&ds.examples[0]), Split::Test);
}

#[test]
fn splits_are_deterministic_and_stable_when_data_grows() {
    let cfg = SplitConfig::default();
    let ids: Vec<String> = (0..5000).map(|i| format!("ex-{i}")).collect();
    let first: Vec<Split> = ids.iter().map(|id| cfg.assign(id)).collect();
    // Same seed: same answer, whatever else is in the dataset.
    let again: Vec<Split> = ids.iter().map(|id| cfg.assign(id)).collect();
    assert_eq!(first, again);
    // Pinned values: a change of the hash would silently reshuffle every user's splits.
    assert_eq!(cfg.assign("imdb-00000"), Split::Train);
    assert_eq!(cfg.assign("imdb-00001"), Split::Test);
    assert_eq!(cfg.assign("imdb-00002"), Split::Dev);
    assert!(
        (fute_core::dataset::split::unit_hash(42, "imdb-00001") - 0.0067921432239305135).abs()
            < 1e-15
    );
    let dev = first.iter().filter(|s| **s == Split::Dev).count();
    let test = first.iter().filter(|s| **s == Split::Test).count();
    assert!(
        (400..600).contains(&dev) && (400..600).contains(&test),
        "dev {dev} test {test}"
    );
    // Another seed moves examples.
    let other = SplitConfig { seed: 7, ..cfg };
    assert!(ids.iter().any(|id| other.assign(id) != cfg.assign(id)));
}
