//! `fute bench`: fute's hot paths on the real models, side by side with a peer
//! (PyTorch + transformers, a llama.cpp server) in the same invocation.
//!
//! Every row is one workload at a stated shape ([`Workload`]): the same token
//! ids (real IMDB reviews, 128 tokens each) go to fute and to the peer, the peer
//! runs right after fute in the same time window, with the same thread count.
//! Before each timed run the machine's load is sampled from `/proc/stat` while
//! this process sleeps ([`machine::idle_check`]); during the run, other
//! processes' CPU is the machine's busy time minus the measured process's own.
//! Both are recorded with the row, so a figure taken on a busy machine says so.
//!
//! FLOP counts are the matmul FLOPs of the workload over real tokens
//! ([`Workload::flops_per_example`]); they are the same for fute and the peer,
//! so the GFLOP/s ratio equals the throughput ratio.

pub mod arch;
pub mod llm;
pub mod machine;
pub mod minilm;
pub mod peer;
pub mod report;

use std::time::Instant;

use fute_llm::LlmBackend;
use serde::{Deserialize, Serialize};

pub use report::{BenchReport, Measurement, Row};

/// What a row runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Full fine-tuning step: forward, backward, AdamW (train mode, dropout on).
    Train,
    /// Diagonal empirical Fisher over all encoder parameters, per example.
    FisherPerExample,
    /// Fisher per batch (Vu et al.).
    FisherPerBatch,
    /// Fisher as the square of the mean gradient (FUTE code).
    FisherSquareOfMean,
    /// PEFT training step: prefix tuning (P-tuning v2, 16 positions).
    PeftPrefix,
    /// PEFT training step: prompt tuning (16 soft tokens).
    PeftPrompt,
    /// PEFT training step: LoRA r = 8 on query and value.
    PeftLora,
    /// PEFT training step: BitFit (biases and head).
    PeftBitfit,
    /// TextEmb forward: mask-aware mean of the last hidden states (eval, no grad).
    TextEmb,
    /// LLM label distributions: prompts × inputs.
    LlmLabels,
    /// LLM perplexities: prompts × inputs.
    LlmPerplexity,
}

/// One benchmark workload (shape and amount of work), identical for fute and the peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Workload {
    /// Row id, e.g. `train-b8`.
    pub id: String,
    /// What runs.
    pub kind: Kind,
    /// Examples per batch.
    pub batch: usize,
    /// Tokens per example (MiniLM rows).
    pub seq_len: usize,
    /// Timed units: steps for train/PEFT rows, examples for Fisher rows,
    /// batches for TextEmb, calls for LLM rows.
    pub units: usize,
    /// Untimed units run first (page-in, allocator, caches).
    pub warmup: usize,
    /// The architecture of an arch row ([`arch`]); `None` for the MiniLM and LLM rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
}

/// MiniLM shape used for FLOP counts (all-MiniLM-L6-v2).
const LAYERS: f64 = 6.0;
const HIDDEN: f64 = 384.0;
const FFN: f64 = 1536.0;

impl Workload {
    fn new(id: &str, kind: Kind, batch: usize, units: usize, warmup: usize) -> Self {
        Self {
            id: id.into(),
            kind,
            batch,
            seq_len: 128,
            units,
            warmup,
            arch: None,
        }
    }

    /// Examples processed by the timed part.
    pub fn examples(&self) -> usize {
        match self.kind {
            Kind::Train
            | Kind::PeftPrefix
            | Kind::PeftPrompt
            | Kind::PeftLora
            | Kind::PeftBitfit
            | Kind::TextEmb => self.units * self.batch,
            _ => self.units,
        }
    }

