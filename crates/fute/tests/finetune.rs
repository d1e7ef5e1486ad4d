//! `fute::finetune`: dataset → fine-tuned HF folder → predictions and metrics,
//! resuming, and the errors a user can make.

use std::path::{Path, PathBuf};

use fute::finetune::{finetune, predict, state_dir_for, FinetuneOptions};
use fute_core::dataset::{
    AnswerSpan, Dataset, DatasetCard, Example, Input, InputShape, Split, Target, TaskSchema,
};
use fute_nn::train::{Control, Event};

fn tiny_bert() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fute-nn/tests/fixtures/tiny-bert")
}

fn quiet() -> impl FnMut(&Event) -> Control {
    |_| Control::Continue
}

const GOOD: [&str; 4] = ["good", "happy", "big", "red"];
const BAD: [&str; 4] = ["bad", "sad", "small", "blue"];
const FILL: [&str; 6] = [
    "the man",
    "a dog",
    "this cat",
    "some music",
    "the game",
    "a city",
];

/// A two-class sentiment toy set the tiny vocabulary can spell: "good" words → positive.
fn sentiment(labels: &[&str], n: usize) -> Dataset {
    let schema = TaskSchema::Classification {
        inputs: InputShape::Single,
        labels: labels.iter().map(|s| s.to_string()).collect(),
    };
    let examples = (0..n)
        .map(|i| {
            let pos = i % 2 == 0;
            let word = if pos { GOOD[i / 2 % 4] } else { BAD[i / 2 % 4] };
            let text = format!("{} is {word}", FILL[i % 6]);
            Example {
                id: format!("ex{i}"),
                input: Input::Single(text),
                target: Target::Label(usize::from(pos)),
                fixed_split: Some(if i % 5 == 4 { Split::Dev } else { Split::Train }),
            }
        })
        .collect();
    Dataset {
        card: DatasetCard::new("toy-sentiment", schema),
        examples,
    }
}

fn opts() -> FinetuneOptions {
    FinetuneOptions {
        epochs: 4,
        lr: 3e-3,
        batch_size: 8,
        max_len: 32,
        seed: 7,
        ..Default::default()
    }
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn finetune_saves_an_hf_folder_that_predicts() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("model");
    let data = sentiment(&["negative", "positive"], 60);
    let r = finetune(&data, &tiny_bert(), &out, &opts(), &mut quiet()).unwrap();
    assert_eq!(r.train_examples, 48);
    assert_eq!(r.dev_examples, 12);
    assert_eq!(r.train.epochs_done, 4);
    assert_eq!(r.out.as_deref(), Some(out.as_path()));
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.txt",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let cfg = read_json(&out.join("config.json"));
    assert_eq!(cfg["num_labels"], 2);
    assert_eq!(cfg["id2label"]["1"], "positive");
    assert_eq!(cfg["label2id"]["negative"], 0);
    assert_eq!(cfg["problem_type"], "single_label_classification");
    assert_eq!(cfg["architectures"][0], "BertForSequenceClassification");
    assert!(!state_dir_for(&out).exists(), "training state left behind");

    let p = predict(&data, &out, Split::Dev, None, 4, None).unwrap();
    assert_eq!(p.examples, 12);
    assert_eq!(p.records.len(), 12);
    for k in ["accuracy", "macro_f1", "mcc"] {
        assert!(p.metrics.contains_key(k), "{k} missing");
    }
    // The accuracy predict reports is the dev score of the kept (best) epoch.
    assert_eq!(Some(p.metrics["accuracy"]), r.train.best_score);
    let rec = &p.records[0];
    assert!(rec["text"].is_string() && rec["logits"].as_array().unwrap().len() == 2);
    assert_eq!(
        p.records.iter().filter(|r| r["pred"] == r["gold"]).count() as f64 / 12.0,
        p.metrics["accuracy"]
    );
}

#[test]
fn an_interrupted_finetune_resumes_to_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    let data = sentiment(&["negative", "positive"], 40);
    let straight = tmp.path().join("straight");
    finetune(&data, &tiny_bert(), &straight, &opts(), &mut quiet()).unwrap();

    let out = tmp.path().join("resumed");
    let r = finetune(
        &data,
        &tiny_bert(),
        &out,
        &opts(),
        &mut |e: &Event| match e {
            Event::Epoch(rec) if rec.epoch == 2 => Control::Stop,
            _ => Control::Continue,
        },
    )
    .unwrap();
    assert!(r.train.interrupted && r.out.is_none());
    assert!(!out.exists(), "an interrupted run must not write the model");
    assert!(state_dir_for(&out).join("state.json").is_file());
    let r = finetune(&data, &tiny_bert(), &out, &opts(), &mut quiet()).unwrap();
    assert!(r.train.resumed);
    let a = std::fs::read(straight.join("model.safetensors")).unwrap();
    let b = std::fs::read(out.join("model.safetensors")).unwrap();
    assert!(a == b, "resumed model differs from the uninterrupted one");
}

