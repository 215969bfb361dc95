//! The sync engine: roster, keys, descriptors, push and pull.
//!
//! One [`Core::sync`] runs, holding the home's sync lock (one sync at a time across
//! handles and processes: `crate::sync_lock`), over one mutual-TLS connection:
//! 0. `GET /v1/status`, learning the offset of the server's clock (trusted time for HLC
//!    ticks: `crate::clock`, NA-10);
//! 1. pending first-device uploads (genesis, recovery blob) if an earlier attempt failed;
//! 2. `GET /v1/roster?after=len`, extending the verified roster (a fork or rewrite is
//!    refused: MS-12);
//! 3. for a pending device: nothing, unless a pairing was confirmed (`crate::pairing`) and
//!    not yet completed; then the roster and key envelope are checked against the
//!    confirmed genesis and roster head, and only then is the device trusted;
//! 4. for a trusted device: pin each new collection's descriptor in the roster or adopt the
//!    policy another device pinned first (`crate::collections`), seal unsent edits into the
//!    outbox, push the outbox of pinned collections (after a 409, re-sending what a
//!    restored server lost, or taking back the batches a restored home forgot: see
//!    `rollback`), then pull every pinned collection page by page (`crate::pull`). Each
//!    page is verified completely (roster key signature, roster head known, chain, epoch,
//!    commitment, decryption, mutation checks) before one transaction applies it and moves
//!    the cursor; a failing page is refused whole and reported (CF-06, MS-12, MS-16, MS-23,
//!    MS-25, MS-26).

use std::collections::{BTreeSet, HashMap};

use sealsync_core::{AccountKeys, BatchHash, CollectionId};
use sealsync_proto::{PushRequest, PushResponse, RosterResponse, Sealed, StatusResponse};

use crate::Core;
use crate::clock::clock_offset;
use crate::error::ClientError;
use crate::net::{Connection, ServerUrl, tls};
use crate::store::{SealContext, corrupt, meta, now_ms};
use crate::types::{DeviceState, SyncIssue, SyncReport};

/// Batches asked for per pull page.
pub(crate) const PULL_PAGE_BATCHES: u64 = 1000;
/// Largest push request body this client builds.
pub(crate) const PUSH_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// How long the connection of a sync is kept for the next one (the server closes idle
/// device connections after 300 s).
pub(crate) const KEEP_CONNECTION: std::time::Duration = std::time::Duration::from_secs(60);

