//! The error type of `fute-nn`.
//!
//! Errors name the file (and the tensor, with both shapes) at fault, so a user
//! can tell a bad checkpoint from a bug without reading code.
//!
//! [`Error::is_user_error`] separates what the user can fix (a bad or unsupported
//! model folder, bad arguments: [`Error::BadInput`], [`Error::Unsupported`], the
//! file variants) from bugs ([`Error::Bug`], and candle errors, which only arise
//! from shapes or dtypes our own code got wrong), so a CLI can choose its exit
//! code without reading messages.

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
    /// A `config.json` lacks a field that fixes the model's shape.
    #[error(
        "{}: field `{field}` is missing; a `{model_type}` configuration must state it \
         (transformers' save_pretrained writes every field)",
        path.display()
    )]
    MissingField {
        /// The configuration file.
        path: PathBuf,
        /// The missing field.
        field: &'static str,
        /// The architecture whose configuration it is.
        model_type: String,
    },
    /// A configuration whose `model_type` no registered architecture implements.
    #[error(
        "{}: model_type `{model_type}` is not supported; supported model types: {}",
        path.display(),
        supported.join(", ")
    )]
    Unsupported {
        /// The configuration file.
        path: PathBuf,
        /// The `model_type` it declares.
        model_type: String,
        /// The `model_type`s fute can load.
        supported: Vec<&'static str>,
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
    /// The checkpoint holds encoder tensors the configuration has no place for
    /// (e.g. more layers than `num_hidden_layers`).
    #[error(
        "{}: tensor `{}` does not belong to the model its config.json describes{}; \
         the checkpoint and config.json disagree",
        path.display(),
        names[0],
        if names.len() > 1 { format!(" (nor do {} more)", names.len() - 1) } else { String::new() }
    )]
    UnexpectedTensors {
        /// The checkpoint file.
        path: PathBuf,
        /// The unused tensors, sorted (at least one).
        names: Vec<String>,
    },
    /// The tokenizer failed to load or to encode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Arguments or data the caller can fix (bad label, span out of range, unknown
    /// LoRA target, empty example list, ...).
    #[error("{0}")]
    BadInput(String),
    /// An internal invariant does not hold: a bug in fute, not the user's doing.
    #[error("internal error (a bug in fute): {0}")]
    Bug(String),
    /// An error from candle (tensor shapes, dtypes, ...); a bug in our code.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the user can fix the cause (input files, settings, the machine):
    /// everything except [`Error::Bug`] and candle errors.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Error::Bug(_) | Error::Candle(_))
    }

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
