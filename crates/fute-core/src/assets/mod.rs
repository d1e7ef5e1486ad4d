//! The asset cache: real models and data obtained through package registries.

mod root;

pub use root::{default_root, ASSETS_ENV};
