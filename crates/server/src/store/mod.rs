//! Server storage behind one trait ([`Store`]), with a SQLite implementation
//! ([`SqliteStore`]).
//!
//! # Design of the seam
//!
//! [`Store`] is object safe (`Arc<dyn Store>`) and async-friendly: every method returns a
//! boxed `Send` future ([`StoreFuture`]) and takes owned arguments, so a future PostgreSQL
//! backend can implement it with native async I/O (tokio-postgres), while the SQLite backend
//! runs its blocking work on `spawn_blocking`. Methods are whole operations with their
//! atomicity inside the backend (ticket consumption plus device insertion, a push request's
//! batches, a roster append conditional on its sequence number), so handlers never hold a
//! transaction across awaits.
//!
//! Chain decisions for pushes use `sealsync_core::check_chain` inside the backend's
//! transaction: the one verification path shared with devices.

mod log;
mod pairing;
mod schema;
mod sqlite;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;

use sealsync_core::{ChainCheck, CollectionId, DeviceId, VerifiedHeader};

pub use sqlite::{SampleBatch, SqliteStore};

/// The future every [`Store`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a storage operation failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Enrollment: the ticket hash is unknown, the ticket expired or was already used.
    #[error("enrollment ticket unknown, expired or already used")]
    TicketInvalid,
    /// Enrollment: a device with this id is already enrolled (the ticket stays unused).
    #[error("device already enrolled")]
    DeviceExists,
    /// A conflicting row exists: roster sequence number taken or not next, recovery blob
    /// already stored with other bytes, a different descriptor from the same device.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// Push: batch number `index` of the request failed the chain check (gap or fork);
    /// nothing of the request was stored.
    #[error("batch {index} refused by the chain check: {check:?}")]
    Chain {
        /// Position of the refused batch in the request.
        index: usize,
        /// The failed check (never `Next` or `Duplicate`).
        check: ChainCheck,
    },
    /// A value read from the database has the wrong shape (corruption or a foreign writer).
    #[error("corrupt row: {0}")]
    Corrupt(&'static str),
    /// The database reports a schema version newer than this binary understands.
    #[error("database schema version {0} is newer than this server supports")]
    SchemaTooNew(i64),
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The blocking task running the operation panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(String),
}

/// A one-time enrollment ticket as stored: only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTicket {
    /// SHA-256 of the ticket bytes.
    pub hash: [u8; 32],
    /// Account the ticket enrolls into.
    pub account: String,
    /// Issue time, ms since the Unix epoch.
    pub created_ms: u64,
    /// The ticket is refused at or after this time.
    pub expires_ms: u64,
}

/// Admission state of an enrolled device.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionState {
    /// May use the API.
    Active,
    /// Refused on every request (set by an operator).
    Revoked,
}

impl AdmissionState {
    /// The stored and reported text ("active", "revoked").
    pub fn as_str(self) -> &'static str {
        match self {
            AdmissionState::Active => "active",
            AdmissionState::Revoked => "revoked",
        }
    }

    /// Parses the stored text; unknown text is treated as revoked (fail closed).
    pub fn parse(s: &str) -> Self {
        if s == "active" {
            AdmissionState::Active
        } else {
            AdmissionState::Revoked
        }
    }
}

/// A device being enrolled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    /// Device id (derived from `sign_pk`).
    pub device_id: DeviceId,
    /// Display name chosen by the device.
    pub name: String,
    /// Ed25519 batch-signing public key.
    pub sign_pk: [u8; 32],
    /// X25519 key-wrapping public key.
    pub kx_pk: [u8; 32],
    /// SHA-256 of the client certificate issued to it.
    pub cert_fp: [u8; 32],
    /// Enrollment time, ms since the Unix epoch.
    pub enrolled_ms: u64,
    /// The device founds its account (`--new-account`): the enrollment is refused, in the
    /// transaction that would spend the ticket, when the account has a roster or another
    /// active device (a founder that has not uploaded its genesis yet).
    pub founds_account: bool,
}

/// An enrolled device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Device id.
    pub device_id: DeviceId,
    /// Account it belongs to (from its ticket).
    pub account: String,
    /// Display name.
    pub name: String,
    /// Ed25519 batch-signing public key.
    pub sign_pk: [u8; 32],
    /// X25519 key-wrapping public key.
    pub kx_pk: [u8; 32],
    /// SHA-256 of its client certificate.
    pub cert_fp: [u8; 32],
    /// Admission state.
    pub state: AdmissionState,
    /// Enrollment time, ms since the Unix epoch.
    pub enrolled_ms: u64,
}

/// One stored roster entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterRow {
    /// Entry sequence number (genesis is 0).
    pub seq: u64,
    /// Device the entry is about.
    pub subject: DeviceId,
    /// Roster entry hash.
    pub hash: [u8; 32],
    /// The encoded `SignedRosterEntry`, as received.
    pub entry: Vec<u8>,
}

