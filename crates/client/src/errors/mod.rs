//! The public error types, one per kind of operation, so that each `match` lists only what
//! that operation can meet:
//!
//! | operations | error |
//! | --- | --- |
//! | [`Replica::open`](crate::Replica::open), `open_with`, [`FileKeyStore::open_with`](crate::FileKeyStore::open_with) | [`OpenError`] |
//! | [`Replica::enroll`](crate::Replica::enroll) | [`EnrollError`] |
//! | reads: `get`, `list`, `scan`, `find`, `history`, `conflicts`, `status`, `state_root`, `subscribe` | [`ReadError`] |
//! | local writes: `put`, `put_many`, `put_json`, `patch`, `delete`, `resolve`, `create_collection`, `create_index`, the operations of a [`Transaction`](crate::Transaction) | [`WriteError`] |
//! | `sync`, the sync driver | [`SyncError`] |
//! | `begin_approval`, `finish_approval`, `join`, `pending_devices` | [`PairingError`] |
//!
//! Every type is `#[non_exhaustive]` and holds no type of another crate: local failures are
//! a [`LocalError`], failures talking to the server a [`NetError`]. Messages say what went
//! wrong; they name no command of the `sealsync` CLI (it adds those). An error that an
//! operation does not expect is `Internal`: a defect to report.

use std::path::PathBuf;

use crate::check::Check;
use crate::error::ClientError;

mod common;

pub use common::{LocalError, NetError};
use common::{Split, split};

/// Why a replica could not be opened.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The home directory holds no enrolled replica.
    #[error("no replica in {0}: enroll this device first")]
    NotEnrolled(PathBuf),
    /// The key store is protected by a passphrase and none was given.
    #[error("this device's key store is protected by a passphrase and none was given")]
    PassphraseRequired,
    /// The key store did not open with the passphrase given (or its file is damaged).
    #[error("cannot open the key store {}: wrong passphrase or damaged file", .0.display())]
    WrongPassphrase(PathBuf),
    /// The local storage failed.
    #[error(transparent)]
    Local(LocalError),
    /// A defect inside Sealsync.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ClientError> for OpenError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::NotEnrolled(p) => Self::NotEnrolled(p),
            ClientError::PassphraseRequired => Self::PassphraseRequired,
            ClientError::WrongPassphrase(p) => Self::WrongPassphrase(p),
            e => match split(e) {
                Split::Local(l) => Self::Local(l),
                Split::Net(n) => Self::Internal(n.to_string()),
                Split::Other(o) => Self::Internal(o.to_string()),
            },
        }
    }
}

/// Why an enrollment failed. Nothing is left in the home directory after a failure, except
/// where the variant says otherwise.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The home directory already holds a replica.
    #[error("{0} already holds an enrolled replica; use another directory or delete it first")]
    AlreadyEnrolled(PathBuf),
    /// The enrollment ticket is unknown, expired or already used (the server does not say
    /// which).
    #[error(
        "the enrollment ticket was already used or has expired: ask the server's operator for a new enrollment bundle"
    )]
    TicketRefused,
    /// The server says the account has no devices, and this was not the enrollment of the
    /// first device of a new account (MS-09).
    #[error(
        "the server says account {account:?} has no devices; if this is the first device of a new account, enroll it as a new account; otherwise the server may be misbehaving"
    )]
    NoSuchAccount {
        /// The account named by the bundle.
        account: String,
    },
    /// A new account was asked for, but the account already has devices.
    #[error(
        "account {account:?} already has devices: enroll this device without founding a new account, then pair it with a trusted device"
    )]
    AccountExists {
        /// The account named by the bundle.
        account: String,
    },
    /// The recovery secret does not derive the account's recovery key (found before the
    /// ticket is spent: the bundle is still unused).
    #[error(
        "this recovery secret does not belong to the account; check it and try again (the enrollment bundle is still unused)"
    )]
    WrongRecoverySecret,
    /// The enrollment bundle could not be parsed.
    #[error("invalid enrollment bundle: {0}")]
    Bundle(String),
    /// Recovery with the recovery secret failed.
    #[error("recovery failed: {0}")]
    Recovery(String),
    /// The server's roster failed verification.
    #[error(
        "roster verification failed: {0}; the server may be forking or rewriting the device list"
    )]
    Roster(String),
    /// An option is unusable (empty name, bad URL in the bundle...).
    #[error("{0}")]
    InvalidInput(String),
    /// Talking to the server failed.
    #[error(transparent)]
    Net(NetError),
    /// The local storage failed.
    #[error(transparent)]
    Local(LocalError),
    /// A defect inside Sealsync.
    #[error("internal error: {0}")]
    Internal(String),
}

impl EnrollError {
    /// Whether the same enrollment may succeed later (the server was unreachable, busy or
    /// failing). Ask for a new bundle if the ticket is then refused.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Net(n) => n.is_retryable(),
            Self::Local(l) => l.is_retryable(),
            _ => false,
        }
    }
}

