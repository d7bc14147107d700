//! The one error type of the crate. Its kind decides the status a server
//! answers with (HTTP and gRPC) and the exit status of the CLI.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input, named by its field (a CLI option, a tensor, a CSV column).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A model, version, alias or run that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Not ready yet (a model still loading).
    #[error("{0}")]
    Unavailable(String),
    /// A request body or message over the server's size limit.
    #[error("{field}: {message}")]
    TooLarge { field: String, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An ONNX model that cannot be loaded or run.
    #[error("model: {0}")]
    Model(String),
    /// A registry backend that failed (other than for a missing entry).
    #[error("registry: {0}")]
    Registry(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_owned(),
            source,
        }
    }

    /// `field` (`body`, `message`) of `size` bytes, when known, is over
    /// `limit`.
    pub fn too_large(field: &str, size: Option<u64>, limit: usize) -> Self {
        let size = match size {
            Some(n) => format!("{n} bytes is"),
            None => "is".to_owned(),
        };
        Self::TooLarge {
            field: field.to_owned(),
            message: format!(
                "{size} over this server's limit of {limit} bytes (`outrider-model serve --max-body-bytes`)"
            ),
        }
    }

    pub fn model(message: impl std::fmt::Display) -> Self {
        Self::Model(message.to_string())
    }

    pub fn registry(message: impl std::fmt::Display) -> Self {
        Self::Registry(message.to_string())
    }

    /// Whether the caller is at fault (bad input or a missing entry).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Self::Invalid { .. } | Self::NotFound(_) | Self::TooLarge { .. }
        )
    }
}

/// Adds the path to an I/O result.
pub trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