/// A key envelope to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEnvelope {
    /// Account of sender and recipient.
    pub account: String,
    /// Sending device (the caller).
    pub sender: DeviceId,
    /// Device the envelope is addressed to.
    pub recipient: DeviceId,
    /// SHA-256 of `sealed` (deduplicates retries).
    pub hash: [u8; 32],
    /// The encoded `Sealed`.
    pub sealed: Vec<u8>,
    /// Receive time, ms since the Unix epoch.
    pub created_ms: u64,
}

/// A collection descriptor to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCollection {
    /// Account.
    pub account: String,
    /// Blinded collection id.
    pub collection: CollectionId,
    /// Author (the caller).
    pub device: DeviceId,
    /// SHA-256 of `sealed`.
    pub hash: [u8; 32],
    /// The encoded `Sealed` descriptor.
    pub sealed: Vec<u8>,
    /// Receive time, ms since the Unix epoch.
    pub created_ms: u64,
}

/// Whether a write created a row or found the identical one already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Stored now.
    Created,
    /// The same bytes were already stored; nothing changed.
    Unchanged,
}

/// One verified batch of a push request.
#[derive(Debug, Clone)]
pub struct PushItem {
    /// The header as `sealsync_core::verify_batch` returned it (author, collection, hash).
    pub verified: VerifiedHeader,
    /// The encoded `Sealed`, stored and served as is.
    pub bytes: Vec<u8>,
}

/// What happened to one batch of a push request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushOutcome {
    /// Collection of the batch.
    pub collection: CollectionId,
    /// Sequence number of the batch.
    pub seq: u64,
    /// Its index in the (account, collection) log (the original one for a duplicate).
    pub log_index: u64,
    /// True when the batch was already stored with the same hash (idempotent re-push).
    pub duplicate: bool,
}

/// One page of a pull.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullPage {
    /// `(log index, encoded Sealed)` in index order.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// True when entries after the last one returned exist.
    pub more: bool,
}

/// A pairing attempt to open (see `docs/protocol.md`, "Pairing").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPairing {
    /// Account of both devices.
    pub account: String,
    /// The new device.
    pub device: DeviceId,
    /// Attempt id chosen by the approver.
    pub attempt_id: [u8; 16],
    /// The approving device (the caller).
    pub approver: DeviceId,
    /// The encoded `PairingStart`.
    pub start: Vec<u8>,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
    /// The attempt is closed at or after this time.
    pub expires_ms: u64,
}

/// The current pairing attempt of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingRow {
    /// Attempt id.
    pub attempt_id: [u8; 16],
    /// The approving device.
    pub approver: DeviceId,
    /// Encoded `PairingStart`.
    pub start: Vec<u8>,
    /// Encoded `PairingReply`, once the new device answered.
    pub reply: Option<Vec<u8>>,
    /// Encoded `PairingConfirm`, once the approver confirmed.
    pub confirm: Option<Vec<u8>>,
    /// Encoded `PairingDone`, once the new device is trusted.
    pub done: Option<Vec<u8>>,
    /// Whether either side aborted the attempt.
    pub aborted: bool,
}