impl From<ClientError> for EnrollError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::AlreadyEnrolled(p) => Self::AlreadyEnrolled(p),
            ClientError::TicketRefused => Self::TicketRefused,
            ClientError::NoSuchAccount { account } => Self::NoSuchAccount { account },
            ClientError::AccountExists { account } => Self::AccountExists { account },
            ClientError::WrongRecoverySecret => Self::WrongRecoverySecret,
            ClientError::Bundle(m) => Self::Bundle(m),
            ClientError::Recovery(m) => Self::Recovery(m),
            ClientError::Roster(m) => Self::Roster(m),
            ClientError::InvalidInput(m) => Self::InvalidInput(m),
            e => match split(e) {
                Split::Local(l) => Self::Local(l),
                Split::Net(n) => Self::Net(n),
                Split::Other(o) => Self::Internal(o.to_string()),
            },
        }
    }
}

/// Why a read failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// An argument is unusable (a key too long, a collection with another policy).
    #[error("{0}")]
    InvalidInput(String),
    /// `find` on a field that has no index in that collection.
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
    /// A stored value is not JSON of the type asked for (`get_json`).
    #[error("JSON: {0}")]
    Json(String),
    /// The local storage failed.
    #[error(transparent)]
    Local(LocalError),
    /// A defect inside Sealsync.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ClientError> for ReadError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::InvalidInput(m) => Self::InvalidInput(m),
            ClientError::Json(m) => Self::Json(m),
            ClientError::NoIndex { collection, field } => Self::NoIndex { collection, field },
            e => match split(e) {
                Split::Local(l) => Self::Local(l),
                Split::Net(n) => Self::Internal(n.to_string()),
                Split::Other(o) => Self::Internal(o.to_string()),
            },
        }
    }
}

/// Why a local write failed. A failed write changed nothing.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// An argument is unusable (key or value too large, a `fields` collection given
    /// something other than a JSON object, a policy that does not allow the operation).
    #[error("{0}")]
    InvalidInput(String),
    /// The record to resolve has no versions.
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
    /// A typed value could not be turned into JSON (`put_json`, `patch`); nothing was
    /// written. The message is serde_json's, with the collection and key.
    #[error("JSON: {0}")]
    Json(String),
    /// `patch` on a collection that does not use the `fields` policy (or does not exist).
    #[error(
        "patch needs a collection with the fields policy, but collection {} {}: create it with Policy::Fields first, or write the whole value with put/put_json",
        crate::types::echo(.collection),
        match .policy { Some(p) => format!("uses the {p} policy"), None => "does not exist".to_string() }
    )]
    NotFieldsCollection {
        /// Collection named.
        collection: String,
        /// Its policy; `None` if the collection does not exist.
        policy: Option<String>,
    },
    /// The local database ended the transaction after an error (full disk, I/O error):
    /// nothing of it was written.
    #[error(
        "the transaction was rolled back by the local database ({0}); nothing of it was written"
    )]
    TransactionAborted(String),
    /// The local storage failed.
    #[error(transparent)]
    Local(LocalError),
    /// A defect inside Sealsync.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ClientError> for WriteError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::InvalidInput(m) => Self::InvalidInput(m),
            ClientError::NotFound { collection, key } => Self::NotFound { collection, key },
            ClientError::Json(m) => Self::Json(m),
            ClientError::NotFieldsCollection { collection, policy } => {
                Self::NotFieldsCollection { collection, policy }
            }
            ClientError::TransactionAborted(m) => Self::TransactionAborted(m),
            e => match split(e) {
                Split::Local(l) => Self::Local(l),
                Split::Net(n) => Self::Internal(n.to_string()),
                Split::Other(o) => Self::Internal(o.to_string()),
            },
        }
    }
}

/// A read inside a write (a [`Transaction`](crate::Transaction)'s `get`), as the write's
/// failure, so that one error type serves the whole closure.
impl From<ReadError> for WriteError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::InvalidInput(m) => Self::InvalidInput(m),
            e @ ReadError::NoIndex { .. } => Self::InvalidInput(e.to_string()),
            ReadError::Json(m) => Self::Json(m),
            ReadError::Local(l) => Self::Local(l),
            ReadError::Internal(m) => Self::Internal(m),
        }
    }
}

/// Why a sync failed. What the sync committed before the failure stays (each step is one
/// local transaction); nothing else changed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Talking to the server failed.
    #[error(transparent)]
    Net(NetError),
    /// The roster from the server failed verification (fork, bad signature, shorter than
    /// the one already verified: MS-10, MS-11, MS-12). Nothing was changed locally.
    #[error(
        "roster verification failed: {0}; the server may be forking or rewriting the device list"
    )]
    Roster(String),
    /// The server forked or forged this device's own history in a collection (MS-30).
    #[error(
        "the server forked this device's history in collection {collection:?}: {detail}; nothing was changed locally and nothing was re-sent; keep this device's data and report this to the server's operator"
    )]
    ServerFork {
        /// Collection name.
        collection: String,
        /// What the server claimed.
        detail: String,
    },
    /// The server lost batches of this device that it no longer keeps all of.
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
    /// Another sync of this home was still running after waiting for it; nothing was done.
    #[error(
        "another sync of this device's home is still running (waited {waited_secs} s for it); nothing was done"
    )]
    Busy {
        /// How long this sync waited.
        waited_secs: u64,
    },
    /// A batch could not be built.
    #[error(
        "batch refused ({check} check) in collection {collection:?} by device {author}: {error}"
    )]
    Batch {
        /// The failed check.
        check: Check,
        /// Collection name.
        collection: String,
        /// Author device id (hex).
        author: String,
        /// What the check found.
        error: String,
    },
    /// The device's own storage failed.
    #[error(transparent)]
    Local(LocalError),
    /// A defect inside Sealsync.
    #[error("internal error: {0}")]
    Internal(String),
}