impl Core {
    /// Opens a mutual-TLS connection to the server. The returned future borrows nothing
    /// from the replica (so the replica need not be `Sync`).
    pub(crate) fn connect(
        &self,
    ) -> impl Future<Output = Result<Connection, ClientError>> + Send + 'static + use<> {
        let prepared = self.connection_config();
        let timeouts = self.timeouts;
        async move {
            let (url, config) = prepared?;
            Connection::connect(&url, config, timeouts).await
        }
    }

    fn connection_config(&self) -> Result<(ServerUrl, rustls::ClientConfig), ClientError> {
        let url = ServerUrl::parse(&self.server_url)?;
        let ca = self.store.meta_required(meta::CA_DER)?;
        let pin: [u8; 32] = self
            .store
            .meta_required(meta::CA_PIN)?
            .try_into()
            .map_err(|_| corrupt("CA pin"))?;
        let cert = self.store.meta_required(meta::CERT_DER)?;
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(self.secrets.tls_key_der.to_vec().into());
        Ok((url, tls::mtls_config(&ca, &pin, &cert, key)?))
    }

    pub(crate) fn account_keys(&self) -> Result<&AccountKeys, ClientError> {
        self.secrets
            .account_keys
            .as_ref()
            .ok_or(ClientError::NotTrusted)
    }

    /// The verified roster of a trusted device ([`ClientError::NotTrusted`] while pending).
    pub(crate) fn trusted_roster(&self) -> Result<&sealsync_core::Roster, ClientError> {
        self.roster.as_ref().ok_or(ClientError::NotTrusted)
    }

    /// Synchronises with the server; see the module documentation for the steps. The
    /// outcome is kept in the local store for [`Core::status`] (`last_sync`,
    /// `last_error`).
    ///
    /// One sync runs at a time per home, across every handle and process on it
    /// (`crate::sync_lock`). If another sync of this home is running, this one waits for it
    /// to finish, then runs (so edits made meanwhile are pushed), checking every 25 ms for
    /// up to [`crate::SYNC_LOCK_WAIT`] (2 minutes); after that it returns
    /// [`ClientError::SyncBusy`] having done nothing. Dropping the future releases the
    /// home for the next sync. Reads and local edits never wait for a sync.
    pub(crate) async fn sync(&mut self) -> Result<SyncReport, ClientError> {
        let _lock = crate::sync_lock::lock_sync(&self.home, crate::SYNC_LOCK_WAIT).await?;
        self.refresh()?;
        crate::progress::start(&self.progress);
        let mut result = self.sync_steps().await;
        crate::progress::finish(&self.progress);
        if let Ok(report) = &mut result {
            // Each changed record once, in (collection, key) order.
            report.changed.sort_unstable();
            report.changed.dedup();
        }
        // Recording the outcome must not hide it: a failure to record is only logged.
        if let Err(e) = self.record_sync_outcome(&result) {
            tracing::warn!(error = %e, "cannot record the sync outcome");
        }
        result
    }

    /// Keeps the outcome of a sync for [`Core::status`]: a sync that reached the end with
    /// nothing refused sets `last_sync` and clears `last_error`; a failure or a refusal sets
    /// `last_error` (its one-line message, which names checks and collections, never a
    /// secret or a record's contents) and leaves `last_sync` alone.
    fn record_sync_outcome(
        &mut self,
        result: &Result<SyncReport, ClientError>,
    ) -> Result<(), ClientError> {
        let now = now_ms().to_be_bytes();
        let error = match result {
            Ok(report) => match report.errors.first() {
                None => {
                    return self.store.set_meta(&[
                        (meta::LAST_SYNC, Some(&now)),
                        (meta::LAST_ERROR, None),
                        (meta::LAST_ERROR_AT, None),
                    ]);
                }
                Some(first) => format!(
                    "{} refused in this sync; first: {} in {} ({} check)",
                    report.errors.len(),
                    first.message,
                    crate::types::echo(&first.collection),
                    first.check
                ),
            },
            Err(e) => e.to_string(),
        };
        let error = crate::types::truncate(&error.replace(['\n', '\r'], " "), 400);
        self.store.set_meta(&[
            (meta::LAST_ERROR, Some(error.as_bytes())),
            (meta::LAST_ERROR_AT, Some(&now)),
        ])
    }

    async fn sync_steps(&mut self) -> Result<SyncReport, ClientError> {
        let (mut conn, fresh) = match self.kept.take() {
            Some((c, at)) if c.usable() && at.elapsed() < KEEP_CONNECTION => (c, false),
            _ => (self.connect().await?, true),
        };
        let report = self.sync_on(&mut conn, fresh).await?;
        // Only a connection that carried a whole sync is kept; any error dropped it.
        self.kept = Some((conn, std::time::Instant::now()));
        Ok(report)
    }

    /// The steps of a sync over `conn`; `fresh` when the connection is new. The server's
    /// clock is read on a new connection, or when this device's clock jumped since.
    async fn sync_on(
        &mut self,
        conn: &mut Connection,
        fresh: bool,
    ) -> Result<SyncReport, ClientError> {
        let mut report = SyncReport::default();
        if fresh || self.clock_jumped() {
            self.learn_server_time(conn).await?;
        }
        self.finish_setup_uploads(conn).await?;
        if self.state == DeviceState::Pending {
            // Only a confirmed pairing (`crate::pairing`) makes a pending device trusted: the
            // server's roster and envelopes alone never do (MS-10, MS-11, MS-15).
            if !self.finish_pairing(conn).await? {
                report.still_pending = true;
                return Ok(report);
            }
            report.became_trusted = true;
        }
        self.sync_roster(conn).await?;
        self.sync_collections(conn, &mut report).await?;
        self.repair_future_stamps(conn, &mut report).await?;
        self.seal_outbox()?;
        let own = self.push_outbox(conn, &mut report).await?;
        for coll in self.store.collections()? {
            if coll.cid.is_some() && coll.pinned {
                let own = own.get(&coll.id);
                self.pull_collection(conn, coll, own, &mut report).await?;
            }
        }
        self.retry_after_roster_growth(conn, &mut report).await?;
        Ok(report)
    }

    /// A batch naming a roster head this device does not know (MS-12) is either a roster
    /// fork or an entry appended after this sync fetched the roster. Fetch the roster once
    /// more; if it grew, pull the refused collections again, so only a head that stays
    /// unknown is reported.
    async fn retry_after_roster_growth(
        &mut self,
        conn: &mut Connection,
        report: &mut SyncReport,
    ) -> Result<(), ClientError> {
        if !report.errors.iter().any(|e| e.check == "roster") {
            return Ok(());
        }
        let before = self.trusted_roster()?.len();
        self.sync_roster(conn).await?;
        if self.trusted_roster()?.len() == before {
            return Ok(());
        }
        let refused: Vec<String> = report
            .errors
            .iter()
            .filter(|e| e.check == "roster")
            .map(|e| e.collection.clone())
            .collect();
        report
            .errors
            .retain(|e| !(e.check == "roster" && refused.contains(&e.collection)));
        for coll in self.store.collections()? {
            if coll.cid.is_some() && coll.pinned && refused.contains(&coll.name) {
                self.pull_collection(conn, coll, None, report).await?;
            }
        }
        Ok(())
    }

    /// `GET /v1/status`: stores the offset of the server's clock to this device's, which HLC
    /// ticks use from then on (see `crate::clock`; a lying server can only slow the clock).
    /// A response without a time (0) keeps the offset known before.
    /// Whether this device's clock moved by more than a second against the monotonic clock
    /// since the server's clock was read (set by hand, stepped by NTP), or was never read.
    fn clock_jumped(&self) -> bool {
        let Some((wall, mono)) = self.clock_read else {
            return true;
        };
        let expected = wall.saturating_add(mono.elapsed().as_millis() as u64);
        self.store.time.local_now().abs_diff(expected) > 1_000
    }

    async fn learn_server_time(&mut self, conn: &mut Connection) -> Result<(), ClientError> {
        let sent = self.store.time.local_now();
        self.clock_read = Some((sent, std::time::Instant::now()));
        let status: StatusResponse = conn.get("/v1/status").await?;
        let received = self.store.time.local_now();
        if status.server_time_ms != 0 {
            self.store
                .set_clock_offset(clock_offset(status.server_time_ms, sent, received))?;
        }
        Ok(())
    }

    /// Retries the first device's genesis and recovery-blob uploads left over by enrollment.
    pub(crate) async fn finish_setup_uploads(
        &mut self,
        conn: &mut Connection,
    ) -> Result<(), ClientError> {
        if self.store.meta_blob(meta::UPLOAD_GENESIS)?.is_some() {
            let genesis = self
                .trusted_roster()?
                .entries()
                .first()
                .cloned()
                .ok_or_else(|| corrupt("no genesis"))?;
            let _: RosterResponse = conn.post("/v1/roster", &genesis).await?;
            self.store.set_meta(&[(meta::UPLOAD_GENESIS, None)])?;
        }
        if let Some(blob) = self.store.meta_blob(meta::UPLOAD_RECOVERY)? {
            let blob: sealsync_proto::RecoveryBlob =
                sealsync_proto::decode(&blob).map_err(|_| corrupt("stored recovery blob"))?;
            conn.send(http::Method::PUT, "/v1/recovery", &blob).await?;
            self.store.set_meta(&[(meta::UPLOAD_RECOVERY, None)])?;
        }
        Ok(())
    }

    /// Fetches roster entries after the verified length and extends the roster with them.
    /// A fork, a bad signature or any invalid entry is refused and nothing is stored.
    pub(crate) async fn sync_roster(&mut self, conn: &mut Connection) -> Result<(), ClientError> {
        let roster = self.trusted_roster()?;
        let old_len = roster.len();
        let genesis = roster.genesis_hash();
        let resp: RosterResponse = conn.get(&format!("/v1/roster?after={old_len}")).await?;
        if resp.entries.is_empty() {
            return Ok(());
        }
        let mut next = self.trusted_roster()?.clone();
        next.extend(&resp.entries)
            .map_err(|e| ClientError::Roster(e.to_string()))?;
        if next.genesis_hash() != genesis {
            return Err(ClientError::Roster(
                "the roster no longer starts at the trusted genesis".into(),
            ));
        }
        self.adopt_roster(next)
    }

    /// Stores the entries `next` has beyond the current roster and switches to it.
    pub(crate) fn adopt_roster(&mut self, next: sealsync_core::Roster) -> Result<(), ClientError> {
        let old_len = self.roster.as_ref().map_or(0, |r| r.len() as usize);
        let new: Vec<(u64, Vec<u8>)> = next
            .entries()
            .iter()
            .enumerate()
            .skip(old_len)
            .map(|(i, e)| (i as u64, sealsync_proto::encode(e)))
            .collect();
        self.store.store_roster(&new, &[])?;
        self.roster = Some(next);
        Ok(())
    }

    /// Seals unsent local edits into outbox batches.
    pub(crate) fn seal_outbox(&mut self) -> Result<usize, ClientError> {
        let keys = self.account_keys()?.clone();
        let ctx = SealContext {
            account: &self.account,
            keys: &keys,
            signing: &self.secrets.signing,
            roster_head: self.trusted_roster()?.head_hash(),
        };
        self.store.seal_pending(&ctx)
    }

    /// Pushes the outbox; returns the log indices the server gave our batches, per local
    /// collection. Each request holds batches of one collection, so a refusal stops only
    /// that collection's push: it is reported in `report.errors` (check `push`) and the sync
    /// goes on with the other collections and the pulls. A push refused with 409 first
    /// triggers [`Core::recover_rollback`] for that collection (at most once per call); if
    /// that puts lost batches back into the outbox, or takes back this device's own batches
    /// that its restored home forgot (then the edits put back are sealed after them), the
    /// push is retried.
    async fn push_outbox(
        &mut self,
        conn: &mut Connection,
        report: &mut SyncReport,
    ) -> Result<HashMap<i64, BTreeSet<u64>>, ClientError> {
        let mut indices: HashMap<i64, BTreeSet<u64>> = HashMap::new();
        let mut judged: BTreeSet<i64> = BTreeSet::new();
        let mut refused: BTreeSet<i64> = BTreeSet::new();
        loop {
            let Err((error, coll)) = self
                .push_pending(conn, report, &mut indices, &refused)
                .await?
            else {
                return Ok(indices);
            };
            if matches!(error, ClientError::Server { status: 409, .. }) && judged.insert(coll) {
                let recovered = self.recover_rollback(conn, &[coll]).await?;
                if recovered.changed() {
                    report.resent_batches += recovered.resent;
                    report.adopted_batches += recovered.adopted;
                    report.resealed_versions += recovered.resealed;
                    if recovered.adopted > 0 {
                        // The edits put back after the adopted batches.
                        self.seal_outbox()?;
                    }
                    continue;
                }
            }
            refused.insert(coll);
            let name = self
                .store
                .collections()?
                .into_iter()
                .find(|c| c.id == coll)
                .map(|c| c.name)
                .unwrap_or_default();
            tracing::warn!(collection = %name, error = %error, "push refused");
            report.errors.push(SyncIssue {
                collection: name,
                check: crate::check::Check::Push,
                author: None,
                message: push_refusal_message(&error),
            });
        }
    }

    /// Pushes the unacknowledged outbox of the collections not in `skip`, in requests of
    /// one collection and at most [`PUSH_REQUEST_BYTES`], recording acknowledgements and log
    /// indices. A request the server refuses stops it:
    /// `Ok(Err((refusal, local collection of the refused request)))`. Network failures are
    /// errors.
    async fn push_pending(
        &mut self,
        conn: &mut Connection,
        report: &mut SyncReport,
        indices: &mut HashMap<i64, BTreeSet<u64>>,
        skip: &BTreeSet<i64>,
    ) -> Result<Result<(), (ClientError, i64)>, ClientError> {
        // Only collections whose policy is pinned travel (see `crate::collections`).
        let pinned: BTreeSet<i64> = self
            .store
            .collections()?
            .into_iter()
            .filter(|c| c.pinned)
            .map(|c| c.id)
            .collect();
        let entries: Vec<_> = self
            .store
            .outbox()?
            .into_iter()
            .filter(|e| pinned.contains(&e.coll) && !skip.contains(&e.coll))
            .collect();
        // An acknowledgement marks the exact batch that was sent: (collection, seq, hash).
        let coll_of: HashMap<(CollectionId, u64), (i64, BatchHash)> = entries
            .iter()
            .map(|e| ((e.cid, e.seq), (e.coll, e.hash)))
            .collect();
        crate::progress::push_planned(
            &self.progress,
            entries.len() as u64,
            entries.iter().map(|e| e.records).sum(),
            entries.iter().map(|e| e.bytes.len() as u64).sum(),
        );
        let mut i = 0;
        while i < entries.len() {
            let mut request = PushRequest::default();
            let coll = entries[i].coll;
            let first = i;
            let mut bytes = 0;
            while i < entries.len()
                && entries[i].coll == coll
                && (request.batches.is_empty()
                    || bytes + entries[i].bytes.len() <= PUSH_REQUEST_BYTES)
            {
                let sealed: Sealed = sealsync_proto::decode(&entries[i].bytes)
                    .map_err(|_| corrupt("outbox batch"))?;
                bytes += entries[i].bytes.len() + 8;
                request.batches.push(sealed);
                i += 1;
            }
            let resp: PushResponse = match conn.post("/v1/batches", &request).await {
                Ok(resp) => resp,
                Err(e @ ClientError::Server { .. }) => return Ok(Err((e, coll))),
                Err(e) => return Err(e),
            };
            let mut acked = Vec::new();
            for r in &resp.results {
                let Ok(cid) = CollectionId::from_slice(&r.collection_id) else {
                    continue;
                };
                if let Some((coll, hash)) = coll_of.get(&(cid, r.seq)) {
                    acked.push((*coll, r.seq, *hash));
                    indices.entry(*coll).or_default().insert(r.log_index);
                }
            }
            if acked.len() != request.batches.len() {
                return Err(ClientError::Protocol(format!(
                    "the server acknowledged {} of {} pushed batches",
                    acked.len(),
                    request.batches.len()
                )));
            }
            let marked = self.store.ack_outbox(&acked)?;
            if marked != acked.len() {
                tracing::warn!(
                    acknowledged = acked.len(),
                    marked,
                    "outbox batches changed while they were pushed; those stay pending"
                );
            }
            report.pushed_batches += acked.len() as u64;
            let sent = &entries[first..i];
            crate::progress::pushed(
                &self.progress,
                sent.len() as u64,
                sent.iter().map(|e| e.records).sum(),
                sent.iter().map(|e| e.bytes.len() as u64).sum(),
            );
        }
        Ok(Ok(()))
    }
}

/// The line a refused push leaves in the sync report: what the server said and what to do.
fn push_refusal_message(error: &ClientError) -> String {
    match error {
        ClientError::Server { code, .. } if code == "clock_ahead" => format!(
            "the server refused this device's edits as stamped too far in the future ({error}); check this device's clock and time zone, then sync again"
        ),
        _ => format!(
            "the server refused this device's edits ({error}); they are kept and sent again at the next sync"
        ),
    }
}
