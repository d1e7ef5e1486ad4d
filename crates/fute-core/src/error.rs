//! One error type for everything in `fute-core`.
//!
//! Errors say what was wrong, where, and how to fix it. [`Error::is_user_error`]
//! separates problems with the user's input or machine (bad file, missing tool)
//! from bugs, so the CLI can choose its exit code.

use std::path::PathBuf;

/// Where in a file a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub path: PathBuf,
    /// 1-based line (JSONL) or record (CSV) number; `None` for whole-file problems.
    pub line: Option<usize>,
    /// The field at fault, when one is.
    pub field: Option<String>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, " (field `{field}`)")?;
        }
        Ok(())
    }
}

/// Errors of `fute-core`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input data that does not satisfy its schema.
    #[error("{location}: {message}")]
    InvalidData {
        /// Where the problem is.
        location: Location,
        /// What was expected and what was found.
        message: String,
    },
    /// A request that cannot be satisfied as asked (unknown name, bad option, …).
    #[error("{0}")]
    Invalid(String),
    /// A file or folder could not be read or written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What we were doing ("reading", "writing", …).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An external program (pip, npm, apt-get, …) is missing or failed.
    #[error("{0}")]
    Tool(String),
    /// An asset's checksum does not match the pinned one.
    #[error("{0}")]
    Checksum(String),
}

impl Error {
    /// `true` when the cause lies in the user's input or environment, not in fute.
    pub fn is_user_error(&self) -> bool {
        // Every variant today describes the user's data, request or machine.
        true
    }

    /// Builds an [`Error::Io`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::InvalidData`].
    pub fn data(
        path: impl Into<PathBuf>,
        line: Option<usize>,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Error::InvalidData {
            location: Location {
                path: path.into(),
                line,
                field: field.map(str::to_owned),
            },
            message: message.into(),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