impl SyncError {
    /// Whether the same sync may succeed later without anyone changing anything (see
    /// [`NetError::is_retryable`]; a busy home or database). The driver retries these.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Net(n) => n.is_retryable(),
            Self::Busy { .. } => true,
            Self::Local(l) => l.is_retryable(),
            _ => false,
        }
    }

    /// A network or TLS failure: the server was not reached.
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(self, Self::Net(NetError::Network(_) | NetError::Tls(_)))
    }
}

impl From<ClientError> for SyncError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Roster(m) => Self::Roster(m),
            ClientError::ServerFork { collection, detail } => {
                Self::ServerFork { collection, detail }
            }
            ClientError::LostBatches {
                collection,
                from,
                to,
            } => Self::LostBatches {
                collection,
                from,
                to,
            },
            ClientError::SyncBusy { waited_secs } => Self::Busy { waited_secs },
            ClientError::Batch {
                check,
                collection,
                author,
                error,
            } => Self::Batch {
                check,
                collection,
                author,
                error,
            },
            e => match split(e) {
                Split::Local(l) => Self::Local(l),
                Split::Net(n) => Self::Net(n),
                Split::Other(o) => Self::Internal(o.to_string()),
            },
        }
    }
}

/// Why a pairing step failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PairingError {
    /// A key-confirmation MAC did not verify: the code typed is not the one shown, or the
    /// server altered the exchange. The attempt and its code are spent; nothing was sealed.
    #[error(
        "pairing refused: the code does not match, or the exchange was altered on the way; the code is now spent: start a new approval on the trusted device and use its new code"
    )]
    WrongCode,
    /// The other device (or the server) ended the attempt; its code is spent.
    #[error(
        "the pairing was ended by the other side ({0}); the code is spent: start a new approval on the trusted device"
    )]
    Aborted(String),
    /// No answer from the other device in time.
    #[error(
        "no answer from the other device within {0} s: start the approval and the join again, at the same time"
    )]
    Timeout(u64),
    /// The device was added and the account keys sealed to it, but it did not report, in
    /// time, that it is trusted (it becomes trusted at its next sync).
    #[error(
        "device {device} was added and the account keys were sealed to it, but it did not report being trusted within {secs} s: it becomes trusted at its next sync"
    )]
    Unconfirmed {
        /// The device being approved.
        device: String,
        /// The timeout, in seconds.
        secs: u64,
    },
    /// The pairing was confirmed but what the server serves afterwards does not match it:
    /// nothing was trusted.
    #[error("pairing not completed: {0}")]
    Refused(String),
    /// Approving needs the account keys, which a pending device does not have.
    #[error("this device is still pending: only a trusted device can approve another")]
    NotTrusted,
    /// An argument is unusable (an empty code...).
    #[error("{0}")]
    InvalidInput(String),
    /// The server's roster failed verification.
    #[error(
        "roster verification failed: {0}; the server may be forking or rewriting the device list"
    )]
    Roster(String),
    /// Talking to the server failed.
    #[error(transparent)]
    Net(NetError),
    /// The local storage failed.
    #[error(transparent)]
    Local(LocalError),
    /// A defect inside Sealsync.
    #[error("internal error: {0}")]
    Internal(String),
}

impl PairingError {
    /// Whether the same step may succeed later (the server was unreachable, busy or
    /// failing). A spent code never is: start a new approval.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Net(n) => n.is_retryable(),
            Self::Local(l) => l.is_retryable(),
            _ => false,
        }
    }
}

impl From<ClientError> for PairingError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::WrongCode => Self::WrongCode,
            ClientError::PairingAborted(m) => Self::Aborted(m),
            ClientError::PairingTimeout(s) => Self::Timeout(s),
            ClientError::PairingUnconfirmed { device, secs } => Self::Unconfirmed { device, secs },
            ClientError::Pairing(m) => Self::Refused(m),
            ClientError::NotTrusted => Self::NotTrusted,
            ClientError::InvalidInput(m) => Self::InvalidInput(m),
            ClientError::Roster(m) => Self::Roster(m),
            e => match split(e) {
                Split::Local(l) => Self::Local(l),
                Split::Net(n) => Self::Net(n),
                Split::Other(o) => Self::Internal(o.to_string()),
            },
        }
    }
}
