//! Fine-tuning a [`crate::TaskModel`] (any architecture): AdamW, linear warm-up/decay, clipping,
//! gradient accumulation, seeded shuffling, dynamic padding, per-epoch dev
//! evaluation with early stopping (best weights kept), progress events and
//! resumable checkpoints.
//!
//! ```text
//! for epoch:                      order = shuffle(seed, epoch)
//!   for micro-batch b:            dropout seed = f(seed, epoch, b)
//!     loss(b).backward(); accumulate grads
//!     every K micro-batches (and at epoch end):
//!       grads /= count; clip to max norm; AdamW step at lr·schedule(step)
//!       every N steps: checkpoint
//!   evaluate dev → best? keep weights : patience − 1; checkpoint
//! restore best weights
//! ```
//!
//! The run is a pure function of the model's initial weights, the data, the
//! settings and the seed: two runs give bit-identical weights, and a run
//! interrupted after any checkpoint and resumed gives the same weights as an
//! uninterrupted one.

pub mod data;
mod frozen;
pub mod optim;
pub mod predict;
pub mod schedule;
pub mod state;
mod trainer;

pub use data::{answer_positions, TrainExample, TrainTarget};
pub use frozen::frozen_view;
pub use optim::{clip_grad_norm, decays, global_norm, AdamW, AdamWConfig};
pub use predict::{best_span, predict, RawPrediction};
pub use schedule::LinearSchedule;
pub use trainer::{evaluate, train};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Settings of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training data.
    pub epochs: usize,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimiser step (gradient accumulation).
    pub grad_accum: usize,
    /// AdamW settings (peak learning rate, decay, betas, ε).
    pub optimizer: AdamWConfig,
    /// Fraction of all steps spent warming up (FUTE reference: 0.05).
    pub warmup_fraction: f64,
    /// Global gradient-norm limit; `None` = no clipping.
    pub max_grad_norm: Option<f64>,
    /// Seed of shuffling and dropout.
    pub seed: u64,
    /// Loss against soft targets (another model's class distributions).
    #[serde(default)]
    pub soft_loss: crate::loss::SoftLoss,
    /// Stop after this many evaluations without improvement; `None` = never.
    pub patience: Option<usize>,
    /// Examples per evaluation batch.
    pub eval_batch_size: usize,
    /// Put the best dev weights back at the end (when a dev set is given).
    pub keep_best: bool,
    /// Train only these parameters (by name); the others are not updated at all
    /// (no step, no weight decay: they keep every bit) and their gradients are
    /// dropped. `None` = every parameter. See [`crate::peft::Peft::trainable_names`].
    #[serde(default)]
    pub trainable: Option<Vec<String>>,
    /// Checkpoint folder for resuming; `None` = no checkpoints.
    #[serde(skip)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Also checkpoint every this many optimiser steps (epoch ends always are).
    #[serde(skip)]
    pub checkpoint_every: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 3,
            batch_size: 32,
            grad_accum: 1,
            optimizer: AdamWConfig::default(),
            warmup_fraction: 0.05,
            max_grad_norm: Some(1.0),
            seed: 42,
            soft_loss: crate::loss::SoftLoss::BceWithLogits,
            patience: None,
            eval_batch_size: 64,
            keep_best: true,
            trainable: None,
            checkpoint_dir: None,
            checkpoint_every: None,
        }
    }
}

/// One finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over its micro-batches.
    pub train_loss: f64,
    /// Dev loss, when a dev set was given.
    pub dev_loss: Option<f64>,
    /// Dev score (higher is better: accuracy; −MSE for regression; −loss for QA).
    pub dev_score: Option<f64>,
}

/// Something the caller may want to show.
#[derive(Debug, Clone)]
pub enum Event {
    /// Training (re)starts.
    Start {
        /// Optimiser steps of the whole run.
        total_steps: usize,
        /// Steps already done (non-zero when resumed).
        done_steps: usize,
        /// Training examples per epoch.
        examples_per_epoch: usize,
        /// Whether the state came from a checkpoint.
        resumed: bool,
    },
    /// An optimiser step finished.
    Step {
        /// Steps done so far.
        step: usize,
        /// Optimiser steps of the whole run.
        total_steps: usize,
        /// 0-based epoch.
        epoch: usize,
        /// Mean loss of the micro-batches of this step.
        loss: f64,
        /// Learning rate used.
        lr: f64,
        /// Gradient norm before clipping.
        grad_norm: f64,
        /// Examples processed by this process so far (not counting resumed ones).
        examples: usize,
        /// Seconds since this process started training.
        elapsed: f64,
    },
    /// An epoch finished (evaluated and checkpointed).
    Epoch(EpochRecord),
    /// A checkpoint was written after `step` steps.
    Checkpoint {
        /// Steps done.
        step: usize,
    },
}

/// What the caller wants after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop now (as an interruption would; the last checkpoint stays resumable).
    Stop,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Optimiser steps done (in all processes).
    pub steps: usize,
    /// Epochs finished.
    pub epochs_done: usize,
    /// History of finished epochs.
    pub history: Vec<EpochRecord>,
    /// Epoch whose weights the model holds when `keep_best` applied.
    pub best_epoch: Option<usize>,
    /// Its dev score.
    pub best_score: Option<f64>,
    /// Early stopping ended the run.
    pub stopped_early: bool,
    /// The caller stopped the run before the end.
    pub interrupted: bool,
    /// The run continued from a checkpoint.
    pub resumed: bool,
    /// Examples trained on by this process.
    pub examples: usize,
    /// Seconds of training in this process.
    pub seconds: f64,
}