    /// Matmul FLOPs per example over `seq_len` real tokens: forward =
    /// per layer 8·T·H² (Q, K, V, output) + 4·T·H·F (FFN) + 4·T²·H (scores and
    /// context); a step with weight gradients (training, Fisher) counts 3×
    /// forward, a PEFT step 2× (forward + activation gradients), TextEmb 1×.
    /// `None` for LLM rows (their cost depends on the prompt lengths) and arch
    /// rows (the count above is MiniLM's shape).
    pub fn flops_per_example(&self) -> Option<f64> {
        if self.arch.is_some() {
            return None;
        }
        let t = self.seq_len as f64;
        let fwd =
            LAYERS * (8.0 * t * HIDDEN * HIDDEN + 4.0 * t * HIDDEN * FFN + 4.0 * t * t * HIDDEN);
        let factor = match self.kind {
            Kind::Train
            | Kind::FisherPerExample
            | Kind::FisherPerBatch
            | Kind::FisherSquareOfMean => 3.0,
            Kind::PeftPrefix | Kind::PeftPrompt | Kind::PeftLora | Kind::PeftBitfit => 2.0,
            Kind::TextEmb => 1.0,
            Kind::LlmLabels | Kind::LlmPerplexity => return None,
        };
        Some(fwd * factor)
    }
}

/// The default rows (see `fute bench --help` for the list and the time it takes).
pub fn default_workloads(llm_inputs: usize) -> Vec<Workload> {
    use Kind::*;
    vec![
        Workload::new("train-b8", Train, 8, 3, 1),
        Workload::new("train-b32", Train, 32, 2, 1),
        Workload::new("fisher-per-example", FisherPerExample, 1, 16, 2),
        Workload::new("fisher-per-batch-b8", FisherPerBatch, 8, 16, 8),
        Workload::new("fisher-square-of-mean-b8", FisherSquareOfMean, 8, 16, 8),
        Workload::new("peft-prefix-b8", PeftPrefix, 8, 3, 1),
        Workload::new("peft-prompt-b8", PeftPrompt, 8, 3, 1),
        Workload::new("peft-lora-b8", PeftLora, 8, 3, 1),
        Workload::new("peft-bitfit-b8", PeftBitfit, 8, 3, 1),
        Workload::new("textemb-b32", TextEmb, 32, 3, 1),
        Workload {
            seq_len: 0,
            ..Workload::new("llm-labels", LlmLabels, 1, 13 * llm_inputs, 1)
        },
        Workload {
            seq_len: 0,
            ..Workload::new("llm-perplexity", LlmPerplexity, 1, 13 * llm_inputs, 1)
        },
    ]
}

/// Scales a workload down to one timed unit and no warm-up (`--quick`, for tests).
pub fn quick(mut w: Workload) -> Workload {
    w.units = match w.kind {
        Kind::FisherPerBatch | Kind::FisherSquareOfMean => w.batch,
        Kind::LlmLabels | Kind::LlmPerplexity => w.units.min(2),
        _ => 1,
    };
    w.warmup = 0;
    w
}

/// Times `run` (which returns the examples it processed) on this process:
/// idle check first, then wall time, peak RSS and other processes' CPU.
pub fn measure(
    mut run: impl FnMut() -> anyhow::Result<()>,
    examples: usize,
) -> anyhow::Result<Measurement> {
    let load_before = machine::idle_check(std::time::Duration::from_millis(700));
    let peak_reset = machine::reset_peak_rss();
    let window = machine::CpuWindow::start(std::process::id());
    let t = Instant::now();
    run()?;
    let seconds = t.elapsed().as_secs_f64();
    let (others_during, own_cores) = window.finish();
    Ok(Measurement {
        seconds,
        examples,
        peak_rss_mib: machine::peak_rss_mib().filter(|_| peak_reset),
        load_before,
        others_during,
        own_cores,
    })
}

