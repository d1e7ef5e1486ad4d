//! Errors of this crate.

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong when talking to an LLM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input or configuration (unknown prompt, missing slot, ...).
    #[error("{0}")]
    Invalid(String),
    /// The model file cannot be read or is not a supported model.
    #[error("model {path}: {message}")]
    Model {
        /// The model file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Tokenizer construction or encoding failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Inference failed inside candle.
    #[error("inference: {0}")]
    Inference(String),
    /// The server could not be reached or kept failing (after the retries).
    #[error("server {url}: {message}")]
    Http {
        /// The request URL.
        url: String,
        /// What happened, including the number of attempts.
        message: String,
    },
    /// The server answered without the log-probabilities this crate needs.
    #[error("server {url} returned no log-probabilities ({message}); use a server that supports `logprobs` (llama.cpp, vLLM, TGI, OpenAI completions)")]
    NoLogprobs {
        /// The request URL.
        url: String,
        /// Which field was missing.
        message: String,
    },
    /// The server answered with something that is not the expected JSON.
    #[error("malformed response from {url}: {message}")]
    Malformed {
        /// The request URL.
        url: String,
        /// What was wrong, with the start of the body.
        message: String,
    },
    /// The on-disk call cache cannot be read or written.
    #[error("LLM call cache {path}: {message}")]
    Cache {
        /// The cache file.
        path: String,
        /// What happened.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the user can fix it (input, configuration, files, the server):
    /// everything except failures inside the tokenizer or candle.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Error::Tokenizer(_) | Error::Inference(_))
    }

    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
