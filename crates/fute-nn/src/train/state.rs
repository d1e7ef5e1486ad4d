//! The resumable training state: a folder written atomically at every epoch end
//! (and every N optimiser steps) holding
//!
//! * `weights.safetensors` — every parameter the run trains (all, or the LoRA /
//!   PEFT subset; the frozen rest is rebuilt from the base), in its own dtype (bit-exact);
//! * `moments.safetensors` — AdamW's `m/<name>` and `v/<name>`;
//! * `best.safetensors` — the best trained weights so far on the dev set, when any;
//! * `state.json` — step, epoch, position in the epoch, per-parameter AdamW step
//!   counts, best score, epochs without improvement, history, and a fingerprint of
//!   the settings and data, so a rerun with other settings is refused rather than
//!   silently mixed.
//!
//! The shuffle order and dropout masks are functions of `(seed, epoch, batch)`,
//! so the counters above are the whole random state.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::train::EpochRecord;
use crate::{Error, Result};

/// Counters and bookkeeping of a run (the `state.json` of a checkpoint).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Format version.
    pub version: u32,
    /// Fingerprint of the settings and data the run was started with.
    pub fingerprint: String,
    /// Optimiser steps taken.
    pub step: usize,
    /// Current epoch (0-based); equals the epoch count once training is done.
    pub epoch: usize,
    /// Micro-batches of the current epoch already consumed.
    pub batch_in_epoch: usize,
    /// Sum of the micro-batch losses of the current epoch so far.
    pub epoch_loss_sum: f64,
    /// Per-parameter AdamW step counts.
    pub param_steps: BTreeMap<String, u64>,
    /// Best dev score so far (higher is better).
    pub best_score: Option<f64>,
    /// Epoch (1-based) of the best dev score.
    pub best_epoch: Option<usize>,
    /// Consecutive evaluations without improvement.
    pub bad_epochs: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// One record per finished epoch.
    pub history: Vec<EpochRecord>,
}

/// Everything a checkpoint restores.
#[derive(Debug)]
pub struct Snapshot {
    /// Counters.
    pub state: RunState,
    /// Parameters by name.
    pub weights: HashMap<String, Tensor>,
    /// `m/<name>` and `v/<name>`.
    pub moments: HashMap<String, Tensor>,
    /// Best weights so far, if any.
    pub best: Option<HashMap<String, Tensor>>,
}

const STATE: &str = "state.json";
const WEIGHTS: &str = "weights.safetensors";
const MOMENTS: &str = "moments.safetensors";
const BEST: &str = "best.safetensors";

fn save_tensors(map: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    candle_core::safetensors::save(map, path)
        .map_err(|e| Error::io("writing", path, std::io::Error::other(e.to_string())))
}

fn load_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        message: format!("unreadable training checkpoint: {e}"),
    })
}

/// Writes a checkpoint folder at `dir` atomically: into a temporary sibling,
/// then renamed into place (the previous checkpoint is moved aside first and
/// removed last, so `dir` always holds a complete checkpoint).
pub fn write(
    dir: &Path,
    state: &RunState,
    weights: &HashMap<String, Tensor>,
    moments: &HashMap<String, Tensor>,
    best: Option<&HashMap<String, Tensor>>,
) -> Result<()> {
    let name = dir
        .file_name()
        .ok_or_else(|| Error::BadInput(format!("cannot checkpoint to {}", dir.display())))?
        .to_string_lossy()
        .into_owned();
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| Error::io("creating", &parent, e))?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let fill = || -> Result<()> {
        std::fs::create_dir(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
        save_tensors(weights, &tmp.join(WEIGHTS))?;
        save_tensors(moments, &tmp.join(MOMENTS))?;
        if let Some(b) = best {
            save_tensors(b, &tmp.join(BEST))?;
        }
        let text = serde_json::to_string_pretty(state).expect("state serialises");
        let p = tmp.join(STATE);
        std::fs::write(&p, text).map_err(|e| Error::io("writing", &p, e))?;
        let aside = parent.join(format!(".{name}.old-{}", std::process::id()));
        if dir.exists() {
            let _ = std::fs::remove_dir_all(&aside);
            std::fs::rename(dir, &aside).map_err(|e| Error::io("moving aside", dir, e))?;
        }
        std::fs::rename(&tmp, dir).map_err(|e| Error::io("renaming into place", dir, e))?;
        let _ = std::fs::remove_dir_all(&aside);
        Ok(())
    };
    let result = fill();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Reads the checkpoint at `dir`, or `None` when there is none.
pub fn read(dir: &Path) -> Result<Option<Snapshot>> {
    let state_path = dir.join(STATE);
    if !state_path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&state_path).map_err(|e| Error::io("reading", &state_path, e))?;
    let state: RunState = serde_json::from_str(&text).map_err(|e| Error::Config {
        path: state_path.clone(),
        message: format!("invalid training state: {e}"),
    })?;
    let weights = load_tensors(&dir.join(WEIGHTS))?;
    let moments = load_tensors(&dir.join(MOMENTS))?;
    let best_path = dir.join(BEST);
    let best = if best_path.is_file() {
        Some(load_tensors(&best_path)?)
    } else {
        None
    };
    Ok(Some(Snapshot {
        state,
        weights,
        moments,
        best,
    }))
}
