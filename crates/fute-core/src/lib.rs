//! `fute-core`: the parts of fute that need no ML library.
//!
//! Datasets and their schemas, loaders and validation, the unlabelled corpus,
//! the asset cache, and (later) embeddings, the store and ranking metrics.
//! It compiles in seconds so most tests run without building candle.

#![warn(missing_docs)]

pub mod assets;
pub mod corpus;
pub mod dataset;
pub mod doctor;
pub mod embedding;
pub mod error;
pub mod fsutil;
pub mod import;
pub mod metrics;
pub mod prompt_selection;
pub mod rng;
pub mod similarity;
pub mod testing;
pub mod textfile;
pub mod workspace;

pub use error::{Error, Result};
