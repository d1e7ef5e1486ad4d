//! Merging job results into the transfer matrix (`matrix.json` + `matrix.csv`).
//!
//! For every target t and seed k: the baseline score b_{t,k} (base → t) and,
//! for every source s ≠ t, the transfer score p_{s→t,k}; the gain is
//! p_{s→t,k} − b_{t,k} in points (same seed, so the two runs share the target
//! sample, the fresh head and the data order). Means and standard deviations
//! are over seeds (sample standard deviation, n − 1; 0 for one seed).
//!
//! The matrix holds only what the jobs computed and the settings, never
//! timings or paths, so the same plan run anywhere (locally, as a Slurm array,
//! resumed after a kill) gives byte-identical files.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::job::{load_result, JobResult};
use super::plan::{JobKind, Plan, Settings, TaskClass, TaskInfo};
use super::{invalid, io};

/// Version of the matrix layout.
pub const MATRIX_FORMAT: u32 = 1;

/// Scores of one cell over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedScores {
    /// One value per seed, in [`Settings::seeds`] order (points).
    pub per_seed: Vec<f64>,
    /// Mean over seeds.
    pub mean: f64,
    /// Sample standard deviation over seeds (0 for one seed).
    pub std: f64,
}

impl SeedScores {
    /// Mean and sample standard deviation of `values`.
    pub fn new(values: Vec<f64>) -> Self {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Self {
            per_seed: values,
            mean,
            std,
        }
    }
}

/// One source → target cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferCell {
    /// Source task.
    pub source: String,
    /// Target task.
    pub target: String,
    /// Target score after transfer (points).
    pub score: SeedScores,
    /// Score minus the same seed's baseline (points).
    pub gain: SeedScores,
}

/// The ground truth of an intermediate-task transfer experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    /// [`MATRIX_FORMAT`].
    pub format: u32,
    /// Git commit of the `fute` that made the plan.
    pub plan_commit: String,
    /// Git commits of the binaries that ran the jobs (sorted, distinct).
    pub job_commits: Vec<String>,
    /// Every setting, seeds included.
    pub settings: Settings,
    /// Every task, with its class, metric and sizes.
    pub tasks: Vec<TaskInfo>,
    /// Each source model's score on its own dev sample (points), by task.
    pub source_scores: BTreeMap<String, SeedScores>,
    /// No-transfer baseline per target (points).
    pub baselines: BTreeMap<String, SeedScores>,
    /// Every source → target cell, sorted by (target, source).
    pub transfers: Vec<TransferCell>,
}

impl Matrix {
    /// The task called `name`.
    pub fn task(&self, name: &str) -> Option<&TaskInfo> {
        self.tasks.iter().find(|t| t.name == name)
    }

    /// The cells whose target is `target`.
    pub fn cells_for(&self, target: &str) -> Vec<&TransferCell> {
        self.transfers
            .iter()
            .filter(|c| c.target == target)
            .collect()
    }

    /// The class of task `name`.
    pub fn class_of(&self, name: &str) -> Option<TaskClass> {
        self.task(name).map(|t| t.class)
    }

    /// Reads a `matrix.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            invalid(format!(
                "cannot read the matrix {}: {e}; make it with `fute transfer collect RUN_DIR`",
                path.display()
            ))
        })?;
        let m: Matrix = serde_json::from_str(&text).map_err(|e| {
            invalid(format!(
                "{} line {} column {}: not a transfer matrix ({e})",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        if m.format != MATRIX_FORMAT {
            return Err(invalid(format!(
                "{}: matrix format {} but this fute reads {MATRIX_FORMAT}",
                path.display(),
                m.format
            )));
        }
        Ok(m)
    }

    /// The matrix as CSV: one row per cell (baseline rows have source `-`),
    /// every number with full precision.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "source,target,source_class,target_class,metric,seeds,score_mean,score_std,\
             baseline_mean,baseline_std,gain_mean,gain_std,score_per_seed\n",
        );
        let seeds = self.settings.seeds.len();
        let per_seed = |s: &SeedScores| {
            s.per_seed
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(";")
        };
        for t in &self.tasks {
            let Some(b) = self.baselines.get(&t.name) else {
                continue;
            };
            out.push_str(&format!(
                "-,{},-,{},{},{seeds},{},{},{},{},0,0,{}\n",
                t.name,
                t.class.as_str(),
                t.metric,
                b.mean,
                b.std,
                b.mean,
                b.std,
                per_seed(b)
            ));
            for c in self.cells_for(&t.name) {
                let sc = self.class_of(&c.source).map_or("?", TaskClass::as_str);
                out.push_str(&format!(
                    "{},{},{sc},{},{},{seeds},{},{},{},{},{},{},{}\n",
                    c.source,
                    c.target,
                    t.class.as_str(),
                    t.metric,
                    c.score.mean,
                    c.score.std,
                    b.mean,
                    b.std,
                    c.gain.mean,
                    c.gain.std,
                    per_seed(&c.score)
                ));
            }
        }
        out
    }
}

