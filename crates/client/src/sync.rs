//! The sync engine: roster, keys, descriptors, push and pull.
//!
//! One [`Replica::sync`] runs, over one mutual-TLS connection:
//! 0. `GET /v1/status`, learning the offset of the server's clock (trusted time for HLC
//!    ticks: `crate::clock`, NA-10);
//! 1. pending first-device uploads (genesis, recovery blob) if an earlier attempt failed;
//! 2. `GET /v1/roster?after=len`, extending the verified roster (a fork or rewrite is
//!    refused: MS-12);
//! 3. for a pending device: nothing, unless a pairing was confirmed (`crate::pairing`) and
//!    not yet completed; then the roster and key envelope are checked against the
//!    confirmed genesis and roster head, and only then is the device trusted;
//! 4. for a trusted device: push new collection descriptors, fetch and verify all
//!    descriptors (adopting the deterministic winner's policy), seal unsent edits into the
//!    outbox, push the outbox (after a 409, re-sending what a restored server lost: see
//!    `rollback`), then pull every known collection page by page (`crate::pull`). Each page is
//!    verified completely (roster key signature, roster head known, chain, epoch,
//!    commitment, decryption, mutation checks) before one transaction applies it and moves
//!    the cursor; a failing page is refused whole and reported (CF-06, MS-12, MS-16, MS-23,
//!    MS-25, MS-26).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sealsync_core::{
    AccountKeys, CollectionId, Descriptor, open_descriptor, pick_descriptor, seal_descriptor,
};
use sealsync_proto::{
    PushRequest, PushResponse, RosterResponse, Sealed, SealedList, StatusResponse,
};

use crate::Replica;
use crate::clock::clock_offset;
use crate::error::ClientError;
use crate::net::{Connection, ServerUrl, tls};
use crate::store::{SealContext, corrupt, meta};
use crate::types::{DeviceState, SyncIssue, SyncReport};

/// Batches asked for per pull page.
pub(crate) const PULL_PAGE_BATCHES: u64 = 1000;
/// Largest push request body this client builds.
pub(crate) const PUSH_REQUEST_BYTES: usize = 8 * 1024 * 1024;

impl Replica {
    /// Opens a mutual-TLS connection to the server. The returned future borrows nothing
    /// from the replica (so the replica need not be `Sync`).
    pub(crate) fn connect(
        &self,
    ) -> impl Future<Output = Result<Connection, ClientError>> + Send + 'static {
        let prepared = self.connection_config();
        async move {
            let (url, config) = prepared?;
            Connection::connect(&url, config).await
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

    /// Synchronises with the server; see the module documentation for the steps.
    pub async fn sync(&mut self) -> Result<SyncReport, ClientError> {
        let mut report = SyncReport::default();
        let mut conn = self.connect().await?;
        self.learn_server_time(&mut conn).await?;
        self.finish_setup_uploads(&mut conn).await?;
        if self.state == DeviceState::Pending {
            // Only a confirmed pairing (`crate::pairing`) makes a pending device trusted: the
            // server's roster and envelopes alone never do (MS-10, MS-11, MS-15).
            if !self.finish_pairing(&mut conn).await? {
                return Ok(report);
            }
            report.became_trusted = true;
        }
        self.sync_roster(&mut conn).await?;
        self.push_descriptors(&mut conn).await?;
        self.pull_descriptors(&mut conn, &mut report).await?;
        self.seal_outbox()?;
        let own = self.push_outbox(&mut conn, &mut report).await?;
        for coll in self.store.collections()? {
            if coll.cid.is_some() {
                let own = own.get(&coll.id);
                self.pull_collection(&mut conn, coll, own, &mut report)
                    .await?;
            }
        }
        self.retry_after_roster_growth(&mut conn, &mut report)
            .await?;
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
            if coll.cid.is_some() && refused.contains(&coll.name) {
                self.pull_collection(conn, coll, None, report).await?;
            }
        }
        Ok(())
    }

