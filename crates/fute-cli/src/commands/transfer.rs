//! `fute transfer plan|run|status|collect|slurm|evaluate|scores`: the intermediate-task
//! transfer experiment (ground truth for source ranking) and its evaluation.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::train::resolve_model;
use super::{print_json, user};
use crate::table::Table;
use crate::Context;
use clap::{Args, Subcommand};
use fute::transfer::evaluate::{self as ev, MethodScores};
use fute::transfer::schedule::{blocked, next_ready, JobState};
use fute::transfer::{self, job, Plan, Settings};

/// The git commit this binary was built from.
pub const COMMIT: &str = env!("FUTE_GIT_COMMIT");

/// Transfer sub-commands.
#[derive(Subcommand)]
pub enum TransferCmd {
    /// Write plan.json: every source fine-tune, baseline and transfer job, with dependencies.
    ///
    /// Every task is both a source and a target. Per seed: one source job per task
    /// (base → task, at most --source-limit examples), one baseline per task (base → task,
    /// --target-limit examples) and one transfer per ordered pair (source model → target,
    /// fresh head, --target-limit examples). Targets are scored on their dev split.
    ///
    /// Examples:
    ///   fute transfer plan --tasks imdb,rotten-tomatoes,tweets,spam-assassin --base minilm \
    ///       --source-limit 1000 --target-limit 200 --seeds 1 --max-len 64 --out runs/cr-small
    ///   fute transfer run runs/cr-small            # all missing jobs, 2 workers
    ///   fute transfer collect runs/cr-small        # matrix.csv + matrix.json
    #[command(verbatim_doc_comment)]
    Plan(PlanArgs),
    /// Run one job (--job I) or every job without a result (N single-threaded workers).
    ///
    /// A rerun skips the jobs that are done; a killed job loses only itself (a killed
    /// fine-tune resumes from its last epoch checkpoint).
    Run(RunArgs),
    /// List the plan's jobs and which are done.
    Status {
        /// The run folder.
        run_dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Merge the job results into RUN_DIR/matrix.json and matrix.csv (and timings.json).
    Collect {
        /// The run folder.
        run_dir: PathBuf,
        /// Print the matrix as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write Slurm job arrays for the plan into RUN_DIR/slurm/ (submit with slurm/submit.sh).
    Slurm(SlurmArgs),
    /// Score source-ranking methods against a matrix: ρ and NDCG, CR/QA × in-class/all-class.
    ///
    /// Writes evaluation.json and evaluation.csv next to the matrix, and a run folder
    /// .fute/runs/<run-id>/ with report.html (the table, the ground truth, each
    /// method's picks, provenance) and the raw CSV/JSON. Built-in methods:
    /// datasize, random (exact expectation), logme (needs the run's source models, or a
    /// scores/logme.json cached by an earlier evaluate). Any other method — an embedding
    /// similarity, a new idea — comes in as a --scores FILE.json:
    ///   {"method": "TextEmb", "note": "…", "per_seed": [{"TARGET": {"SOURCE": score, …}, …}]}
    /// (one table for all seeds, or one per seed; higher = better source).
    ///
    /// Examples:
    ///   fute transfer evaluate --matrix runs/cr-small/matrix.json
    ///   fute transfer evaluate --matrix results/transfer/cr-small/matrix.json --scores textemb.json
    #[command(verbatim_doc_comment)]
    Evaluate(EvaluateArgs),
    /// Compute the embedding rows (FUTE + TaskEmb, FUTE + TuPaTE, TextEmb) on a run's
    /// source models into RUN_DIR/scores/*.json, for `evaluate --scores`.
    ///
    /// FUTE rows compare each target's DTE with each source model's MTE on the corpus U,
    /// both through the surrogate (one table per seed: the source models differ);
    /// TextEmb compares the target's DTE with each source dataset's DTE. Every
    /// embedding is kept in the workspace's store, so a rerun computes nothing.
    ///
    /// Example:
    ///   fute transfer scores runs/cr-small --corpus u --u-limit 64 --dte-limit 64
    #[command(verbatim_doc_comment)]
    Scores(super::transfer_scores::ScoresArgs),
}

/// Arguments of `fute transfer evaluate`.
#[derive(Args)]
pub struct EvaluateArgs {
    /// The matrix (RUN_DIR/matrix.json from `fute transfer collect`).
    #[arg(long, value_name = "FILE")]
    pub matrix: PathBuf,
    /// Built-in methods, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "datasize,random,logme",
          value_parser = ["datasize", "random", "logme"])]
    pub methods: Vec<String>,
    /// Precomputed method scores (JSON; see above), repeatable.
    #[arg(long, value_name = "FILE")]
    pub scores: Vec<PathBuf>,
    /// Recompute LogME even when scores/logme.json exists.
    #[arg(long)]
    pub recompute: bool,
    /// Print the evaluation as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `fute transfer plan`.
#[derive(Args)]
pub struct PlanArgs {
    /// Tasks, comma-separated (each is a source and a target; see `fute data list`).
    #[arg(long, value_delimiter = ',', required = true)]
    pub tasks: Vec<String>,
    /// Base model every job starts from: a BERT folder or an asset name.
    #[arg(long, default_value = "minilm", value_name = "DIR|ASSET")]
    pub base: String,
    /// Source fine-tunes use at most N training examples (a seeded sample).
    #[arg(long, value_name = "N")]
    pub source_limit: Option<usize>,
    /// Target fine-tunes use N training examples (the LIMITED regime; Vu et al.: 1000).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub target_limit: usize,
    /// Score each target on at most N dev examples (the same sample for every job).
    #[arg(long, value_name = "N")]
    pub eval_limit: Option<usize>,
    /// Number of seeds (0, 1, …, K−1).
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub seeds: u64,
    /// Epochs of each source fine-tune.
    #[arg(long, default_value_t = 3)]
    pub source_epochs: usize,
    /// Epochs of each target fine-tune.
    #[arg(long, default_value_t = 3)]
    pub target_epochs: usize,
    /// Peak learning rate (AdamW; the reference's CR recipe: 2e-5).
    #[arg(long, default_value_t = 2e-5)]
    pub lr: f64,
    /// Examples per batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Longest input in tokens.
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// The run folder to create.
    #[arg(long, value_name = "RUN_DIR")]
    pub out: PathBuf,
}

/// Arguments of `fute transfer run`.
#[derive(Args)]
pub struct RunArgs {
    /// The run folder (made by `fute transfer plan`).
    pub run_dir: PathBuf,
    /// Run only job I (what a Slurm array task does).
    #[arg(long, value_name = "I")]
    pub job: Option<usize>,
    /// Parallel worker processes, each single-threaded (CANDLE_NUM_THREADS=1).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub workers: usize,
}

/// Arguments of `fute transfer slurm`.
#[derive(Args)]
pub struct SlurmArgs {
    /// The run folder (on storage every node sees).
    pub run_dir: PathBuf,
    /// Slurm partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit per array task.
    #[arg(long, default_value = "04:00:00")]
    pub time: String,
    /// Memory per array task.
    #[arg(long, default_value = "4G")]
    pub mem: String,
    /// Submit right away with sbatch (needs Slurm's client tools and SLURM_CONF or a cluster).
    #[arg(long)]
    pub submit: bool,
}

/// Runs a transfer sub-command.
pub fn run(ctx: &Context, cmd: TransferCmd) -> anyhow::Result<()> {
    match cmd {
        TransferCmd::Plan(a) => plan(ctx, a),
        TransferCmd::Run(a) => match a.job {
            Some(i) => run_one(ctx, &a.run_dir, i),
            None => run_all(ctx, &a.run_dir, a.workers),
        },
        TransferCmd::Status { run_dir, json } => status(&run_dir, json),
        TransferCmd::Collect { run_dir, json } => collect(&run_dir, json),
        TransferCmd::Slurm(a) => slurm(ctx, a),
        TransferCmd::Evaluate(a) => evaluate(ctx, a),
        TransferCmd::Scores(a) => super::transfer_scores::scores(ctx, a),
    }
}

fn plan(ctx: &Context, a: PlanArgs) -> anyhow::Result<()> {
    if a.batch == 0 || a.source_epochs == 0 || a.target_epochs == 0 || a.max_len == 0 {
        return Err(user(
            "--batch, --source-epochs, --target-epochs and --max-len must be at least 1",
        ));
    }
    let base_dir = resolve_model(ctx, &a.base)?;
    let datasets = a
        .tasks
        .iter()
        .map(|t| ctx.workspace.load_dataset(t))
        .collect::<Result<Vec<_>, _>>()?;
    let settings = Settings {
        base: a.base.clone(),
        base_hash: String::new(),
        source_limit: a.source_limit,
        target_limit: a.target_limit,
        eval_limit: a.eval_limit,
        source_epochs: a.source_epochs,
        target_epochs: a.target_epochs,
        lr: a.lr,
        batch_size: a.batch,
        max_len: a.max_len,
        warmup: 0.05,
        weight_decay: 0.01,
        max_grad_norm: 1.0,
        seeds: (0..a.seeds).collect(),
    };
    let p = transfer::make_plan(&datasets, &base_dir, settings, COMMIT)?;
    transfer::write_plan(&a.out, &p)?;
    let count = |k| p.jobs.iter().filter(|j| j.kind == k).count();
    println!(
        "planned {} jobs in {}: {} source fine-tunes, {} baselines, {} transfers ({} tasks × {} seeds)",
        p.jobs.len(),
        a.out.display(),
        count(transfer::JobKind::Source),
        count(transfer::JobKind::Baseline),
        count(transfer::JobKind::Transfer),
        p.tasks.len(),
        p.settings.seeds.len()
    );
    let mut t = Table::new(&["task", "class", "metric", "train", "dev"]);
    for task in &p.tasks {
        t.row(vec![
            task.name.clone(),
            task.class.as_str().into(),
            task.metric.clone(),
            task.train_size.to_string(),
            task.dev_size.to_string(),
        ]);
    }
    print!("{}", t.render());
    println!(
        "next: fute transfer run {}   (or: fute transfer slurm {})",
        a.out.display(),
        a.out.display()
    );
    Ok(())
}

fn base_dir_of(ctx: &Context, plan: &Plan) -> anyhow::Result<PathBuf> {
    resolve_model(ctx, &plan.settings.base)
}

fn run_one(ctx: &Context, run_dir: &Path, index: usize) -> anyhow::Result<()> {
    let p = Plan::load(run_dir)?;
    let j = p.job(index)?.clone();
    if let Some(r) = job::load_result(run_dir, &p.hash(), &j)? {
        println!(
            "job {index} ({}) is already done: score {:.2}",
            j.id, r.score
        );
        return Ok(());
    }
    let base = base_dir_of(ctx, &p)?;
    let load = |name: &str| -> anyhow::Result<fute_core::dataset::Dataset> {
        Ok(ctx.workspace.load_dataset(name)?)
    };
    let env = transfer::JobEnv {
        run_dir,
        base_dir: &base,
        load_dataset: &load,
        commit: COMMIT,
    };
    let started = Instant::now();
    // Plain lines on stderr (a worker's log, a Slurm task's output): a tenth of
    // the steps at a time, with the rate and the time left.
    let mut every = 1;
    let mut on_event =
        |e: &fute::finetune::Event| {
            use fute::finetune::Event;
            match e {
                Event::Start {
                    total_steps,
                    examples_per_epoch,
                    resumed,
                    ..
                } => {
                    every = (total_steps / 10).max(1);
                    eprintln!(
                    "job {index} ({}): training on {examples_per_epoch} examples, {total_steps} \
                     steps{}",
                    j.id,
                    if *resumed { " (resumed from a checkpoint)" } else { "" }
                );
                }
                Event::Step {
                    step,
                    total_steps,
                    loss,
                    elapsed,
                    ..
                } if step % every == 0 || step == total_steps => {
                    let per_step = elapsed / (*step).max(1) as f64;
                    eprintln!(
                        "  step {step}/{total_steps}  loss {loss:.4}  {per_step:.2} s/step  \
                     eta {:.0} s",
                        per_step * (total_steps - step) as f64
                    );
                }
                Event::Epoch(r) => eprintln!("  epoch {}: train loss {:.4}", r.epoch, r.train_loss),
                _ => {}
            }
            fute::finetune::Control::Continue
        };
    let r = transfer::run_job(&env, &p, index, &mut on_event)?;
    println!(
        "job {index} ({}) done: {} {:.2} on {} dev examples, {} train examples, {:.0} s",
        j.id,
        r.metric,
        r.score,
        r.dev_examples,
        r.train_examples,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn job_states(run_dir: &Path, p: &Plan) -> anyhow::Result<Vec<JobState>> {
    let hash = p.hash();
    p.jobs
        .iter()
        .map(|j| {
            Ok(if job::load_result(run_dir, &hash, j)?.is_some() {
                JobState::Done
            } else {
                JobState::Todo
            })
        })
        .collect()
}

/// Starts `fute transfer run RUN --job I` as a single-threaded child whose
/// stderr goes to RUN/logs/<id>.log; the child dies with this process.
fn spawn_worker(ctx: &Context, run_dir: &Path, p: &Plan, index: usize) -> anyhow::Result<Child> {
    let exe = std::env::current_exe()?;
    let logs = run_dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| fute_core::Error::io("creating", &logs, e))?;
    let log_path = logs.join(format!("{}.log", p.jobs[index].id));
    let log = std::fs::File::create(&log_path)
        .map_err(|e| fute_core::Error::io("creating", &log_path, e))?;
    let workspace = ctx
        .workspace
        .state_dir()
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut cmd = Command::new(exe);
    cmd.arg("--workspace")
        .arg(workspace)
        .arg("--assets")
        .arg(ctx.workspace.assets_root())
        .args(["transfer", "run"])
        .arg(run_dir)
        .arg("--job")
        .arg(index.to_string())
        .env("CANDLE_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the
        // child when this process dies, so a killed runner leaves no orphan worker.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    Ok(cmd.spawn()?)
}

fn run_all(ctx: &Context, run_dir: &Path, workers: usize) -> anyhow::Result<()> {
    if workers == 0 {
        return Err(user("--workers must be at least 1"));
    }
    let p = Plan::load(run_dir)?;
    base_dir_of(ctx, &p)?;
    let mut state = job_states(run_dir, &p)?;
    let total = p.jobs.len();
    let already = state.iter().filter(|s| **s == JobState::Done).count();
    if already == total {
        println!(
            "all {total} jobs are done; next: fute transfer collect {}",
            run_dir.display()
        );
        return Ok(());
    }
    eprintln!(
        "{} of {total} jobs done; running {} with {workers} single-threaded workers \
         (logs in {}/logs/)",
        already,
        total - already,
        run_dir.display()
    );
    let pb = super::progress_bar("transfer jobs");
    pb.set_length(total as u64);
    pb.set_position(already as u64);
    pb.reset_eta();
    let say = |line: String| {
        if pb.is_hidden() {
            eprintln!("{line}");
        } else {
            pb.println(line);
        }
    };
    let hash = p.hash();
    let mut running: Vec<(usize, Child, Instant)> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    loop {
        while running.len() < workers {
            let Some(i) = next_ready(&p, &state) else {
                break;
            };
            state[i] = JobState::Running;
            running.push((i, spawn_worker(ctx, run_dir, &p, i)?, Instant::now()));
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut k = 0;
        while k < running.len() {
            let Some(status) = running[k].1.try_wait()? else {
                k += 1;
                continue;
            };
            let (i, _, started) = running.swap_remove(k);
            let j = &p.jobs[i];
            let secs = started.elapsed().as_secs_f64();
            match job::load_result(run_dir, &hash, j)? {
                Some(r) if status.success() => {
                    state[i] = JobState::Done;
                    pb.inc(1);
                    say(format!(
                        "done {} ({}/{total}): {} {:.2} in {secs:.0} s",
                        j.id,
                        state.iter().filter(|s| **s == JobState::Done).count(),
                        r.metric,
                        r.score
                    ));
                }
                _ => {
                    state[i] = JobState::Failed;
                    let log = run_dir.join("logs").join(format!("{}.log", j.id));
                    let tail = std::fs::read_to_string(&log)
                        .unwrap_or_default()
                        .lines()
                        .filter(|l| l.starts_with("error") || l.contains("caused by"))
                        .collect::<Vec<_>>()
                        .join(" / ");
                    say(format!("FAILED {} ({status}): {tail}", j.id));
                    failed.push(format!("{} ({}; log {})", j.id, status, log.display()));
                }
            }
        }
    }
    pb.finish_and_clear();
    let stuck = blocked(&p, &state);
    if !failed.is_empty() {
        return Err(user(format!(
            "{} job(s) failed: {}{}; fix the cause and rerun `fute transfer run {}` \
             (done jobs are kept)",
            failed.len(),
            failed.join(", "),
            if stuck.is_empty() {
                String::new()
            } else {
                format!("; {} job(s) waiting for them were not started", stuck.len())
            },
            run_dir.display()
        )));
    }
    println!(
        "all {total} jobs are done; next: fute transfer collect {}",
        run_dir.display()
    );
    Ok(())
}

fn status(run_dir: &Path, json: bool) -> anyhow::Result<()> {
    let p = Plan::load(run_dir)?;
    let state = job_states(run_dir, &p)?;
    if json {
        let rows: Vec<_> = p
            .jobs
            .iter()
            .map(|j| serde_json::json!({"job": j, "done": state[j.index] == JobState::Done}))
            .collect();
        return print_json(&rows);
    }
    let mut t = Table::new(&["index", "job", "depends on", "done"]);
    for j in &p.jobs {
        t.row(vec![
            j.index.to_string(),
            j.id.clone(),
            j.depends_on
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            if state[j.index] == JobState::Done {
                "yes".into()
            } else {
                "no".into()
            },
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

fn collect(run_dir: &Path, json: bool) -> anyhow::Result<()> {
    let p = Plan::load(run_dir)?;
    let (m, timings) = transfer::collect(run_dir, &p)?;
    if json {
        return print_json(&m);
    }
    let mut t = Table::new(&[
        "target",
        "metric",
        "baseline",
        "best source",
        "score",
        "gain",
    ]);
    for task in &m.tasks {
        let b = &m.baselines[&task.name];
        let cells = m.cells_for(&task.name);
        let best = cells
            .iter()
            .max_by(|a, b| a.score.mean.total_cmp(&b.score.mean));
        let fmt = |s: &fute::transfer::collect::SeedScores| {
            if s.per_seed.len() > 1 {
                format!("{:.2} ± {:.2}", s.mean, s.std)
            } else {
                format!("{:.2}", s.mean)
            }
        };
        t.row(vec![
            task.name.clone(),
            task.metric.clone(),
            fmt(b),
            best.map_or("-".into(), |c| c.source.clone()),
            best.map_or("-".into(), |c| fmt(&c.score)),
            best.map_or("-".into(), |c| fmt(&c.gain)),
        ]);
    }
    print!("{}", t.render());
    for tm in &timings {
        println!(
            "{:>8}: {} jobs, mean {:.1} s training + {:.1} s scoring",
            tm.kind, tm.jobs, tm.mean_train_seconds, tm.mean_eval_seconds
        );
    }
    println!(
        "wrote {0}/matrix.json, {0}/matrix.csv, {0}/timings.json",
        run_dir.display()
    );
    Ok(())
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

fn slurm(ctx: &Context, a: SlurmArgs) -> anyhow::Result<()> {
    let p = Plan::load(&a.run_dir)?;
    let run_dir = absolute(&a.run_dir)?;
    let exe = std::env::current_exe()?;
    let workspace = absolute(
        ctx.workspace
            .state_dir()
            .parent()
            .unwrap_or_else(|| Path::new(".")),
    )?;
    let assets = absolute(ctx.workspace.assets_root())?;
    let o = transfer::slurm::SlurmOptions {
        fute: &exe,
        run_dir: &run_dir,
        workspace: &workspace,
        assets: &assets,
        partition: a.partition.as_deref(),
        time: &a.time,
        mem: &a.mem,
    };
    let dir = run_dir.join("slurm");
    for (name, text) in transfer::slurm::scripts(&p, &o) {
        let path = dir.join(&name);
        transfer::io::write_atomic(&path, text.as_bytes())?;
        #[cfg(unix)]
        if name.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)?.permissions().mode() | 0o111;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        }
    }
    let submit = dir.join("submit.sh");
    if !a.submit {
        println!(
            "wrote {}/{{first.sbatch,transfers.sbatch,submit.sh}}",
            dir.display()
        );
        println!(
            "next: {}   then, when the arrays are done: fute transfer collect {}",
            submit.display(),
            a.run_dir.display()
        );
        return Ok(());
    }
    let out = Command::new("bash").arg(&submit).output().map_err(|e| {
        user(format!(
            "cannot run {}: {e}; is bash installed?",
            submit.display()
        ))
    })?;
    if !out.status.success() {
        return Err(user(format!(
            "sbatch failed ({}): {}; is Slurm reachable (sinfo, SLURM_CONF)? \
             scripts/slurm-local.sh start runs one on this machine",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    println!("submitted Slurm jobs {}", ids.join(", "));
    Ok(())
}

fn read_scores(path: &Path) -> anyhow::Result<MethodScores> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| user(format!("cannot read scores file {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        user(format!(
            "{} line {} column {}: not a method-scores file ({e}); expected \
             {{\"method\": NAME, \"per_seed\": [{{TARGET: {{SOURCE: score}}}}]}}",
            path.display(),
            e.line(),
            e.column()
        ))
    })
}

fn logme_method(
    ctx: &Context,
    m: &transfer::Matrix,
    run_dir: &Path,
    recompute: bool,
) -> anyhow::Result<MethodScores> {
    let cache = run_dir.join("scores").join("logme.json");
    if cache.is_file() && !recompute {
        return read_scores(&cache);
    }
    let models = run_dir.join("models");
    if !models.is_dir() {
        return Err(user(format!(
            "LogME needs the source models in {} (or a cached {}); evaluate the run folder \
             that made the matrix, or leave logme out of --methods",
            models.display(),
            cache.display()
        )));
    }
    let pb = super::progress_bar("LogME: source models");
    let load = |name: &str| -> anyhow::Result<fute_core::dataset::Dataset> {
        Ok(ctx.workspace.load_dataset(name)?)
    };
    let scores = fute::transfer::logme::logme_scores(m, run_dir, &load, &mut |done, total| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    })?;
    pb.finish_and_clear();
    transfer::io::write_json(&cache, &scores)?;
    Ok(scores)
}

fn evaluate(ctx: &Context, a: EvaluateArgs) -> anyhow::Result<()> {
    let m = transfer::Matrix::load(&a.matrix)?;
    let dir = match a.matrix.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let started = std::time::Instant::now();
    let mut methods = Vec::new();
    for name in &a.methods {
        methods.push(match name.as_str() {
            "datasize" => ev::datasize(&m),
            "random" => ev::random(&m),
            "logme" => logme_method(ctx, &m, &dir, a.recompute)?,
            other => unreachable!("clap restricts --methods, got {other}"),
        });
    }
    for f in &a.scores {
        methods.push(read_scores(f)?);
    }
    // The run folder only once every input has been read: a bad --scores file
    // leaves no empty run behind.
    let mut run = fute::report::RunFolder::create(&ctx.workspace.state_dir(), "transfer-evaluate")?;
    run.record("method scores", started.elapsed().as_secs_f64());
    let e = run.time("ρ and NDCG", || ev::evaluate(&m, &methods))?;
    transfer::io::write_json(&dir.join("evaluation.json"), &e)?;
    transfer::io::write_atomic(&dir.join("evaluation.csv"), e.to_csv().as_bytes())?;
    let report = transfer::report::write_run(&run, &m, &a.matrix, &e, &methods)?;
    if a.json {
        return print_json(&e);
    }
    let titles = e.column_titles();
    let mut header = vec!["method"];
    header.extend(titles.iter().map(String::as_str));
    let mut t = Table::new(&header);
    for r in &e.rows {
        let mut cells = vec![r.method.clone()];
        cells.extend(e.row_values(r));
        t.row(cells);
    }
    print!("{}", t.render());
    for (class, names) in &e.tasks {
        println!("{class} targets: {}", names.join(", "));
    }
    println!(
        "seeds: {}; ρ = rank of the true best source (lower is better), NDCG ×100 with \
         rel = target score after transfer in points",
        e.seeds.len()
    );
    println!(
        "wrote {0}/evaluation.json and {0}/evaluation.csv",
        dir.display()
    );
    println!("report: {}", report.display());
    Ok(())
}