/// Every job's result, or a user error listing the jobs still to run.
pub fn load_all(run_dir: &Path, plan: &Plan) -> Result<Vec<JobResult>> {
    let hash = plan.hash();
    let mut done = Vec::new();
    let mut missing = Vec::new();
    for j in &plan.jobs {
        match load_result(run_dir, &hash, j)? {
            Some(r) => done.push(r),
            None => missing.push(format!("{} ({})", j.index, j.id)),
        }
    }
    if !missing.is_empty() {
        let shown: Vec<_> = missing.iter().take(8).cloned().collect();
        return Err(invalid(format!(
            "{} of {} jobs have no result yet: {}{}; run them with `fute transfer run {}`",
            missing.len(),
            plan.jobs.len(),
            shown.join(", "),
            if missing.len() > 8 { ", …" } else { "" },
            run_dir.display()
        )));
    }
    Ok(done)
}

/// Builds the matrix from a complete set of results.
pub fn build_matrix(plan: &Plan, results: &[JobResult]) -> Matrix {
    let seeds = &plan.settings.seeds;
    let seed_pos = |s: u64| seeds.iter().position(|&x| x == s).expect("seed in plan");
    let n = seeds.len();
    let mut source: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut base: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut trans: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for r in results {
        let k = seed_pos(r.job.seed);
        let slot = match r.job.kind {
            JobKind::Source => source
                .entry(r.job.source.clone().expect("source"))
                .or_insert_with(|| vec![f64::NAN; n]),
            JobKind::Baseline => base
                .entry(r.job.target.clone().expect("target"))
                .or_insert_with(|| vec![f64::NAN; n]),
            JobKind::Transfer => trans
                .entry((
                    r.job.target.clone().expect("target"),
                    r.job.source.clone().expect("source"),
                ))
                .or_insert_with(|| vec![f64::NAN; n]),
        };
        slot[k] = r.score;
    }
    let transfers = trans
        .into_iter()
        .map(|((target, source), scores)| {
            let b = &base[&target];
            let gains = scores.iter().zip(b).map(|(p, q)| p - q).collect();
            TransferCell {
                source,
                target,
                score: SeedScores::new(scores),
                gain: SeedScores::new(gains),
            }
        })
        .collect();
    let mut job_commits: Vec<String> = results.iter().map(|r| r.commit.clone()).collect();
    job_commits.sort();
    job_commits.dedup();
    Matrix {
        format: MATRIX_FORMAT,
        plan_commit: plan.commit.clone(),
        job_commits,
        settings: plan.settings.clone(),
        tasks: plan.tasks.clone(),
        source_scores: source
            .into_iter()
            .map(|(k, v)| (k, SeedScores::new(v)))
            .collect(),
        baselines: base
            .into_iter()
            .map(|(k, v)| (k, SeedScores::new(v)))
            .collect(),
        transfers,
    }
}

/// Mean seconds per job kind (training + scoring), for planning bigger runs.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    /// `source`, `baseline` or `transfer`.
    pub kind: String,
    /// Jobs of that kind.
    pub jobs: usize,
    /// Mean seconds training.
    pub mean_train_seconds: f64,
    /// Mean seconds scoring.
    pub mean_eval_seconds: f64,
    /// Total seconds (training + scoring) of all jobs of the kind.
    pub total_seconds: f64,
}

/// Per-kind timings of the results (not part of the matrix: they vary run to run).
pub fn timings(results: &[JobResult]) -> Vec<Timing> {
    [JobKind::Source, JobKind::Baseline, JobKind::Transfer]
        .into_iter()
        .filter_map(|kind| {
            let rs: Vec<_> = results.iter().filter(|r| r.job.kind == kind).collect();
            if rs.is_empty() {
                return None;
            }
            let n = rs.len() as f64;
            let train: f64 = rs.iter().map(|r| r.train_seconds).sum();
            let eval: f64 = rs.iter().map(|r| r.eval_seconds).sum();
            Some(Timing {
                kind: kind.as_str().into(),
                jobs: rs.len(),
                mean_train_seconds: train / n,
                mean_eval_seconds: eval / n,
                total_seconds: train + eval,
            })
        })
        .collect()
}

/// Loads every result of the run, writes `matrix.json`, `matrix.csv` and
/// `timings.json` into the run folder, and returns the matrix and timings.
pub fn collect(run_dir: &Path, plan: &Plan) -> Result<(Matrix, Vec<Timing>)> {
    let results = load_all(run_dir, plan)?;
    let m = build_matrix(plan, &results);
    io::write_json(&run_dir.join("matrix.json"), &m)?;
    io::write_atomic(&run_dir.join("matrix.csv"), m.to_csv().as_bytes())?;
    let t = timings(&results);
    io::write_json(&run_dir.join("timings.json"), &t)?;
    Ok((m, t))
}
