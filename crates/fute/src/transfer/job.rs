//! Running one job of a plan, and its result file.
//!
//! * source job: base → source task (train split capped by `source_limit`),
//!   saved at `RUN_DIR/models/<job-id>/` for the transfers; its own dev score
//!   is recorded as a sanity check (a source at chance transfers nothing).
//! * baseline job: base → target (`target_limit` training examples).
//! * transfer job: source model → target, the head always fresh (see
//!   [`fute_nn::BuildOptions::fresh_head`]), same settings and
//!   seed as the baseline, so the two differ only in the starting encoder.
//!
//! Target models are scored on the target's dev split (a fixed sample of
//! `eval_limit`, the same for every job) with the task's metric, in points
//! (×100), then deleted; only their scores are kept. Each job writes
//! `RUN_DIR/jobs/<job-id>.json` atomically as its very last step, so a job
//! killed at any moment leaves no result and is simply run again (a fine-tune
//! killed mid-way resumes from its checkpoint, giving the same weights).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use fute_core::dataset::{Dataset, Split};
use serde::{Deserialize, Serialize};

use super::plan::{Job, JobKind, Plan};
use super::{invalid, io};
use crate::finetune::{self, Control, Event, FinetuneOptions};

/// Version of the job-result layout.
pub const RESULT_FORMAT: u32 = 1;

/// What one job produced (`RUN_DIR/jobs/<job-id>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// [`RESULT_FORMAT`].
    pub format: u32,
    /// [`Plan::hash`] of the plan the job belongs to.
    pub plan_hash: String,
    /// Git commit of the `fute` binary that ran the job.
    pub commit: String,
    /// The job.
    pub job: Job,
    /// Metric of the scored task (the target; the source itself for source jobs).
    pub metric: String,
    /// That metric on the dev sample, in points (×100).
    pub score: f64,
    /// Every metric [`finetune::predict`] reports (fractions, as it gives them).
    pub metrics: BTreeMap<String, f64>,
    /// Training examples used.
    pub train_examples: usize,
    /// Dev examples scored.
    pub dev_examples: usize,
    /// Mean training loss of the last epoch.
    pub final_train_loss: Option<f64>,
    /// Seconds spent training (in the process that finished the job).
    pub train_seconds: f64,
    /// Seconds spent scoring.
    pub eval_seconds: f64,
}

/// Where job results live.
pub fn jobs_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("jobs")
}

/// The result file of `job`.
pub fn result_path(run_dir: &Path, job: &Job) -> PathBuf {
    jobs_dir(run_dir).join(format!("{}.json", job.id))
}

/// The model folder a source job saves.
pub fn source_model_dir(run_dir: &Path, job_id: &str) -> PathBuf {
    run_dir.join("models").join(job_id)
}

/// The result of `job` when it is done; an error when the file belongs to
/// another plan or is not a result.
pub fn load_result(run_dir: &Path, plan_hash: &str, job: &Job) -> Result<Option<JobResult>> {
    let path = result_path(run_dir, job);
    if !path.is_file() {
        return Ok(None);
    }
    let mut text = String::new();
    std::fs::File::open(&path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| fute_core::Error::io("reading", &path, e))?;
    let r: JobResult = serde_json::from_str(&text).map_err(|e| {
        invalid(format!(
            "{} line {}: not a job result ({e}); delete it and run the job again",
            path.display(),
            e.line()
        ))
    })?;
    if r.plan_hash != plan_hash || r.job != *job {
        return Err(invalid(format!(
            "{} was made under another plan than {}/plan.json (the plan was replaced after jobs \
             ran); use a fresh run folder for a new plan, or delete {}/jobs/",
            path.display(),
            run_dir.display(),
            run_dir.display()
        )));
    }
    Ok(Some(r))
}

