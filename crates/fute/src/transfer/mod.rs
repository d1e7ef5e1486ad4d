//! Intermediate-task transfer: the ground truth every source-ranking method is
//! scored against (paper §3.5, §5.1, §7.1; Vu et al. 2020's FULL → LIMITED regime).
//!
//! ```text
//! plan     tasks × seeds → jobs: source (base → s), baseline (base → t),
//!          transfer (source model s → t, fresh head), dependencies first
//! run      one job by index, or all missing ones with N single-threaded workers;
//!          each job writes RUN_DIR/jobs/<id>.json atomically as its last step
//! collect  results → matrix.json / matrix.csv (scores, gains, mean ± std over seeds)
//! slurm    the plan as two sbatch job arrays (sources+baselines, then transfers
//!          with --dependency=afterok)
//! evaluate matrix + ranking methods → ρ / NDCG tables (CR/QA × in-class/all-class),
//!          and a run folder with report.html
//! ```
//!
//! Fine-tuning is [`crate::finetune`] (fute-nn's trainer), with the reference's
//! recipe (AdamW, linear schedule with warm-up, clip 1.0) and the limits of the
//! plan's [`plan::Settings`].

pub mod collect;
pub mod embed_scores;
pub mod evaluate;
pub mod io;
pub mod job;
pub mod logme;
pub mod plan;
pub mod report;
pub mod schedule;
pub mod slurm;

use std::path::Path;

use anyhow::Result;
use fute_core::dataset::Dataset;

pub use collect::{collect, Matrix};
pub use job::{run_job, JobEnv, JobResult};
pub use plan::{Job, JobKind, Plan, Settings, TaskClass, TaskInfo};

pub(crate) fn invalid(msg: impl Into<String>) -> anyhow::Error {
    fute_core::Error::Invalid(msg.into()).into()
}

/// Makes a plan for `datasets` (each is a source and a target) under `settings`
/// (whose `base_hash` is filled in from `base_dir`). Errors a user can fix: fewer
/// than two tasks, a task listed twice, a task without train or dev split, a
/// base folder that cannot be trained.
pub fn make_plan(
    datasets: &[Dataset],
    base_dir: &Path,
    mut settings: Settings,
    commit: &str,
) -> Result<Plan> {
    crate::finetune::check_model_folder(base_dir, "base model")?;
    // Loaded once through the registry: any architecture fute trains, its
    // config and weights checked before a single run is planned.
    fute_nn::models::load(
        base_dir,
        fute_nn::HeadSpec::Regression,
        &fute_nn::BuildOptions::default(),
    )
    .map_err(|e| {
        invalid(format!(
            "base model {} cannot be trained: {e}",
            base_dir.display()
        ))
    })?;
    if datasets.len() < 2 {
        return Err(invalid(
            "a transfer experiment needs at least two tasks (--tasks a,b,…)",
        ));
    }
    let mut names: Vec<String> = Vec::new();
    for d in datasets {
        if names.contains(&d.card.name) {
            return Err(invalid(format!(
                "task `{}` is listed twice in --tasks",
                d.card.name
            )));
        }
        names.push(d.card.name.clone());
    }
    if settings.seeds.is_empty() {
        return Err(invalid("--seeds must be at least 1"));
    }
    if settings.target_limit == 0 || settings.source_limit == Some(0) {
        return Err(invalid(
            "--source-limit and --target-limit must be at least 1",
        ));
    }
    let tasks = datasets
        .iter()
        .map(plan::task_info)
        .collect::<Result<Vec<_>>>()?;
    settings.base_hash = job::model_hash(base_dir)?;
    let jobs = plan::build_jobs(&names, &settings.seeds);
    let p = Plan {
        format: plan::PLAN_FORMAT,
        commit: commit.to_string(),
        settings,
        tasks,
        jobs,
    };
    p.check()?;
    Ok(p)
}

/// Writes `plan` into `run_dir` (creating it). A folder that already holds a
/// different plan is refused (its results would not match); the same plan again
/// is accepted, so `plan` can be rerun safely.
pub fn write_plan(run_dir: &Path, plan: &Plan) -> Result<()> {
    let path = Plan::path(run_dir);
    if path.is_file() {
        let mut old = Plan::load(run_dir)?;
        // A plan made again by a newer binary is the same experiment.
        old.commit.clone_from(&plan.commit);
        if old.hash() != plan.hash() {
            return Err(invalid(format!(
                "{} already holds a different plan ({} jobs, tasks {}); its results would not \
                 match this one — choose another --out, or delete the folder to start over",
                run_dir.display(),
                old.jobs.len(),
                old.tasks
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )));
        }
        return Ok(());
    }
    io::write_json(&path, plan)
}
