//! The parts every public error shares: failures of local storage ([`LocalError`]) and of
//! the exchange with the server ([`NetError`]), and the split of the crate's internal error
//! into them.

use crate::error::{ClientError, StorageError};

/// A failure of this device's own storage: the database, the key store, the file system.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The local SQLite database failed (disk full, locked for too long, unreadable).
    #[error("local database error: {0}")]
    Database(StorageError),
    /// The local database content is inconsistent (bad lengths, undecryptable value...).
    #[error("local database is corrupt: {0}")]
    Corrupt(String),
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The key store could not be read or written.
    #[error("key store: {0}")]
    KeyStore(String),
    /// A cryptographic operation on local data failed.
    #[error("crypto: {0}")]
    Crypto(String),
}

impl LocalError {
    /// Only a busy database may succeed when tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Database(e) if e.is_busy())
    }
}

/// A failure talking to the server.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The server could not be reached, or did not answer in time.
    #[error("network: {0}")]
    Network(String),
    /// TLS setup or handshake failed (the server's certificate is not the pinned one, or
    /// it refused this device's).
    #[error("TLS: {0}")]
    Tls(String),
    /// The server answered with an error status.
    #[error("server refused {request}: {code} (HTTP {status}, error id {error_id})")]
    Server {
        /// HTTP status.
        status: u16,
        /// `ErrorResponse.code`, e.g. `unauthorized`, `conflict`, `busy`.
        code: String,
        /// Opaque id to look up in the server log.
        error_id: String,
        /// Method and path of the refused request.
        request: String,
    },
    /// The server's response was malformed or broke the protocol.
    #[error("protocol violation by the server: {0}")]
    Protocol(String),
}

impl NetError {
    /// A network failure or timeout, or a server that is busy, unavailable or failing
    /// (HTTP 5xx, 408, 429).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Network(_) => true,
            Self::Server { status, .. } => matches!(status, 408 | 429 | 500..=599),
            _ => false,
        }
    }
}

/// `ClientError` split into the parts every public error shares.
pub(super) enum Split {
    Local(LocalError),
    Net(NetError),
    Other(ClientError),
}

pub(super) fn split(e: ClientError) -> Split {
    match e {
        ClientError::Database(e) => Split::Local(LocalError::Database(e)),
        ClientError::Corrupt(m) => Split::Local(LocalError::Corrupt(m)),
        ClientError::Io { context, source } => Split::Local(LocalError::Io { context, source }),
        ClientError::KeyStore(m) => Split::Local(LocalError::KeyStore(m)),
        ClientError::Crypto(m) => Split::Local(LocalError::Crypto(m)),
        ClientError::Network(m) => Split::Net(NetError::Network(m)),
        ClientError::Tls(m) => Split::Net(NetError::Tls(m)),
        ClientError::Server {
            status,
            code,
            error_id,
            request,
        } => Split::Net(NetError::Server {
            status,
            code,
            error_id,
            request,
        }),
        ClientError::Protocol(m) => Split::Net(NetError::Protocol(m)),
        other => Split::Other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::{PairingError, ReadError, SyncError, WriteError};

    #[test]
    fn only_transient_failures_are_retryable() {
        let retry = |e: ClientError| SyncError::from(e).is_retryable();
        assert!(retry(ClientError::Network("reset".into())));
        assert!(retry(ClientError::SyncBusy { waited_secs: 1 }));
        for status in [408, 429, 500, 503] {
            assert!(retry(ClientError::Server {
                status,
                code: "busy".into(),
                error_id: "x".into(),
                request: "POST /v1/batches".into(),
            }));
        }
        assert!(!retry(ClientError::Server {
            status: 403,
            code: "forbidden".into(),
            error_id: "x".into(),
            request: "POST /v1/batches".into(),
        }));
        assert!(!retry(ClientError::Tls("pin mismatch".into())));
        assert!(!retry(ClientError::Roster("fork".into())));
        assert!(!retry(ClientError::ServerFork {
            collection: "c".into(),
            detail: "d".into()
        }));
        assert!(!retry(ClientError::Corrupt("bad".into())));
        assert!(!PairingError::from(ClientError::WrongCode).is_retryable());
    }

    #[test]
    fn each_operation_keeps_its_own_variants() {
        assert!(matches!(
            SyncError::from(ClientError::Roster("x".into())),
            SyncError::Roster(_)
        ));
        assert!(matches!(
            SyncError::from(ClientError::Database(StorageError::for_tests(true))),
            SyncError::Local(LocalError::Database(_))
        ));
        assert!(matches!(
            ReadError::from(ClientError::NoIndex {
                collection: "c".into(),
                field: "f".into()
            }),
            ReadError::NoIndex { .. }
        ));
        assert!(matches!(
            WriteError::from(ClientError::NotFound {
                collection: "c".into(),
                key: "k".into()
            }),
            WriteError::NotFound { .. }
        ));
        // What an operation does not expect is a defect, reported as such.
        assert!(matches!(
            ReadError::from(ClientError::WrongCode),
            ReadError::Internal(_)
        ));
    }
}
