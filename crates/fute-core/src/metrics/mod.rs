//! Metrics: how well a model does its task ([`target`]), and later how well a
//! ranking of sources or prompts matches the truth.

pub mod target;

pub use target::{accuracy, macro_f1, matthews, pearson, spearman, squad_exact_match, squad_f1};