/// What `fute bench` runs.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The MiniLM folder (Hugging Face layout).
    pub model_dir: std::path::PathBuf,
    /// IMDB `reviews.json` (the benchmark text).
    pub reviews: std::path::PathBuf,
    /// The SmolLM2 `.gguf` file; `None` skips the LLM rows.
    pub gguf: Option<std::path::PathBuf>,
    /// Threads of each side (fute's rayon pool, Fisher workers and GGUF workers; torch intra-op).
    pub threads: usize,
    /// Python with torch + transformers for the peer.
    pub peer_python: Option<std::path::PathBuf>,
    /// A llama.cpp (OpenAI-compatible) server serving the same GGUF, as the LLM peer.
    pub llm_server: Option<String>,
    /// Only these row ids (all when `None`).
    pub only: Option<Vec<String>>,
    /// Reviews per prompt in the LLM rows.
    pub llm_inputs: usize,
    /// One timed unit per row, no warm-up (for tests; figures are not comparable).
    pub quick: bool,
    /// Also run the arch rows ([`arch::workloads`]); they also run when `only`
    /// names one of them or the group `arch`.
    pub arch_rows: bool,
    /// Model folders to use for arch rows instead of the base-size ones
    /// ([`arch::prepare`]), by architecture (`model_type`).
    pub arch_models: Vec<(String, std::path::PathBuf)>,
}