/// Storage of the server. See the module documentation for the design.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Stores a new enrollment ticket.
    fn insert_ticket(&self, ticket: NewTicket) -> StoreFuture<'_, ()>;

    /// In one transaction: finds the ticket by hash, checks it is unexpired at `now_ms` and
    /// unused, marks it used and inserts the device. Returns the ticket's account.
    /// Errors: [`StoreError::TicketInvalid`], [`StoreError::DeviceExists`],
    /// [`StoreError::Conflict`] for a founder of an account that has devices (nothing
    /// changed).
    fn enroll(
        &self,
        ticket_hash: [u8; 32],
        now_ms: u64,
        device: NewDevice,
    ) -> StoreFuture<'_, String>;

    /// Looks a device up by id.
    fn device(&self, id: DeviceId) -> StoreFuture<'_, Option<DeviceRecord>>;

    /// All devices of an account, in enrollment order.
    fn account_devices(&self, account: String) -> StoreFuture<'_, Vec<DeviceRecord>>;

    /// Roster entries of an account with `seq >= from_seq`, in order.
    fn roster(&self, account: String, from_seq: u64) -> StoreFuture<'_, Vec<RosterRow>>;

    /// Appends a roster entry, which must be the next one: `row.seq` equals the number of
    /// stored entries, else [`StoreError::Conflict`].
    fn append_roster(&self, account: String, row: RosterRow) -> StoreFuture<'_, ()>;

    /// True when `device` is the subject of one of the account's roster entries.
    fn is_roster_member(&self, account: String, device: DeviceId) -> StoreFuture<'_, bool>;

    /// Stores an envelope (identical bytes for the same recipient: unchanged).
    fn put_envelope(&self, envelope: NewEnvelope) -> StoreFuture<'_, Written>;

    /// Encoded envelopes addressed to `recipient`, oldest first.
    fn envelopes_for(&self, account: String, recipient: DeviceId) -> StoreFuture<'_, Vec<Vec<u8>>>;

    /// Stores the account's recovery blob once; identical bytes again: unchanged; other
    /// bytes: [`StoreError::Conflict`].
    fn put_recovery(&self, account: String, blob: Vec<u8>, now_ms: u64)
    -> StoreFuture<'_, Written>;

    /// The account's recovery blob.
    fn recovery(&self, account: String) -> StoreFuture<'_, Option<Vec<u8>>>;

    /// Stores a descriptor, one per (account, collection, author); identical bytes again:
    /// unchanged; other bytes from the same author: [`StoreError::Conflict`].
    fn put_collection(&self, collection: NewCollection) -> StoreFuture<'_, Written>;

    /// Encoded descriptors of an account, ordered by (collection, author).
    fn collections(&self, account: String) -> StoreFuture<'_, Vec<Vec<u8>>>;

    /// Appends the batches of one push request in one transaction, in order: each batch is
    /// checked against its author's chain in that collection; `Next` is appended with the
    /// next log index, `Duplicate` reports the original index. A gap or fork refuses the
    /// whole request with [`StoreError::Chain`] and stores nothing.
    fn push(
        &self,
        account: String,
        batches: Vec<PushItem>,
        now_ms: u64,
    ) -> StoreFuture<'_, Vec<PushOutcome>>;

    /// The chain head of `device` in (account, collection) that the push check compares
    /// against: `(last_seq, last_hash)`, or `None` when the device has stored no batch there.
    fn chain_head(
        &self,
        account: String,
        collection: CollectionId,
        device: DeviceId,
    ) -> StoreFuture<'_, Option<(u64, [u8; 32])>>;

    /// Log entries of (account, collection) with index > `after`, in order, at most `limit`
    /// entries and, past the first entry, at most `max_bytes` of batch bytes.
    fn pull(
        &self,
        account: String,
        collection: CollectionId,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> StoreFuture<'_, PullPage>;

    /// The last log index of each (account, collection) log named, in the order given (0
    /// for an empty log): what a watch compares its cursors against. Only `account`'s logs
    /// are read, so another account's collection id reads as an empty log.
    fn log_heads(
        &self,
        account: String,
        collections: Vec<CollectionId>,
    ) -> StoreFuture<'_, Vec<u64>>;

    /// The account of an unexpired, unused ticket, changing nothing. Errors:
    /// [`StoreError::TicketInvalid`].
    fn ticket_account(&self, ticket_hash: [u8; 32], now_ms: u64) -> StoreFuture<'_, String>;

    /// Opens a pairing attempt for (account, device), replacing an earlier one of the same
    /// approver or one that ended (aborted, done or expired); [`StoreError::Conflict`]
    /// while another approver's attempt is open.
    fn pairing_start(&self, pairing: NewPairing) -> StoreFuture<'_, ()>;

    /// The attempt for (account, device), unless there is none or it expired at `now_ms`.
    fn pairing(
        &self,
        account: String,
        device: DeviceId,
        now_ms: u64,
    ) -> StoreFuture<'_, Option<PairingRow>>;

    /// Stores the one reply of attempt `attempt_id`: [`StoreError::Conflict`] when the
    /// attempt is not the current one, already has a reply, was aborted or expired.
    fn pairing_reply(
        &self,
        account: String,
        device: DeviceId,
        attempt_id: [u8; 16],
        reply: Vec<u8>,
        now_ms: u64,
    ) -> StoreFuture<'_, ()>;

    /// Stores the approver's confirmation of attempt `attempt_id`, which must be current,
    /// opened by `approver`, answered, not aborted, unexpired and not yet confirmed (else
    /// [`StoreError::Conflict`]).
    fn pairing_confirm(
        &self,
        account: String,
        device: DeviceId,
        attempt_id: [u8; 16],
        approver: DeviceId,
        confirm: Vec<u8>,
        now_ms: u64,
    ) -> StoreFuture<'_, ()>;

    /// Stores the new device's done message of attempt `attempt_id`, which must be
    /// current, confirmed, not aborted, unexpired and not yet done (else
    /// [`StoreError::Conflict`]).
    fn pairing_done(
        &self,
        account: String,
        device: DeviceId,
        attempt_id: [u8; 16],
        done: Vec<u8>,
        now_ms: u64,
    ) -> StoreFuture<'_, ()>;

    /// Marks attempt `attempt_id` aborted (no-op when it is not the current one).
    fn pairing_abort(
        &self,
        account: String,
        device: DeviceId,
        attempt_id: [u8; 16],
    ) -> StoreFuture<'_, ()>;
}
