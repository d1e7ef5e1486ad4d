//! `fute::transfer`: plan order, the fresh head, matrix building, ranking
//! evaluation and the Slurm scripts, on hand-made inputs and the tiny BERT.

use std::collections::BTreeMap;
use std::path::PathBuf;

use fute::transfer::collect::{build_matrix, Matrix};
use fute::transfer::evaluate::{datasize, evaluate, random, MethodScores, Scope, Scores};
use fute::transfer::plan::{build_jobs, Job, JobKind, Plan, Settings, TaskClass, TaskInfo};
use fute::transfer::slurm::{array_spec, scripts, shell_quote, SlurmOptions};
use fute::transfer::JobResult;
use fute_nn::{BertTaskModel, BuildOptions, HeadSpec, TaskModel};

fn tiny_bert() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fute-nn/tests/fixtures/tiny-bert")
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_dependency_comes_first_and_is_the_right_source() {
    let tasks = names(&["a", "b", "c"]);
    let jobs = build_jobs(&tasks, &[0, 1]);
    // 3 sources + 3 baselines + 6 transfers, per seed.
    assert_eq!(jobs.len(), 2 * (3 + 3 + 6));
    let mut ids = std::collections::BTreeSet::new();
    for (i, j) in jobs.iter().enumerate() {
        assert_eq!(j.index, i);
        assert!(ids.insert(j.id.clone()), "duplicate id {}", j.id);
        match j.kind {
            JobKind::Source | JobKind::Baseline => assert!(j.depends_on.is_empty()),
            JobKind::Transfer => {
                assert_eq!(j.depends_on.len(), 1);
                let d = &jobs[j.depends_on[0]];
                assert!(d.index < i, "{} depends on a later job", j.id);
                assert_eq!(d.kind, JobKind::Source);
                assert_eq!(d.source, j.source);
                assert_eq!(d.seed, j.seed);
                assert_ne!(j.source, j.target);
            }
        }
    }
    // Every ordered pair once per seed.
    let pairs: Vec<_> = jobs
        .iter()
        .filter(|j| j.kind == JobKind::Transfer && j.seed == 1)
        .map(|j| (j.source.clone().unwrap(), j.target.clone().unwrap()))
        .collect();
    assert_eq!(pairs.len(), 6);
    // All jobs without dependencies precede all with: one Slurm array, then the other.
    let first_dependent = jobs.iter().position(|j| !j.depends_on.is_empty()).unwrap();
    assert!(jobs[first_dependent..]
        .iter()
        .all(|j| !j.depends_on.is_empty()));
}

