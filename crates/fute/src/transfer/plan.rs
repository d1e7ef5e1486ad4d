//! The plan of a transfer experiment: every setting, every task, and the list of
//! independent jobs with their dependencies (`plan.json` in the run folder).
//!
//! Jobs are ordered so that every dependency comes earlier: all source
//! fine-tunes (base → source, per seed), then the no-transfer baselines
//! (base → target), then the transfers (source model → target), each of which
//! depends on exactly one source job of the same seed.

use std::path::{Path, PathBuf};

use anyhow::Result;
use fute_core::dataset::{Dataset, Split, Target, TaskSchema};
use serde::{Deserialize, Serialize};

use super::invalid;

/// Version of the `plan.json` layout.
pub const PLAN_FORMAT: u32 = 1;

/// The task class of the paper's tables (§3.5): classification/regression or extractive QA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaskClass {
    /// Classification and regression ("CR").
    #[serde(rename = "CR")]
    Cr,
    /// Extractive question answering ("QA").
    #[serde(rename = "QA")]
    Qa,
}

impl TaskClass {
    /// The class of a dataset's schema.
    pub fn of(schema: &TaskSchema) -> Self {
        match schema {
            TaskSchema::ExtractiveQa => Self::Qa,
            _ => Self::Cr,
        }
    }

    /// `CR` or `QA`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cr => "CR",
            Self::Qa => "QA",
        }
    }
}

/// One task of the experiment, as it was when the plan was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Dataset name.
    pub name: String,
    /// CR or QA.
    pub class: TaskClass,
    /// Schema short name (`classification`, `pair-regression`, `extractive-qa`, …).
    pub schema: String,
    /// The dev-split metric the task is scored with (key of
    /// [`crate::finetune::PredictReport::metrics`]): `accuracy`, `macro_f1`,
    /// `pearson` or `f1` (SQuAD F1).
    pub metric: String,
    /// Training examples in the whole train split (what DataSize ranks by).
    pub train_size: usize,
    /// Dev examples in the whole dev split.
    pub dev_size: usize,
    /// sha256 of the dataset's schema and examples ([`Dataset::content_hash`]).
    pub content_hash: String,
}

/// Every setting of the experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The base model as the user named it (`minilm` or a folder).
    pub base: String,
    /// sha256 of the base's `config.json` followed by its `model.safetensors`.
    pub base_hash: String,
    /// Source fine-tunes use at most this many training examples (FULL, capped).
    pub source_limit: Option<usize>,
    /// Target fine-tunes (transfers and baselines) use this many (LIMITED).
    pub target_limit: usize,
    /// Dev examples scored per target (a fixed sample, the same for every job); `None` = all.
    pub eval_limit: Option<usize>,
    /// Epochs of a source fine-tune.
    pub source_epochs: usize,
    /// Epochs of a target fine-tune.
    pub target_epochs: usize,
    /// Peak learning rate (AdamW, linear schedule).
    pub lr: f64,
    /// Examples per batch.
    pub batch_size: usize,
    /// Longest input in tokens.
    pub max_len: usize,
    /// Warm-up fraction.
    pub warmup: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Gradient-norm clip.
    pub max_grad_norm: f64,
    /// Seeds; every job is run once per seed.
    pub seeds: Vec<u64>,
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// base → source (the intermediate model).
    Source,
    /// base → target, no intermediate task (the reference for gains).
    Baseline,
    /// source model → target.
    Transfer,
}

impl JobKind {
    /// `source`, `baseline` or `transfer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Baseline => "baseline",
            Self::Transfer => "transfer",
        }
    }
}

/// One independent unit of work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Position in [`Plan::jobs`] (the `--job` index and the Slurm array index).
    pub index: usize,
    /// File-name-safe identifier (`source-imdb-s0`, `transfer-imdb-to-tweets-s0`).
    pub id: String,
    /// What it does.
    pub kind: JobKind,
    /// The source task (source and transfer jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The target task (baseline and transfer jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Seed of sampling, shuffling, dropout and the fresh head.
    pub seed: u64,
    /// Indices of the jobs that must be done first.
    pub depends_on: Vec<usize>,
}

/// A whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// [`PLAN_FORMAT`].
    pub format: u32,
    /// The git commit of the `fute` binary that made the plan.
    pub commit: String,
    /// Every setting.
    pub settings: Settings,
    /// Every task (each is a source and a target).
    pub tasks: Vec<TaskInfo>,
    /// Every job, dependencies first.
    pub jobs: Vec<Job>,
}

/// The metric a task is scored with. Classification: accuracy, unless the
/// training split is imbalanced (the most frequent label over 60 %), where
/// accuracy rewards predicting the majority class and macro-F1 is used;
/// regression: Pearson; extractive QA: SQuAD F1.
pub fn metric_for(dataset: &Dataset) -> &'static str {
    match &dataset.card.schema {
        TaskSchema::Classification { labels, .. } => {
            let mut counts = vec![0usize; labels.len()];
            let train = dataset.split(Split::Train);
            for ex in &train {
                if let Target::Label(l) = ex.target {
                    counts[l] += 1;
                }
            }
            let most = counts.iter().copied().max().unwrap_or(0);
            if most * 10 > train.len() * 6 {
                "macro_f1"
            } else {
                "accuracy"
            }
        }
        TaskSchema::Regression { .. } => "pearson",
        TaskSchema::ExtractiveQa => "f1",
    }
}