    /// `GET /v1/status`: stores the offset of the server's clock to this device's, which HLC
    /// ticks use from then on (see `crate::clock`; a lying server can only slow the clock).
    /// A response without a time (0) keeps the offset known before.
    async fn learn_server_time(&mut self, conn: &mut Connection) -> Result<(), ClientError> {
        let sent = self.store.time.local_now();
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

    async fn push_descriptors(&mut self, conn: &mut Connection) -> Result<(), ClientError> {
        for coll in self.store.collections()? {
            if coll.descriptor_pushed || coll.cid.is_none() {
                continue;
            }
            let keys = self.account_keys()?;
            let (_, sealed) = seal_descriptor(
                &self.secrets.signing,
                self.device_id,
                &self.account,
                keys,
                &coll.name,
                coll.policy,
                coll.created_hlc,
            )
            .map_err(|e| {
                ClientError::Protocol(format!("cannot seal descriptor of {:?}: {e}", coll.name))
            })?;
            conn.send(http::Method::POST, "/v1/collections", &sealed)
                .await?;
            self.store.mark_descriptor_pushed(coll.id)?;
        }
        Ok(())
    }

    async fn pull_descriptors(
        &mut self,
        conn: &mut Connection,
        report: &mut SyncReport,
    ) -> Result<(), ClientError> {
        let list: SealedList = conn.get("/v1/collections").await?;
        let keys = self.account_keys()?;
        let roster = self.trusted_roster()?;
        let mut by_id: BTreeMap<CollectionId, Vec<Descriptor>> = BTreeMap::new();
        for sealed in &list.items {
            match open_descriptor(sealed, roster, keys, &self.account) {
                Ok(d) => by_id.entry(d.id).or_default().push(d),
                Err(e) => report.errors.push(SyncIssue {
                    collection: sealsync_core::descriptor_collection_id(sealed)
                        .map(|c| c.to_string())
                        .unwrap_or_default(),
                    check: "descriptor".into(),
                    author: None,
                    message: format!("collection descriptor refused: {e}"),
                }),
            }
        }
        for candidates in by_id.values() {
            let Some(d) = pick_descriptor(candidates) else {
                continue;
            };
            match self.store.collection(&d.name)? {
                Some(local) if local.policy != d.policy => {
                    self.store.change_policy(&local, d.policy)?;
                }
                Some(_) => {}
                None => {
                    self.store
                        .create_collection(&d.name, d.policy, Some(d.id), true)?;
                }
            }
        }
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
    /// collection. A push refused with 409 triggers [`Replica::recover_rollback`] for the
    /// collections of the refused request (each at most once per call); if that puts lost
    /// batches back into the outbox, the push is retried, else the refusal is returned.
    async fn push_outbox(
        &mut self,
        conn: &mut Connection,
        report: &mut SyncReport,
    ) -> Result<HashMap<i64, BTreeSet<u64>>, ClientError> {
        let mut indices: HashMap<i64, BTreeSet<u64>> = HashMap::new();
        let mut judged: BTreeSet<i64> = BTreeSet::new();
        loop {
            let Err((error, colls)) = self.push_pending(conn, report, &mut indices).await? else {
                return Ok(indices);
            };
            let fresh: Vec<i64> = colls.into_iter().filter(|c| judged.insert(*c)).collect();
            if fresh.is_empty() {
                return Err(error);
            }
            let resent = self.recover_rollback(conn, &fresh).await?;
            if resent == 0 {
                return Err(error);
            }
            report.resent_batches += resent;
        }
    }

    /// Pushes the unacknowledged outbox in requests of at most [`PUSH_REQUEST_BYTES`],
    /// recording acknowledgements and log indices. A request refused with 409 stops it:
    /// `Ok(Err((refusal, local collections of the refused request)))`.
    async fn push_pending(
        &mut self,
        conn: &mut Connection,
        report: &mut SyncReport,
        indices: &mut HashMap<i64, BTreeSet<u64>>,
    ) -> Result<Result<(), (ClientError, Vec<i64>)>, ClientError> {
        let entries = self.store.outbox()?;
        let coll_of: HashMap<(CollectionId, u64), i64> =
            entries.iter().map(|e| ((e.cid, e.seq), e.coll)).collect();
        let mut i = 0;
        while i < entries.len() {
            let mut request = PushRequest::default();
            let mut colls = Vec::new();
            let mut bytes = 0;
            while i < entries.len()
                && (request.batches.is_empty()
                    || bytes + entries[i].bytes.len() <= PUSH_REQUEST_BYTES)
            {
                let sealed: Sealed = sealsync_proto::decode(&entries[i].bytes)
                    .map_err(|_| corrupt("outbox batch"))?;
                bytes += entries[i].bytes.len() + 8;
                request.batches.push(sealed);
                if !colls.contains(&entries[i].coll) {
                    colls.push(entries[i].coll);
                }
                i += 1;
            }
            let resp: PushResponse = match conn.post("/v1/batches", &request).await {
                Ok(resp) => resp,
                Err(e @ ClientError::Server { status: 409, .. }) => return Ok(Err((e, colls))),
                Err(e) => return Err(e),
            };
            let mut acked = Vec::new();
            for r in &resp.results {
                let Ok(cid) = CollectionId::from_slice(&r.collection_id) else {
                    continue;
                };
                if let Some(coll) = coll_of.get(&(cid, r.seq)) {
                    acked.push((*coll, r.seq));
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
            self.store.ack_outbox(&acked)?;
            report.pushed_batches += acked.len() as u64;
        }
        Ok(Ok(()))
    }
}
