//! A store of a handful of fim embeddings on the tiny test BERT, shaped like the demo's:
//! DTEs of sentiment and NLI tasks, a fine-tuned model's MTE, prompted-LLM MTEs (vanilla
//! and chain-of-thought), and one subject whose name is markup (user text is data).

#![allow(dead_code)]

use fute::embed::{embed, EmbedRequest};
use fute::map::{MapOptions, TaskMap};
use fute::methods::fim::{FimComponents, FimConfig};
use fute::methods::surrogate_training::SurrogateTraining;
use fute::methods::Method;
use fute::probe::{ProbeHead, ProbeSet, ProbeTargets};
use fute::report::{Report, RunFolder, Table};
use fute::surrogate::Surrogate;
use fute_core::dataset::{InputShape, TaskSchema};
use fute_core::embedding::{
    EmbeddingKind, EmbeddingRecord, Store, StoredDType, Subject, SubjectKind,
};
use fute_nn::fisher::FisherVariant;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A subject name that would be markup if it were not escaped.
pub const EVIL: &str = "<img src=x onerror=alert(1)>&\"rt\"";

/// A stored subject: name, subject kind, embedding kind, label pattern, classes, extra.
type StoredSubject = (
    &'static str,
    SubjectKind,
    EmbeddingKind,
    Vec<usize>,
    usize,
    BTreeMap<String, Value>,
);

pub fn tiny_bert() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fute-nn/tests/fixtures/tiny-bert")
}

fn method() -> Method {
    Method::Fim(FimConfig {
        training: SurrogateTraining {
            epochs: 1,
            lr: 1e-3,
            batch: 4,
            grad_accum: 1,
            max_len: 16,
            soft_loss: fute_nn::loss::SoftLoss::BceWithLogits,
        },
        variant: FisherVariant::SquareOfMean,
        batch: 4,
        sampled_trials: None,
        components: FimComponents::Encoder,
        layers: None,
        workers: 1,
    })
}

fn schema(labels: &[&str], inputs: InputShape) -> Value {
    serde_json::to_value(TaskSchema::Classification {
        inputs,
        labels: labels.iter().map(|l| l.to_string()).collect(),
    })
    .unwrap()
}

/// Stores 7 embeddings in `<dir>/.fute` and returns them.
pub fn store_with_embeddings(dir: &Path) -> (Store, Vec<EmbeddingRecord>) {
    let store = Store::open(&dir.join(".fute")).unwrap();
    let sur = Surrogate::open(&tiny_bert()).unwrap();
    let m = method();
    let words = [
        "the cat",
        "a dog",
        "the mat sat",
        "cat dog mat",
        "a the cat",
        "dog sat",
        "mat mat",
        "sat cat",
    ];
    let sa = ["negative", "positive"];
    let nli = ["entailment", "neutral", "contradiction"];
    // (name, subject kind, embedding kind, labels pattern, classes, extra)
    let subjects: Vec<StoredSubject> = vec![
        (
            "imdb",
            SubjectKind::Dataset,
            EmbeddingKind::Dte,
            vec![0, 1, 0, 1, 0, 1, 0, 1],
            2,
            BTreeMap::from([("schema".into(), schema(&sa, InputShape::Single))]),
        ),
        (
            EVIL,
            SubjectKind::Dataset,
            EmbeddingKind::Dte,
            vec![0, 1, 1, 1, 0, 1, 0, 0],
            2,
            BTreeMap::from([("schema".into(), schema(&sa, InputShape::Single))]),
        ),
        (
            "snli",
            SubjectKind::Dataset,
            EmbeddingKind::Dte,
            vec![0, 1, 2, 0, 1, 2, 0, 1],
            3,
            BTreeMap::from([("schema".into(), schema(&nli, InputShape::Pair))]),
        ),
        (
            "models/imdb",
            SubjectKind::Model,
            EmbeddingKind::Mte,
            vec![0, 1, 0, 1, 1, 1, 0, 1],
            2,
            BTreeMap::from([("task_class".into(), Value::from("SA"))]),
        ),
        (
            "smollm2:sa#0",
            SubjectKind::PromptedLlm,
            EmbeddingKind::Mte,
            vec![1, 1, 0, 1, 0, 1, 0, 1],
            2,
            BTreeMap::from([
                ("prompt_set".into(), Value::from("sa")),
                ("prompt".into(), Value::from(0)),
            ]),
        ),
        (
            "smollm2:sa#10",
            SubjectKind::PromptedLlm,
            EmbeddingKind::Mte,
            vec![0, 0, 0, 1, 0, 1, 1, 1],
            2,
            BTreeMap::from([
                ("prompt_set".into(), Value::from("sa")),
                ("prompt".into(), Value::from(10)),
            ]),
        ),
        (
            "smollm2:nli#1",
            SubjectKind::PromptedLlm,
            EmbeddingKind::Mte,
            vec![2, 1, 2, 0, 1, 2, 2, 1],
            3,
            BTreeMap::from([
                ("prompt_set".into(), Value::from("nli")),
                ("prompt".into(), Value::from(1)),
            ]),
        ),
    ];
    let mut records = Vec::new();
    for (name, sk, kind, labels, classes, extra) in subjects {
        let probe = ProbeSet {
            inputs: words.iter().map(|w| vec![w.to_string()]).collect(),
            targets: ProbeTargets::Labels(labels),
            head: ProbeHead::Classification(classes),
        };
        let out = embed(
            &store,
            &sur,
            EmbedRequest {
                subject: Subject {
                    kind: sk,
                    name: name.into(),
                    hash: probe.hash(),
                },
                kind,
                probe: &probe,
                method: &m,
                seed: 3,
                corpus: None,
                dtype: StoredDType::F32,
                extra,
            },
            &mut |_| {},
        )
        .unwrap();
        records.push(out.record);
    }
    (store, records)
}

/// A run folder under `dir` with a report holding a table and the map; returns its report.html.
pub fn write_report(dir: &Path) -> (PathBuf, TaskMap) {
    let (store, records) = store_with_embeddings(dir);
    let map = TaskMap::build(&store, &records, None, &MapOptions::default()).unwrap();
    let mut run = RunFolder::create(&dir.join(".fute"), "test").unwrap();
    let mut report = Report::new(format!("Test report for {EVIL}"));
    report.provenance.seeds.insert("embedding".into(), 3);
    report
        .provenance
        .settings
        .insert("prompt".into(), Value::from(format!("Review: {EVIL}")));
    let mut t = Table::new(format!("Subjects ({EVIL})"), &["subject", "kind"]);
    for r in &records {
        t.row(vec![
            r.meta.subject.name.clone(),
            r.meta.kind.as_str().into(),
        ]);
    }
    run.write_table("subjects.csv", &t).unwrap();
    run.time("nothing", || ());
    let s = report.section("Subjects");
    s.text(format!("A paragraph naming {EVIL}."));
    s.table(t);
    report
        .section("Map")
        .map("Tiny map", "map-fim", map.clone());
    (run.write_report(&mut report).unwrap(), map)
}

/// A folder under the build's target directory for artefacts a person may want to look at.
pub fn artefacts() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fute-artefacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}
