//! How far the running sync is: batches, records and bytes pushed and pulled, published on
//! a `watch` channel ([`Replica::progress`](crate::Replica::progress), and inside
//! [`SyncStatus`](crate::SyncStatus)) as each request completes.
//!
//! Totals are known for the push (the outbox is counted when the push starts). The server
//! does not say how much a pull will bring, so a pull's totals grow with each page: `total`
//! counts what is known so far, and `pulling` says whether more may come.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::watch;

/// Records and bytes moved one way.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Transfer {
    /// Batches moved.
    pub batches: u64,
    /// Records (mutations) moved.
    pub records: u64,
    /// Bytes of sealed batches moved.
    pub bytes: u64,
    /// Records to move, when known (the push).
    pub total_records: Option<u64>,
    /// Bytes to move, when known (the push).
    pub total_bytes: Option<u64>,
}

/// Progress of the sync that is running (or of the last one, once it ended).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncProgress {
    /// Batches pushed and pulled so far.
    pub done: u64,
    /// Batches known to move: every batch of the push, and the pulled ones so far.
    pub total: u64,
    /// The push.
    pub pushed: Transfer,
    /// The pulls.
    pub pulled: Transfer,
    /// A pull is running and the server may have more.
    pub pulling: bool,
}

/// The sender a replica's cores share.
pub(crate) type ProgressSink = Arc<watch::Sender<SyncProgress>>;

/// A new sink with nothing moved.
pub(crate) fn sink() -> ProgressSink {
    Arc::new(watch::Sender::new(SyncProgress::default()))
}

/// Starts a sync's progress from zero.
pub(crate) fn start(sink: &ProgressSink) {
    sink.send_replace(SyncProgress::default());
}

/// A push of `batches` batches holding `records` records in `bytes` bytes is about to start.
pub(crate) fn push_planned(sink: &ProgressSink, batches: u64, records: u64, bytes: u64) {
    sink.send_modify(|p| {
        p.total += batches;
        p.pushed.total_records = Some(p.pushed.total_records.unwrap_or(0) + records);
        p.pushed.total_bytes = Some(p.pushed.total_bytes.unwrap_or(0) + bytes);
    });
}

/// `batches` batches of `records` records in `bytes` bytes were acknowledged.
pub(crate) fn pushed(sink: &ProgressSink, batches: u64, records: u64, bytes: u64) {
    sink.send_modify(|p| {
        p.done += batches;
        p.pushed.batches += batches;
        p.pushed.records += records;
        p.pushed.bytes += bytes;
    });
}

/// A page of `batches` batches of `records` records in `bytes` bytes was pulled and
/// applied; `more` if the server has more.
pub(crate) fn pulled(sink: &ProgressSink, batches: u64, records: u64, bytes: u64, more: bool) {
    sink.send_modify(|p| {
        p.done += batches;
        p.total += batches;
        p.pulled.batches += batches;
        p.pulled.records += records;
        p.pulled.bytes += bytes;
        p.pulling = more;
    });
}

/// The sync ended.
pub(crate) fn finish(sink: &ProgressSink) {
    sink.send_if_modified(|p| std::mem::replace(&mut p.pulling, false));
}
