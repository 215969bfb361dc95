//! The error type of the server's public API ([`ServerError`]).
//!
//! These errors are for the operator (CLI, logs); they never travel to clients. Clients see
//! only the generic `ErrorResponse` built in `http::error`.

use std::path::PathBuf;

use crate::store::StoreError;

/// Why a server operation (init, ticket issuance, startup, serving) failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// `init` was pointed at a directory that already holds a server (it never overwrites one).
    #[error("{0} is already initialised")]
    AlreadyInitialised(PathBuf),
    /// The data directory lacks the files `init` creates.
    #[error("{0} is not an initialised server directory (run `sealsync server init` first)")]
    NotInitialised(PathBuf),
    /// A filesystem operation on the data directory failed.
    #[error("cannot access {path}: {source}")]
    Io {
        /// File or directory concerned.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server URL is not of the form `https://HOST[:PORT]`.
    #[error("invalid server URL {0:?} (expected https://HOST[:PORT])")]
    InvalidUrl(String),
    /// The account name is empty, too long or holds control characters.
    #[error("invalid account name (1 to 128 bytes, no control characters)")]
    InvalidAccount,
    /// A ticket lifetime is zero or longer than [`crate::MAX_TICKET_TTL`].
    #[error("invalid ticket lifetime (between 1 s and 30 days)")]
    InvalidTtl,
    /// A duration string could not be parsed.
    #[error("invalid duration {0:?} (expected a number followed by s, m, h or d, e.g. 15m)")]
    InvalidDuration(String),
    /// Generating, parsing or signing a certificate or key failed.
    #[error("certificate error: {0}")]
    Pki(String),
    /// The TLS configuration could not be built from the stored certificates.
    #[error("TLS configuration error: {0}")]
    Tls(#[from] rustls::Error),
    /// The listening socket could not be bound or inspected.
    #[error("cannot listen: {0}")]
    Listen(#[source] std::io::Error),
    /// The database failed.
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
    /// A stored configuration file (`server.json`) is malformed.
    #[error("malformed {path}: {reason}")]
    Config {
        /// File concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl ServerError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ServerError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<rcgen::Error> for ServerError {
    fn from(e: rcgen::Error) -> Self {
        ServerError::Pki(e.to_string())
    }
}
