//! A view of a model in which the parameters a run does not train are detached.
//!
//! Every parameter is a candle `Var`, so a backward pass computes a gradient for
//! each of them, trained or not. In a parameter-efficient run (prefix, prompt
//! tuning, LoRA, BitFit) that is almost all of the work: the `[vocab, hidden]`
//! word-embedding gradient and every weight-gradient matmul of the frozen
//! backbone. In the view the frozen tensors are detached (same storage, no
//! gradient tracking); [`crate::ops::linear`] then forms only input gradients
//! for them, and ops whose inputs are all frozen leave the graph. Trained
//! parameters are the model's own `Var` tensors, so optimiser updates are seen
//! by the view and gradients are keyed by the same tensors.

use std::collections::HashSet;

use crate::task::TaskModel;
use crate::Result;

/// `model` with every parameter not named in `trainable` detached, for any
/// architecture ([`TaskModel::with_live`]).
///
/// Forward values are unchanged; backward computes gradients only for the
/// `trainable` parameters (and what they need).
pub fn frozen_view(model: &dyn TaskModel, trainable: &[String]) -> Result<Box<dyn TaskModel>> {
    let keep: HashSet<&str> = trainable.iter().map(String::as_str).collect();
    model.with_live(&|name| keep.contains(name))
}
