//! Metrics: how well a model does its task ([`target`]) and how well a ranking of
//! sources or prompts matches the truth ([`ranking`]).

pub mod logme;
pub mod ranking;
pub mod target;

pub use logme::{logme, LogmeLabels};
pub use ranking::{ndcg, performance, rank_of_best, rate};
pub use target::{accuracy, macro_f1, matthews, pearson, spearman, squad_exact_match, squad_f1};
