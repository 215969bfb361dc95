//! The client's error type.

use std::path::PathBuf;

/// Why a [`crate::Core`] operation failed. Messages say what to do next.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// The record does not exist (never written, or deleted): `get`-like operations that
    /// need a live record (`delete`, `history` of an unknown key).
    #[error(
        "no record {} in collection {}",
        crate::types::echo(.key),
        crate::types::echo(.collection)
    )]
    NotFound {
        /// Collection asked for.
        collection: String,
        /// Key asked for.
        key: String,
    },
    /// Arguments the caller passed are unusable (key too long, value too large, a `fields`
    /// collection given something other than a JSON object, bad URL, unknown device id...).
    #[error("{0}")]
    InvalidInput(String),
    /// `find` on a field that has no index in that collection: create the index first
    /// ([`crate::Replica::create_index`]).
    #[error(
        "collection {} has no index on field {}: create the index first",
        crate::types::echo(.collection),
        crate::types::echo(.field)
    )]
    NoIndex {
        /// Collection asked for.
        collection: String,
        /// Field asked for.
        field: String,
    },
    /// The home directory holds no replica (run `sealsync device enroll` first).
    #[error("no replica in {0}: enroll this device first")]
    NotEnrolled(PathBuf),
    /// `enroll` was asked to write into a home directory that already holds a replica.
    #[error("{0} already holds an enrolled replica; use another directory or delete it first")]
    AlreadyEnrolled(PathBuf),
    /// The operation needs the account keys, which a pending device does not have yet.
    #[error(
        "this device is still pending: pair it with a trusted device of the account first (approve on the trusted device, join here with its code)"
    )]
    NotTrusted,
    /// The enrollment ticket is unknown, expired or already used (the server does not say
    /// which).
    #[error(
        "the enrollment ticket was already used or has expired: ask the server's operator for a new enrollment bundle"
    )]
    TicketRefused,
    /// The server says the account has no devices, and this enrollment was not for the
    /// first device of a new account (MS-09).
    #[error(
        "the server says account {account:?} has no devices; if this is the first device of a new account, enroll it as a new account; otherwise the server may be misbehaving"
    )]
    NoSuchAccount {
        /// The account named by the bundle.
        account: String,
    },
    /// The enrollment asked to found a new account, but the account already has devices.
    #[error(
        "account {account:?} already has devices: enroll this device without the new-account option and pair it with a trusted device"
    )]
    AccountExists {
        /// The account named by the bundle.
        account: String,
    },
    /// The recovery secret does not derive the account's recovery key. Found before the
    /// ticket is spent: nothing changed on the server.
    #[error(
        "this recovery secret does not belong to the account; check it and try again (the enrollment bundle is still unused)"
    )]
    WrongRecoverySecret,
    /// A pairing key-confirmation MAC did not verify: the code typed is not the one shown,
    /// or the server altered the exchange. The attempt and its code are spent.
    #[error(
        "pairing refused: the code does not match, or the exchange was altered on the way; the code is now spent, so start a new approval on the trusted device and use its new code"
    )]
    WrongCode,
    /// The other device (or the server) ended the pairing attempt; its code is spent.
    #[error(
        "the pairing was ended by the other side ({0}); the code is spent: start a new approval on the trusted device"
    )]
    PairingAborted(String),
    /// No answer from the other device in time.
    #[error(
        "no answer from the other device within {0} s: start the approval and the join again, at the same time"
    )]
    PairingTimeout(u64),
    /// The approver added the new device and sealed the account keys to it, but the new
    /// device did not report, in time, that it is trusted.
    #[error(
        "device {device} was added and the account keys were sealed to it, but it did not report being trusted within {secs} s: it becomes trusted at its next sync"
    )]
    PairingUnconfirmed {
        /// The device being approved.
        device: String,
        /// The timeout, in seconds.
        secs: u64,
    },
    /// A pairing was confirmed but what the server serves afterwards does not match it
    /// (another genesis, no ADD for this device, no key envelope): nothing was trusted.
    #[error("pairing not completed: {0}")]
    Pairing(String),
    /// The enrollment bundle could not be parsed.
    #[error("invalid enrollment bundle: {0}; copy the whole bundle line the operator gave you")]
    Bundle(String),
    /// The key store is protected by a passphrase and none was given
    /// ([`crate::OpenOptions::passphrase`]).
    #[error("this device's key store is protected by a passphrase and none was given")]
    PassphraseRequired,
    /// The key store did not open with the passphrase given (or its file is damaged).
    #[error("cannot open the key store {}: wrong passphrase or damaged file", .0.display())]
    WrongPassphrase(PathBuf),
    /// The key store could not be opened or written (wrong or missing passphrase, corrupt or
    /// missing file).
    #[error("key store: {0}")]
    KeyStore(String),
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The local SQLite database failed (disk full, corruption, locked by another process).
    #[error("local database error: {0}")]
    Database(StorageError),
    /// The local database content is inconsistent (bad lengths, undecryptable value...).
    #[error("local database is corrupt: {0}")]
    Corrupt(String),
    /// TLS setup or handshake failed (pin mismatch, certificate rejected, bad key).
    #[error("TLS: {0}")]
    Tls(String),
    /// Network failure or timeout talking to the server; retry later.
    #[error("network: {0}")]
    Network(String),
    /// The server answered with an error status.
    #[error("server refused {request}: {code} (HTTP {status}, error id {error_id})")]
    Server {
        /// HTTP status.
        status: u16,
        /// `ErrorResponse.code`, e.g. `unauthorized`, `conflict`.
        code: String,
        /// Opaque id to look up in the server log.
        error_id: String,
        /// Method and path of the refused request.
        request: String,
    },
    /// The server's response was malformed or violated the protocol.
    #[error("protocol violation by the server: {0}")]
    Protocol(String),
    /// The account roster from the server failed verification (fork, bad signature, shorter
    /// than the one already verified: MS-10, MS-11, MS-12). Nothing was changed locally.
    #[error(
        "roster verification failed: {0}; the server may be forking or rewriting the device list"
    )]
    Roster(String),
    /// Recovery with a recovery secret failed (wrong secret, bad blob).
    #[error("recovery failed: {0}")]
    Recovery(String),
    /// A cryptographic operation failed.
    #[error("crypto: {0}")]
    Crypto(String),
    /// After a push was refused with 409, the server's chain head for this device in a
    /// collection is not a point of this device's own chain (a different hash at a seq this
    /// device sealed, or a seq it never sealed), and the server's batches of this device do
    /// not verify as its chain from a common point up to that head (which is what a home
    /// restored from an older backup sees, and takes back). The server forked or forged
    /// this device's history; nothing was changed locally (MS-30).
    #[error(
        "the server forked this device's history in collection {collection:?}: {detail}; nothing was changed locally and nothing was re-sent; keep this device's data and report this to the server's operator"
    )]
    ServerFork {
        /// Collection name.
        collection: String,
        /// What the server claimed.
        detail: String,
    },
    /// The server lost batches this device sent (restored from an older backup) and this
    /// device no longer keeps all of them (sent by an older version, which did not keep
    /// acknowledged batches). Nothing was changed locally.
    #[error(
        "the server lost this device's batches {from} to {to} in collection {collection:?} (restored from an older backup?) and this device no longer keeps them all; its edits are still here, but the server cannot take this device's later batches: ask the operator to restore the newest backup"
    )]
    LostBatches {
        /// Collection name.
        collection: String,
        /// First lost seq.
        from: u64,
        /// Last lost seq.
        to: u64,
    },
    /// Another sync of this home (another handle or process) was still running after
    /// waiting for it (see [`crate::Core::sync`]). Nothing was done; sync again later.
    #[error(
        "another sync of this device's home is still running (waited {waited_secs} s for it); nothing was done: sync again once it has finished"
    )]
    SyncBusy {
        /// How long this sync waited.
        waited_secs: u64,
    },
    /// A defect inside Sealsync (a task panicked, its thread stopped). Nothing that was
    /// not committed was kept; please report it.
    #[error("internal error: {0}")]
    Internal(String),
    /// A batch could not be built or a pulled batch failed verification; nothing of it was
    /// applied.
    #[error(
        "batch refused ({check} check) in collection {collection:?} by device {author}: {error}"
    )]
    Batch {
        /// The failed check.
        check: crate::check::Check,
        /// Collection name (or id hex if unknown).
        collection: String,
        /// Author device id (hex).
        author: String,
        /// What the check found.
        error: String,
    },
    /// A typed value could not be turned into JSON (`put_json`, `patch`), or a stored value
    /// is not JSON of the type asked for (`get_json`). The message is serde_json's, with
    /// the collection and key; nothing was written.
    #[error("JSON: {0}")]
    Json(String),
    /// `patch` on a collection that does not use the `fields` policy (or does not exist):
    /// only `fields` collections merge top-level fields. Nothing was written.
    #[error(
        "patch needs a collection with the fields policy, but collection {} {}: create it with Policy::Fields first, or use put/put_json to write the whole value",
        crate::types::echo(.collection),
        match .policy { Some(p) => format!("uses the {p} policy"), None => "does not exist".to_string() }
    )]
    NotFieldsCollection {
        /// Collection named.
        collection: String,
        /// Its policy (`lww` or `manual`); `None` if the collection does not exist.
        policy: Option<String>,
    },
    /// The local database ended a transaction after an error (a full disk, an I/O error):
    /// nothing of the transaction was written. Run it again once the cause is fixed.
    #[error(
        "the transaction was rolled back by the local database ({0}); nothing of it was written"
    )]
    TransactionAborted(String),
}

impl ClientError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// A failure of the local SQLite database: its message, and whether it was only busy
/// (another connection held a lock for longer than the busy timeout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError {
    message: String,
    busy: bool,
}

impl StorageError {
    /// The database was locked by another connection or process (retry later).
    pub fn is_busy(&self) -> bool {
        self.busy
    }

    #[cfg(test)]
    pub(crate) fn for_tests(busy: bool) -> Self {
        Self {
            message: "database is locked".into(),
            busy,
        }
    }
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<rusqlite::Error> for ClientError {
    fn from(e: rusqlite::Error) -> Self {
        let busy = matches!(
            &e,
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        Self::Database(StorageError {
            message: e.to_string(),
            busy,
        })
    }
}

impl From<sealsync_crypto::CryptoError> for ClientError {
    fn from(e: sealsync_crypto::CryptoError) -> Self {
        Self::Crypto(e.to_string())
    }
}