/// Runs the benchmark; `progress` gets one line per step.
pub fn run(opts: &BenchOptions, progress: &mut dyn FnMut(&str)) -> anyhow::Result<BenchReport> {
    let t0 = Instant::now();
    let started = chrono_now();
    let mut workloads: Vec<Workload> = default_workloads(opts.llm_inputs);
    workloads.extend(arch::workloads());
    if let Some(only) = &opts.only {
        for id in only {
            anyhow::ensure!(
                id == arch::GROUP || workloads.iter().any(|w| &w.id == id),
                "unknown row `{id}` (rows: {}; `{}` selects every arch row)",
                workloads
                    .iter()
                    .map(|w| w.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                arch::GROUP
            );
        }
        let group = only.iter().any(|id| id == arch::GROUP);
        workloads.retain(|w| only.contains(&w.id) || (group && w.arch.is_some()));
    } else if !opts.arch_rows {
        workloads.retain(|w| w.arch.is_none());
    }
    for (a, dir) in &opts.arch_models {
        anyhow::ensure!(
            arch::ARCHES.contains(&a.as_str()),
            "no arch rows for `{a}` (given a model folder {}); arch rows: {}",
            dir.display(),
            arch::ARCHES.join(", ")
        );
    }
    if opts.quick {
        workloads = workloads.into_iter().map(quick).collect();
    }
    let nn_rows = workloads.iter().any(|w| w.seq_len > 0);
    let minilm_rows = workloads.iter().any(|w| w.seq_len > 0 && w.arch.is_none());
    let ids = if minilm_rows {
        let tokenizer = fute_nn::TextTokenizer::from_folder(&opts.model_dir)?;
        minilm::review_ids(&tokenizer, &opts.reviews, 64, 128)?
    } else {
        Vec::new()
    };
    // The arch rows' model folders, made at an architecture's first row and
    // removed after its last (base-size folders hold 0.3-0.5 GB each).
    let arch_tmp = tempfile::Builder::new().prefix("fute-bench-").tempdir()?;
    let mut arch_model: Option<(String, std::path::PathBuf, Vec<Vec<u32>>)> = None;
    let mut torch = match (&opts.peer_python, nn_rows) {
        (Some(py), true) => {
            progress(&format!("starting the PyTorch peer ({})", py.display()));
            Some(peer::TorchPeer::start(py, &opts.model_dir, opts.threads)?)
        }
        _ => None,
    };
    let llm_rows = workloads.iter().any(|w| w.seq_len == 0);
    let mut llm_rss_mib = None;
    // Loaded at the first LLM row (they come last), so the MiniLM rows' peak
    // memory does not include it.
    let mut gguf_backend: Option<fute_llm::GgufBackend> = None;
    let server = match (&opts.llm_server, &opts.gguf, llm_rows) {
        (Some(url), Some(path), true) => Some(llm::server_backend(url, path)?),
        _ => None,
    };
    let prompt_set = fute_llm::PromptSet::builtin("sa")?;
    let texts = if llm_rows {
        llm::review_texts(&opts.reviews, opts.llm_inputs.max(1))?
    } else {
        Vec::new()
    };
    let mut rows = Vec::with_capacity(workloads.len());
    let n = workloads.len();
    for (i, w) in workloads.into_iter().enumerate() {
        let mut w = w;
        // An arch row's model is written (and T read from it) before its
        // progress line, so the line states the shape that runs.
        if let Some(a) = w.arch.clone() {
            if arch_model.as_ref().is_none_or(|(b, _, _)| *b != a) {
                if let Some((b, dir, _)) = arch_model.take() {
                    if !opts.arch_models.iter().any(|(_, d)| *d == dir) {
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                    let _ = std::fs::remove_dir_all(arch_tmp.path().join(format!("{b}-config")));
                }
                let given = opts.arch_models.iter().find(|(b, _)| *b == a);
                let dir = match given {
                    Some((_, d)) => d.clone(),
                    None => {
                        progress(&format!(
                            "writing the {a} model ({})",
                            arch_tmp.path().display()
                        ));
                        arch::prepare(&a, opts.gguf.as_deref(), arch_tmp.path())?
                    }
                };
                let ids = arch::token_ids(&dir, 64)?;
                arch_model = Some((a.clone(), dir, ids));
            }
            w.seq_len = arch_model.as_ref().map_or(0, |(_, _, ids)| ids[0].len());
        }
        let elapsed = t0.elapsed().as_secs_f64();
        let eta = if i > 0 {
            elapsed / i as f64 * (n - i) as f64
        } else {
            f64::NAN
        };
        progress(&format!(
            "[{}/{n}] {} ({}), {elapsed:.0} s elapsed{}",
            i + 1,
            w.id,
            report::shape(&w),
            if eta.is_finite() {
                format!(", ~{eta:.0} s left")
            } else {
                String::new()
            }
        ));
        let mut notes = Vec::new();
        let mut workers_note = None;
        let (fute, peer) = if w.arch.is_some() {
            let (_, dir, ids) = arch_model.as_ref().expect("prepared above");
            let f = arch::run(&w, dir, ids, opts.threads)?;
            let p = match torch.as_mut() {
                Some(t) => match t.run_on(&w, ids, Some(dir)) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        notes.push(format!("peer: {e}"));
                        None
                    }
                },
                None => None,
            };
            (Some(f), p)
        } else if w.seq_len > 0 {
            let f = minilm::run(&w, &opts.model_dir, &ids, opts.threads)?;
            let p = match torch.as_mut() {
                Some(t) => match t.run(&w, &ids) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        notes.push(format!("peer: {e}"));
                        None
                    }
                },
                None => None,
            };
            (Some(f), p)
        } else {
            if let (None, Some(path)) = (&gguf_backend, &opts.gguf) {
                let before = machine::rss_mib();
                progress(&format!("loading {}", path.display()));
                gguf_backend = Some(fute_llm::GgufBackend::load_with(
                    path,
                    &fute_llm::GgufOptions {
                        workers: opts.threads.max(1),
                        ..Default::default()
                    },
                )?);
                llm_rss_mib = machine::rss_mib().zip(before).map(|(a, b)| a - b);
            }
            match &gguf_backend {
                None => {
                    notes.push("no GGUF model given".into());
                    (None, None)
                }
                Some(g) => {
                    // As many calls at once as the backend runs well (fute: one per
                    // `--threads`; the server: 1, its own threads run each request).
                    let f = llm::run(&w, g, g.concurrency(), &prompt_set, &texts)?;
                    if g.concurrency() > 1 {
                        // The same calls one at a time, for the workers' share of the speed.
                        let one = llm::run(&w, g, 1, &prompt_set, &texts)?;
                        workers_note = Some(format!(
                            "fute one call at a time: {:.2} ex/s ({} workers: {:.2}x that)",
                            one.per_second(),
                            g.concurrency(),
                            f.per_second() / one.per_second()
                        ));
                    }
                    let p = match &server {
                        Some(s) => match llm::run(&w, s, s.concurrency(), &prompt_set, &texts) {
                            Ok(m) => Some(m),
                            Err(e) => {
                                notes.push(format!("server: {e}"));
                                None
                            }
                        },
                        None => None,
                    };
                    (Some(f), p)
                }
            }
        };
        if peer.is_none() && notes.is_empty() {
            notes.push(
                if w.seq_len > 0 {
                    "no --peer given"
                } else {
                    "no --llm-server given"
                }
                .into(),
            );
        }
        notes.extend(workers_note);
        let row = Row {
            workload: w,
            fute,
            peer,
            note: (!notes.is_empty()).then(|| notes.join("; ")),
        };
        let per = |m: &Option<Measurement>| {
            m.as_ref()
                .map_or("—".into(), |m| format!("{:.2}", m.per_second()))
        };
        progress(&format!(
            "      fute {} ex/s, peer {} ex/s{}",
            per(&row.fute),
            per(&row.peer),
            row.ratio()
                .map_or(String::new(), |r| format!(", ratio {r:.2}"))
        ));
        rows.push(row);
    }
    let peer_versions = match (&torch, &opts.llm_server) {
        (Some(t), Some(u)) => Some(format!("{}; llama.cpp server at {u}", t.versions)),
        (Some(t), None) => Some(t.versions.clone()),
        (None, Some(u)) => Some(format!("llama.cpp server at {u}")),
        (None, None) => None,
    };
    drop(torch.take());
    Ok(BenchReport {
        started,
        fute: format!(
            "{}{}",
            env!("CARGO_PKG_VERSION"),
            option_env!("FUTE_GIT_COMMIT").map_or(String::new(), |c| format!(" ({c})"))
        ),
        machine: machine::MachineInfo::detect(),
        threads: opts.threads,
        candle_matmul_threads: candle_core::utils::get_num_threads(),
        peer: peer_versions,
        llm_rss_mib,
        rows,
        total_seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Now in UTC as RFC 3339 (seconds).
fn chrono_now() -> String {
    rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// Seconds since the Unix epoch as RFC 3339 UTC, without a date-time dependency.
fn rfc3339(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Times `w.units` fine-tuning steps of `net` after `w.warmup` untimed ones: forward on
/// `input(i)` in train mode, cross-entropy against `y` (`[B]` labels), backward, and
/// fute's AdamW (lr 2e-5, weight decay 0.01, as `fute train`) on `params`. Examples per
/// second count `w.examples()`.
pub(crate) fn time_train_steps(
    w: &Workload,
    net: &dyn fute_nn::TaskModel,
    params: &[(String, candle_core::Var)],
    y: &candle_core::Tensor,
    mut input: impl FnMut(usize) -> anyhow::Result<fute_nn::ModelInput>,
) -> anyhow::Result<Measurement> {
    use fute_nn::train::{AdamW, AdamWConfig};
    let mut opt = AdamW::new(AdamWConfig {
        lr: 2e-5,
        weight_decay: 0.01,
        ..Default::default()
    });
    let mut step = |i: usize| -> anyhow::Result<()> {
        let out = net.forward(&input(i)?, &fute_nn::Mode::train(i as u64))?;
        let l = fute_nn::loss::cross_entropy(out.logits()?, y)?;
        let store = l.backward()?;
        let grads: std::collections::HashMap<String, candle_core::Tensor> = params
            .iter()
            .filter_map(|(n, v)| store.get(v.as_tensor()).map(|g| (n.clone(), g.clone())))
            .collect();
        opt.step(params, &grads, 2e-5)?;
        Ok(())
    };
    for i in 0..w.warmup {
        step(i)?;
    }
    let mut i = w.warmup;
    measure(
        || {
            for _ in 0..w.units {
                step(i)?;
                i += 1;
            }
            Ok(())
        },
        w.examples(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_083_199), "2026-11-30T23:59:59Z");
    }

    #[test]
    fn quick_rows_keep_whole_batches() {
        for w in default_workloads(3).into_iter().map(quick) {
            assert_eq!(w.warmup, 0);
            assert!(w.examples() >= 1, "{}", w.id);
            if matches!(w.kind, Kind::FisherPerBatch | Kind::FisherSquareOfMean) {
                assert_eq!(w.units % w.batch, 0);
            }
        }
    }
}