#[test]
fn transfer_heads_are_fresh_even_when_the_shapes_agree() {
    let opts = BuildOptions {
        seed: 3,
        ..Default::default()
    };
    let spec = HeadSpec::Classification { num_labels: 2 };
    // A "source" task model whose head is not the fresh one: train-free, just save
    // a model built with another seed (its head differs).
    let tmp = tempfile::tempdir().unwrap();
    let src = BertTaskModel::from_folder(
        tiny_bert(),
        spec,
        &BuildOptions {
            seed: 99,
            ..Default::default()
        },
    )
    .unwrap();
    let save = fute_nn::checkpoint::SaveOptions {
        labels: Some(names(&["x", "y"])),
        problem_type: None,
        tokenizer_dir: Some(tiny_bert()),
    };
    src.save_pretrained(&tmp.path().join("src"), &save).unwrap();
    let reused = BertTaskModel::from_folder(tmp.path().join("src"), spec, &opts).unwrap();
    let fresh_opts = BuildOptions {
        fresh_head: true,
        ..opts.clone()
    };
    let fresh = BertTaskModel::from_folder(tmp.path().join("src"), spec, &fresh_opts).unwrap();
    let from_base = BertTaskModel::from_folder(tiny_bert(), spec, &opts).unwrap();
    let w = |m: &BertTaskModel, name: &str| -> Vec<f32> {
        m.varmap.data().lock().unwrap()[name]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    // from_folder keeps the source's head; the fresh one is the base's fresh head.
    assert_eq!(
        w(&reused, "classifier.weight"),
        w(&src, "classifier.weight")
    );
    assert_ne!(w(&fresh, "classifier.weight"), w(&src, "classifier.weight"));
    assert_eq!(
        w(&fresh, "classifier.weight"),
        w(&from_base, "classifier.weight")
    );
    // …while the encoder is the source's.
    let enc = "bert.encoder.layer.0.attention.self.query.weight";
    assert_eq!(w(&fresh, enc), w(&src, enc));
    // A head of another width loads too (3 labels from a 2-label source).
    let three = HeadSpec::Classification { num_labels: 3 };
    assert!(BertTaskModel::from_folder(tmp.path().join("src"), three, &opts).is_err());
    BertTaskModel::from_folder(tmp.path().join("src"), three, &fresh_opts).unwrap();
}

fn task(name: &str, class: TaskClass, train: usize) -> TaskInfo {
    TaskInfo {
        name: name.into(),
        class,
        schema: "classification".into(),
        metric: "accuracy".into(),
        train_size: train,
        dev_size: 10,
        content_hash: format!("hash-{name}"),
    }
}

fn settings(seeds: Vec<u64>) -> Settings {
    Settings {
        base: "tiny".into(),
        base_hash: "h".into(),
        source_limit: None,
        target_limit: 10,
        eval_limit: None,
        source_epochs: 1,
        target_epochs: 1,
        lr: 1e-3,
        batch_size: 4,
        max_len: 16,
        warmup: 0.0,
        weight_decay: 0.0,
        max_grad_norm: 1.0,
        seeds,
    }
}

/// A plan over `tasks` with results whose transfer scores come from `score(s, t, seed)`
/// and baselines from `base(t, seed)`.
fn matrix_from(
    tasks: Vec<TaskInfo>,
    seeds: Vec<u64>,
    score: impl Fn(&str, &str, u64) -> f64,
    base: impl Fn(&str, u64) -> f64,
) -> Matrix {
    let names: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
    let plan = Plan {
        format: 1,
        commit: "abc".into(),
        settings: settings(seeds.clone()),
        tasks,
        jobs: build_jobs(&names, &seeds),
    };
    let results: Vec<JobResult> = plan
        .jobs
        .iter()
        .map(|j: &Job| {
            let s = match j.kind {
                JobKind::Source => 90.0,
                JobKind::Baseline => base(j.target.as_deref().unwrap(), j.seed),
                JobKind::Transfer => score(
                    j.source.as_deref().unwrap(),
                    j.target.as_deref().unwrap(),
                    j.seed,
                ),
            };
            JobResult {
                format: 1,
                plan_hash: plan.hash(),
                commit: "abc".into(),
                job: j.clone(),
                metric: "accuracy".into(),
                score: s,
                metrics: BTreeMap::new(),
                train_examples: 10,
                dev_examples: 10,
                final_train_loss: None,
                train_seconds: 1.0,
                eval_seconds: 1.0,
            }
        })
        .collect();
    build_matrix(&plan, &results)
}

#[test]
fn matrix_gains_are_per_seed_differences_with_mean_and_sample_std() {
    let tasks = vec![task("a", TaskClass::Cr, 100), task("b", TaskClass::Cr, 50)];
    // a→b scores 70 and 74 over seeds; b's baselines 60 and 66.
    let m = matrix_from(
        tasks,
        vec![0, 1],
        |s, _, seed| {
            if s == "a" {
                70.0 + 4.0 * seed as f64
            } else {
                50.0
            }
        },
        |t, seed| {
            if t == "b" {
                60.0 + 6.0 * seed as f64
            } else {
                55.0
            }
        },
    );
    let c = m.transfers.iter().find(|c| c.source == "a").unwrap();
    assert_eq!(c.target, "b");
    assert_eq!(c.score.per_seed, vec![70.0, 74.0]);
    assert_eq!(c.score.mean, 72.0);
    assert!((c.score.std - 8f64.sqrt()).abs() < 1e-12);
    assert_eq!(c.gain.per_seed, vec![10.0, 8.0]);
    assert_eq!(c.gain.mean, 9.0);
    assert!((c.gain.std - 2f64.sqrt()).abs() < 1e-12);
    assert_eq!(m.baselines["b"].mean, 63.0);
    let csv = m.to_csv();
    assert!(csv.contains("a,b,CR,CR,accuracy,2,72,"), "{csv}");
    assert!(csv.lines().count() == 1 + 2 + 2);
}

#[test]
fn evaluation_by_hand_on_a_three_task_matrix() {
    // Targets and the truth (score after transfer):
    //   target a: from b 80, from c 60    target b: from a 50, from c 70
    //   target c: from a 40, from b 45
    let tasks = vec![
        task("a", TaskClass::Cr, 300),
        task("b", TaskClass::Cr, 200),
        task("c", TaskClass::Cr, 100),
    ];
    let truth = |s: &str, t: &str| match (s, t) {
        ("b", "a") => 80.0,
        ("c", "a") => 60.0,
        ("a", "b") => 50.0,
        ("c", "b") => 70.0,
        ("a", "c") => 40.0,
        ("b", "c") => 45.0,
        _ => unreachable!(),
    };
    let m = matrix_from(tasks, vec![0], |s, t, _| truth(s, t), |_, _| 30.0);
    let e = evaluate(&m, &[datasize(&m), random(&m)]).unwrap();
    let ds = &e.rows[0];
    let cell = ds
        .cells
        .iter()
        .find(|c| c.class == TaskClass::Cr && c.scope == Scope::InClass)
        .unwrap();
    // DataSize ranks a (300) > b (200) > c (100):
    //   target a: b before c, best b → 1;  target b: a before c, best c → 2;
    //   target c: a before b, best b → 2.   ρ = 5/3.
    assert!((cell.rho.mean - 5.0 / 3.0).abs() < 1e-12);
    assert_eq!(cell.targets, 3);
    assert_eq!(cell.candidates, 2);
    // NDCG of target b (rel 50 then 70, ideal 70 then 50), as the metric computes it.
    let nd_b = fute_core::metrics::ndcg(&[300.0, 100.0], &[50.0, 70.0]) * 100.0;
    let d = e
        .details
        .iter()
        .find(|d| d.method == "DataSize" && d.target == "b")
        .unwrap();
    assert!((d.ndcg - nd_b).abs() < 1e-9);
    assert_eq!(d.best_source, "c");
    assert_eq!(d.predicted_top, "a");
    // Random, two candidates: ρ = 1.5 exactly; no QA cells without QA tasks.
    let r = &e.rows[1];
    assert_eq!(r.cells.len(), 2, "CR in-class and all-class only");
    assert!(r.cells.iter().all(|c| (c.rho.mean - 1.5).abs() < 1e-12));
    // CSV: header + 2 rows; NDCG is ×100.
    let csv = e.to_csv();
    assert_eq!(csv.lines().count(), 3);
    assert!(cell.ndcg.mean > 1.0 && cell.ndcg.mean <= 100.0);
    // The table is data a report can read back.
    let json = serde_json::to_string(&e).unwrap();
    let back: fute::transfer::evaluate::Evaluation = serde_json::from_str(&json).unwrap();
    assert_eq!(back, e);
}

#[test]
fn in_class_and_all_class_candidates_and_missing_scores() {
    let tasks = vec![
        task("a", TaskClass::Cr, 1),
        task("b", TaskClass::Cr, 2),
        task("q", TaskClass::Qa, 3),
        task("r", TaskClass::Qa, 4),
    ];
    let m = matrix_from(tasks, vec![0], |s, _, _| s.len() as f64, |_, _| 0.0);
    let e = evaluate(&m, &[random(&m)]).unwrap();
    let cells = &e.rows[0].cells;
    assert_eq!(cells.len(), 4);
    for c in cells {
        let n = if c.scope == Scope::InClass { 1 } else { 3 };
        assert_eq!(c.candidates, n);
        assert!((c.rho.mean - (n as f64 + 1.0) / 2.0).abs() < 1e-12);
    }
    // A method that covers only CR targets leaves QA out; one that forgets a
    // candidate is an error naming it.
    let mut s = Scores::new();
    s.insert(
        "a".into(),
        [
            ("b".to_string(), 1.0),
            ("q".to_string(), 0.0),
            ("r".to_string(), 0.0),
        ]
        .into(),
    );
    s.insert(
        "b".into(),
        [("a".to_string(), 1.0), ("q".to_string(), 0.0)].into(),
    );
    let partial = MethodScores {
        method: "Partial".into(),
        note: String::new(),
        per_seed: vec![s],
    };
    let err = evaluate(&m, &[partial]).unwrap_err().to_string();
    assert!(
        err.contains("`Partial`") && err.contains("`r`") && err.contains("`b`"),
        "{err}"
    );
}

#[test]
fn slurm_scripts_are_two_arrays_the_second_after_the_first() {
    assert_eq!(array_spec(&[0, 1, 2, 3, 7, 9, 10]), "0-3,7,9-10");
    assert_eq!(array_spec(&[5]), "5");
    assert_eq!(shell_quote("it's"), r"'it'\''s'");
    let tasks = vec![task("a", TaskClass::Cr, 1), task("b", TaskClass::Cr, 1)];
    let plan = Plan {
        format: 1,
        commit: "c".into(),
        settings: settings(vec![0]),
        jobs: build_jobs(&names(&["a", "b"]), &[0]),
        tasks,
    };
    let run = PathBuf::from("/runs/my run");
    let o = SlurmOptions {
        fute: &PathBuf::from("/bin/fute"),
        run_dir: &run,
        workspace: &PathBuf::from("/ws"),
        assets: &PathBuf::from("/assets"),
        partition: None,
        time: "01:00:00",
        mem: "2G",
    };
    let files: BTreeMap<String, String> = scripts(&plan, &o).into_iter().collect();
    assert!(files["first.sbatch"].contains("#SBATCH --array=0-3\n"));
    assert!(files["transfers.sbatch"].contains("#SBATCH --array=4-5\n"));
    assert!(files["transfers.sbatch"].contains("'/runs/my run' --job \"$SLURM_ARRAY_TASK_ID\""));
    assert!(files["submit.sh"].contains("--dependency=afterok:\"$first\""));
    assert!(files["first.sbatch"].contains("export CANDLE_NUM_THREADS=1"));
}