/// sha256 of a model folder's `config.json` followed by its `model.safetensors`.
pub fn model_hash(dir: &Path) -> Result<String> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for f in ["config.json", "model.safetensors"] {
        let p = dir.join(f);
        let mut file =
            std::fs::File::open(&p).map_err(|e| fute_core::Error::io("reading", &p, e))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| fute_core::Error::io("reading", &p, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// What a job needs besides the plan.
pub struct JobEnv<'a> {
    /// The run folder.
    pub run_dir: &'a Path,
    /// The base model folder (resolved from [`super::plan::Settings::base`]).
    pub base_dir: &'a Path,
    /// Loads a dataset by name (the workspace's, else the packaged one).
    pub load_dataset: &'a dyn Fn(&str) -> Result<Dataset>,
    /// Git commit of the running binary.
    pub commit: &'a str,
}

fn load_checked(env: &JobEnv, plan: &Plan, name: &str) -> Result<Dataset> {
    let d = (env.load_dataset)(name)?;
    let want = &plan.task(name).expect("plan checked").content_hash;
    if d.content_hash() != *want {
        return Err(invalid(format!(
            "dataset `{name}` changed since the plan in {} was made (content hash {} ≠ {}); \
             its jobs would not be comparable — make a new plan in a fresh run folder",
            env.run_dir.display(),
            &d.content_hash()[..12],
            &want[..12]
        )));
    }
    Ok(d)
}

/// Runs job `index` of `plan` and writes its result file; returns the result.
/// Its dependencies must be done (a user error says which to run first).
pub fn run_job(
    env: &JobEnv,
    plan: &Plan,
    index: usize,
    on_event: &mut dyn FnMut(&Event) -> Control,
) -> Result<JobResult> {
    let job = plan.job(index)?.clone();
    let s = &plan.settings;
    for &d in &job.depends_on {
        let dep = &plan.jobs[d];
        if load_result(env.run_dir, &plan.hash(), dep)?.is_none() {
            return Err(invalid(format!(
                "job {index} ({}) needs job {d} ({}) to be done first: \
                 `fute transfer run {} --job {d}`",
                job.id,
                dep.id,
                env.run_dir.display()
            )));
        }
    }
    let (start_dir, task_name, limit, epochs) = match job.kind {
        JobKind::Source => {
            let h = model_hash(env.base_dir)?;
            if h != s.base_hash {
                return Err(invalid(format!(
                    "base model {} is not the one the plan was made with (hash {} ≠ {}); \
                     make a new plan for this base in a fresh run folder",
                    env.base_dir.display(),
                    &h[..12],
                    &s.base_hash[..12]
                )));
            }
            (
                env.base_dir.to_path_buf(),
                job.source.clone().expect("source job has a source"),
                s.source_limit,
                s.source_epochs,
            )
        }
        JobKind::Baseline => (
            env.base_dir.to_path_buf(),
            job.target.clone().expect("baseline has a target"),
            Some(s.target_limit),
            s.target_epochs,
        ),
        JobKind::Transfer => {
            let src_job = &plan.jobs[job.depends_on[0]];
            (
                source_model_dir(env.run_dir, &src_job.id),
                job.target.clone().expect("transfer has a target"),
                Some(s.target_limit),
                s.target_epochs,
            )
        }
    };
    let dataset = load_checked(env, plan, &task_name)?;
    let task = plan.task(&task_name).expect("plan checked");
    let work = env.run_dir.join("work").join(&job.id);
    let out = match job.kind {
        JobKind::Source => source_model_dir(env.run_dir, &job.id),
        _ => work.join("model"),
    };
    let opts = FinetuneOptions {
        epochs,
        lr: s.lr,
        batch_size: s.batch_size,
        max_len: s.max_len,
        seed: job.seed,
        limit,
        // No dev evaluation while training: the dev split is the test of the
        // transfer, so it must not also pick the epoch (keep_best).
        eval_limit: Some(0),
        patience: None,
        grad_accum: 1,
        warmup: s.warmup,
        weight_decay: s.weight_decay,
        max_grad_norm: (s.max_grad_norm > 0.0).then_some(s.max_grad_norm),
        checkpoint_every: None,
        max_question_len: fute_nn::tokenize::DEFAULT_MAX_QUESTION_LEN,
        fresh_head: true,
        tuning: finetune::Tuning::Full,
    };
    let started = Instant::now();
    let report = finetune::finetune(&dataset, &start_dir, &out, &opts, on_event)?;
    let train_seconds = started.elapsed().as_secs_f64();
    if report.out.is_none() {
        return Err(invalid(format!("job {index} ({}) was interrupted", job.id)));
    }
    let started = Instant::now();
    let pred = finetune::predict(
        &dataset,
        &out,
        Split::Dev,
        s.eval_limit,
        s.batch_size.max(8) * 2,
        Some(s.max_len),
    )?;
    let eval_seconds = started.elapsed().as_secs_f64();
    let value = *pred.metrics.get(&task.metric).ok_or_else(|| {
        anyhow::anyhow!(
            "predict reported no `{}` for `{}` (internal: metric_for and predict disagree)",
            task.metric,
            task_name
        )
    })?;
    let result = JobResult {
        format: RESULT_FORMAT,
        plan_hash: plan.hash(),
        commit: env.commit.to_string(),
        job: job.clone(),
        metric: task.metric.clone(),
        score: value * 100.0,
        metrics: pred.metrics,
        train_examples: report.train_examples,
        dev_examples: pred.examples,
        final_train_loss: report.train.history.last().map(|r| r.train_loss),
        train_seconds,
        eval_seconds,
    };
    io::write_json(&result_path(env.run_dir, &job), &result)?;
    if job.kind != JobKind::Source {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(result)
}