#[test]
fn predict_refuses_a_dataset_with_other_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("model");
    let mut o = opts();
    o.epochs = 1;
    finetune(
        &sentiment(&["negative", "positive"], 20),
        &tiny_bert(),
        &out,
        &o,
        &mut quiet(),
    )
    .unwrap();
    let three = sentiment(&["negative", "neutral", "positive"], 20);
    let err = predict(&three, &out, Split::Dev, None, 4, None).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("only the dataset has neutral") && msg.contains("negative, positive"),
        "{msg}"
    );
    assert!(
        err.downcast_ref::<fute_core::Error>().is_some(),
        "not a user error"
    );
}

#[test]
fn empty_splits_and_datasets_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("model");
    let data = sentiment(&["negative", "positive"], 20);
    let mut o = opts();
    o.epochs = 1;
    finetune(&data, &tiny_bert(), &out, &o, &mut quiet()).unwrap();
    // No example has a fixed test split.
    let msg = format!(
        "{:#}",
        predict(&data, &out, Split::Test, None, 4, None).unwrap_err()
    );
    assert!(
        msg.contains("split `test`") && msg.contains("no examples"),
        "{msg}"
    );

    let empty = Dataset {
        card: data.card.clone(),
        examples: vec![],
    };
    let out2 = tmp.path().join("never");
    let msg = format!(
        "{:#}",
        finetune(&empty, &tiny_bert(), &out2, &o, &mut quiet()).unwrap_err()
    );
    assert!(msg.contains("no training examples"), "{msg}");
    assert!(!out2.exists() && !state_dir_for(&out2).exists());
}

#[test]
fn a_base_folder_missing_a_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    std::fs::create_dir(&base).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(tiny_bert().join(f), base.join(f)).unwrap();
    }
    let out = tmp.path().join("model");
    let data = sentiment(&["negative", "positive"], 20);
    let err = finetune(&data, &base, &out, &opts(), &mut quiet()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("tokenizer.json"), "{msg}");
    assert!(err.downcast_ref::<fute_core::Error>().is_some());
    assert!(!out.exists());
    let msg = format!(
        "{:#}",
        predict(&data, &base, Split::Dev, None, 4, None).unwrap_err()
    );
    assert!(msg.contains("tokenizer.json"), "{msg}");
}

#[test]
fn qa_and_regression_datasets_train_and_predict() {
    let tmp = tempfile::tempdir().unwrap();
    let contexts = [
        "paris is the capital city of france",
        "the dog plays with the cat today",
    ];
    let examples: Vec<Example> = (0..20)
        .map(|i| {
            let context = contexts[i % 2].to_string();
            let (question, answer) = if i % 2 == 0 {
                ("what is the capital", Some("paris"))
            } else if i % 4 == 1 {
                ("who plays", Some("the dog"))
            } else {
                ("what is sad", None)
            };
            let target = Target::Span(answer.map(|a| AnswerSpan {
                text: a.into(),
                start: context.find(a).unwrap(),
            }));
            Example {
                id: format!("q{i}"),
                input: Input::Qa {
                    question: question.into(),
                    context,
                },
                target,
                fixed_split: Some(if i < 16 { Split::Train } else { Split::Dev }),
            }
        })
        .collect();
    let qa = Dataset {
        card: DatasetCard::new("toy-qa", TaskSchema::ExtractiveQa),
        examples,
    };
    let out = tmp.path().join("qa");
    let mut o = opts();
    o.epochs = 2;
    finetune(&qa, &tiny_bert(), &out, &o, &mut quiet()).unwrap();
    assert_eq!(
        read_json(&out.join("config.json"))["architectures"][0],
        "BertForQuestionAnswering"
    );
    let p = predict(&qa, &out, Split::Dev, None, 4, None).unwrap();
    assert!(p.metrics.contains_key("exact_match") && p.metrics.contains_key("f1"));
    assert!(p.records.iter().all(|r| r["pred"].is_string()));

    let reg = Dataset {
        card: DatasetCard::new(
            "toy-reg",
            TaskSchema::Regression {
                inputs: InputShape::Pair,
                range: None,
            },
        ),
        examples: (0..20)
            .map(|i| Example {
                id: format!("r{i}"),
                input: Input::Pair(FILL[i % 6].into(), FILL[(i + 1) % 6].into()),
                target: Target::Value((i % 5) as f64),
                fixed_split: Some(if i < 15 { Split::Train } else { Split::Dev }),
            })
            .collect(),
    };
    let out = tmp.path().join("reg");
    finetune(&reg, &tiny_bert(), &out, &o, &mut quiet()).unwrap();
    assert_eq!(
        read_json(&out.join("config.json"))["problem_type"],
        "regression"
    );
    let p = predict(&reg, &out, Split::Dev, None, 4, None).unwrap();
    for k in ["pearson", "spearman", "mse"] {
        assert!(p.metrics[k].is_finite(), "{k}");
    }
}