/// Describes one dataset for the plan; an error when it cannot be a target
/// (no dev split to score on, or no training examples).
pub fn task_info(dataset: &Dataset) -> Result<TaskInfo> {
    let name = &dataset.card.name;
    let train_size = dataset.split(Split::Train).len();
    let dev_size = dataset.split(Split::Dev).len();
    if train_size == 0 {
        return Err(invalid(format!(
            "dataset `{name}` has no train split, so it can be neither a source nor a target; \
             leave it out of --tasks"
        )));
    }
    if dev_size == 0 {
        return Err(invalid(format!(
            "dataset `{name}` has no dev split to score transfers on; give its examples \
             \"split\": \"dev\" (or re-import it with a split rule), or leave it out of --tasks"
        )));
    }
    Ok(TaskInfo {
        name: name.clone(),
        class: TaskClass::of(&dataset.card.schema),
        schema: dataset.card.schema.short_name().into(),
        metric: metric_for(dataset).into(),
        train_size,
        dev_size,
        content_hash: dataset.content_hash(),
    })
}

/// The id of the source job of `task` and `seed` (also its model folder's name).
pub fn source_job_id(task: &str, seed: u64) -> String {
    format!("source-{task}-s{seed}")
}

/// Builds the job list for `tasks` (every task is a source and a target) and `seeds`.
pub fn build_jobs(tasks: &[String], seeds: &[u64]) -> Vec<Job> {
    let mut jobs: Vec<Job> = Vec::new();
    let mut push = |kind, source: Option<&String>, target: Option<&String>, seed, deps| {
        let id = match (kind, source, target) {
            (JobKind::Source, Some(s), _) => source_job_id(s, seed),
            (JobKind::Baseline, _, Some(t)) => format!("baseline-{t}-s{seed}"),
            (JobKind::Transfer, Some(s), Some(t)) => format!("transfer-{s}-to-{t}-s{seed}"),
            _ => unreachable!("job kinds are built with their tasks"),
        };
        let index = jobs.len();
        jobs.push(Job {
            index,
            id,
            kind,
            source: source.cloned(),
            target: target.cloned(),
            seed,
            depends_on: deps,
        });
        index
    };
    let mut source_job = std::collections::BTreeMap::new();
    for &seed in seeds {
        for s in tasks {
            let i = push(JobKind::Source, Some(s), None, seed, vec![]);
            source_job.insert((s.clone(), seed), i);
        }
    }
    for &seed in seeds {
        for t in tasks {
            push(JobKind::Baseline, None, Some(t), seed, vec![]);
        }
    }
    for &seed in seeds {
        for t in tasks {
            for s in tasks.iter().filter(|s| *s != t) {
                let dep = source_job[&(s.clone(), seed)];
                push(JobKind::Transfer, Some(s), Some(t), seed, vec![dep]);
            }
        }
    }
    jobs
}

impl Plan {
    /// Path of the plan inside a run folder.
    pub fn path(run_dir: &Path) -> PathBuf {
        run_dir.join("plan.json")
    }

    /// sha256 of the plan's canonical JSON: every job result records it, so a
    /// result made under another plan is never merged.
    pub fn hash(&self) -> String {
        fute_core::fsutil::sha256_hex(&serde_json::to_vec(self).expect("plan serialises"))
    }

    /// The task called `name`.
    pub fn task(&self, name: &str) -> Option<&TaskInfo> {
        self.tasks.iter().find(|t| t.name == name)
    }

    /// Job `index`, or a user error naming the valid range.
    pub fn job(&self, index: usize) -> Result<&Job> {
        self.jobs.get(index).ok_or_else(|| {
            invalid(format!(
                "job index {index} is out of range: this plan has {} jobs, 0..={}; \
                 `fute transfer status RUN_DIR` lists them",
                self.jobs.len(),
                self.jobs.len().saturating_sub(1)
            ))
        })
    }

    /// Reads `RUN_DIR/plan.json`, checking it is a plan this fute understands.
    pub fn load(run_dir: &Path) -> Result<Self> {
        let path = Self::path(run_dir);
        if !path.is_file() {
            return Err(invalid(format!(
                "{} has no plan.json: it is not a transfer run folder; make one with \
                 `fute transfer plan --tasks … --out {}`",
                run_dir.display(),
                run_dir.display()
            )));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| fute_core::Error::io("reading", &path, e))?;
        let plan: Plan = serde_json::from_str(&text).map_err(|e| {
            invalid(format!(
                "{} line {} column {}: not a transfer plan ({e}); it was edited by hand or \
                 written by another program — make a new one with `fute transfer plan`",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        if plan.format != PLAN_FORMAT {
            return Err(invalid(format!(
                "{}: plan format {} but this fute reads format {PLAN_FORMAT}; make a new plan",
                path.display(),
                plan.format
            )));
        }
        plan.check()?;
        Ok(plan)
    }

    /// Internal consistency: indices, ids, dependencies earlier than their job.
    pub fn check(&self) -> Result<()> {
        let path = "plan.json";
        for (i, j) in self.jobs.iter().enumerate() {
            if j.index != i {
                return Err(invalid(format!(
                    "{path}: job {i} says index {}; the plan was edited — make a new one",
                    j.index
                )));
            }
            for &d in &j.depends_on {
                if d >= i {
                    return Err(invalid(format!(
                        "{path}: job {i} ({}) depends on job {d}, which does not come before it",
                        j.id
                    )));
                }
            }
            for t in j.source.iter().chain(&j.target) {
                if self.task(t).is_none() {
                    return Err(invalid(format!(
                        "{path}: job {i} ({}) names task `{t}`, which is not in the plan's tasks",
                        j.id
                    )));
                }
            }
        }
        Ok(())
    }
}
