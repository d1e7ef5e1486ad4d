//! The error type of `fute-nn`.
//!
//! Errors name the file (and the tensor, with both shapes) at fault, so a user
//! can tell a bad checkpoint from a bug without reading code.

use std::path::PathBuf;

/// Errors of `fute-nn`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the operation needs does not exist.
    #[error("missing file {}: {what}", path.display())]
    MissingFile {
        /// The file that was looked for.
        path: PathBuf,
        /// What the file is for (e.g. "model configuration").
        what: &'static str,
    },
    /// A file or folder could not be read or written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What we were doing ("reading", "writing", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A configuration file that cannot be parsed or is not supported.
    #[error("{}: {message}", path.display())]
    Config {
        /// The configuration file (or `<memory>` for an in-memory config).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A parameter the model needs is not in the checkpoint.
    #[error("{}: tensor `{name}` is missing (expected shape {expected:?})", path.display())]
    MissingTensor {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor name (as looked up, with any prefix the file uses).
        name: String,
        /// The shape the model expects.
        expected: Vec<usize>,
    },
    /// A tensor in the checkpoint has the wrong shape.
    #[error("{}: tensor `{name}` has shape {found:?} but the model expects {expected:?}", path.display())]
    ShapeMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// The shape the model expects.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// The tokenizer failed to load or to encode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Arguments that cannot be satisfied (bad label, span out of range, ...).
    #[error("{0}")]
    Invalid(String),
    /// An error from candle (tensor shapes, dtypes, ...); usually a bug.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
