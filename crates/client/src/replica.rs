//! Opening a replica and the local (offline) operations: get, list, history, collections,
//! conflicts, status and state roots. Writes (put, delete, resolve) are transactions
//! (`crate::txn`).

use std::path::Path;
use std::sync::Arc;

use sealsync_core::{CollectionId, Policy, Roster, VersionId, combined_root, explain};

use crate::Core;
use crate::error::ClientError;
use crate::keystore::{FileKeyStore, KEYSTORE_FILE, KeyStore};
use crate::options::OpenOptions;
use crate::store::{CollInfo, DB_FILE, Store, corrupt, meta};
use crate::types::{
    CollectionStatus, Conflict, ConflictVersion, DeviceState, HistoryEntry, LastError, Status,
};

/// Rebuilds and verifies the roster from stored entries (genesis first).
pub(crate) fn roster_from_entries(
    entries: &[Vec<u8>],
    account: &str,
) -> Result<Roster, ClientError> {
    let decoded: Vec<sealsync_proto::SignedRosterEntry> = entries
        .iter()
        .map(|e| sealsync_proto::decode(e).map_err(|_| corrupt("stored roster entry")))
        .collect::<Result<_, _>>()?;
    let (genesis, rest) = decoded
        .split_first()
        .ok_or_else(|| corrupt("no roster stored"))?;
    let mut roster = Roster::from_genesis(genesis, account)
        .map_err(|e| corrupt(format!("stored roster genesis: {e}")))?;
    roster
        .extend(rest)
        .map_err(|e| corrupt(format!("stored roster: {e}")))?;
    Ok(roster)
}

impl Core {
    /// Opens the replica enrolled in `home` with `options` (passphrase, key store,
    /// timeouts).
    pub(crate) fn open(home: &Path, options: &OpenOptions) -> Result<Core, ClientError> {
        let custom = options.key_store.is_some();
        if !home.join(DB_FILE).exists() || (!custom && !home.join(KEYSTORE_FILE).exists()) {
            return Err(ClientError::NotEnrolled(home.to_path_buf()));
        }
        let (keystore, secrets): (Arc<dyn KeyStore>, _) = match &options.key_store {
            Some(ks) => (ks.clone(), ks.load()?),
            None => {
                let (ks, secrets) = FileKeyStore::open_inner(home, options.passphrase_bytes())?;
                (Arc::new(ks), secrets)
            }
        };
        let device_id = secrets.device_id();
        let store = Store::open(&home.join(DB_FILE), secrets.storage_key.clone(), device_id)?;
        if store.meta_blob(meta::DEVICE_ID)?.is_none() {
            return Err(ClientError::NotEnrolled(home.to_path_buf()));
        }
        let text = |k: &str| -> Result<String, ClientError> {
            store
                .meta_text(k)?
                .ok_or_else(|| corrupt(format!("missing {k}")))
        };
        let account = text(meta::ACCOUNT)?;
        let name = text(meta::NAME)?;
        let server_url = text(meta::SERVER_URL)?;
        let state =
            DeviceState::parse(&text(meta::STATE)?).ok_or_else(|| corrupt("unknown state"))?;
        // A pending device trusts no roster yet: it learns the genesis only from a confirmed
        // pairing (`crate::pairing`). A trusted device's roster must start at its genesis.
        let roster = match state {
            DeviceState::Pending => None,
            DeviceState::Trusted => {
                let genesis_hash: [u8; 32] = store
                    .meta_required(meta::GENESIS_HASH)?
                    .try_into()
                    .map_err(|_| corrupt("genesis hash"))?;
                let roster = roster_from_entries(&store.roster_entries()?, &account)?;
                if roster.genesis_hash() != genesis_hash {
                    return Err(corrupt(
                        "stored roster does not start at the trusted genesis",
                    ));
                }
                Some(roster)
            }
        };
        if state == DeviceState::Trusted && secrets.account_keys.is_none() {
            return Err(corrupt("trusted device without account keys"));
        }
        Ok(Core {
            keystore_stamp: crate::refresh::keystore_stamp(home),
            home: home.to_path_buf(),
            store,
            secrets,
            keystore,
            timeouts: options.timeouts,
            commits: None,
            progress: crate::progress::sink(),
            kept: None,
            clock_read: None,
            device_id,
            account,
            name,
            server_url,
            state,
            roster,
        })
    }

    /// A second view of the same replica with its own database connection (the sync
    /// engine's), sharing the secrets already opened (no second passphrase derivation).
    pub(crate) fn fork(&self) -> Result<Core, ClientError> {
        let mut store = Store::open(
            &self.home.join(DB_FILE),
            self.secrets.storage_key.clone(),
            self.device_id,
        )?;
        store.time.skew_ms = self.store.time.skew_ms;
        Ok(Core {
            home: self.home.clone(),
            store,
            secrets: self.secrets.clone(),
            keystore: self.keystore.clone(),
            timeouts: self.timeouts,
            commits: self.commits.clone(),
            progress: self.progress.clone(),
            kept: None,
            clock_read: None,
            device_id: self.device_id,
            account: self.account.clone(),
            name: self.name.clone(),
            server_url: self.server_url.clone(),
            state: self.state,
            roster: self.roster.clone(),
            keystore_stamp: self.keystore_stamp,
        })
    }

    /// Blinded id of collection `name`, once the account keys are known.
    pub(crate) fn collection_id(&self, name: &str) -> Option<CollectionId> {
        self.secrets
            .account_keys
            .as_ref()
            .map(|k| k.collection_id(&self.account, name))
    }

    /// The live value of `key`, `None` if absent or deleted.
    pub(crate) fn get(&self, collection: &str, key: &str) -> Result<Option<Vec<u8>>, ClientError> {
        match self.store.collection(collection)? {
            Some(c) => self.store.get(&c, key),
            None => Ok(None),
        }
    }

    /// Live records in key order.
    pub(crate) fn list(&self, collection: &str) -> Result<Vec<(String, Vec<u8>)>, ClientError> {
        match self.store.collection(collection)? {
            Some(c) => self.store.list(&c),
            None => Ok(Vec::new()),
        }
    }

    /// Every version of `key` ever seen, in version order, each with why it won or lost.
    /// Empty if the key was never written.
    pub(crate) fn history(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Vec<HistoryEntry>, ClientError> {
        let Some(coll) = self.store.collection(collection)? else {
            return Ok(Vec::new());
        };
        let stored = self.store.versions(&coll, key)?;
        let versions: Vec<_> = stored.iter().map(|s| s.version.clone()).collect();
        let mut why: std::collections::HashMap<VersionId, String> =
            explain(coll.policy, &versions).into_iter().collect();
        Ok(stored
            .into_iter()
            .map(|s| HistoryEntry {
                version: s.version.id,
                hlc: s.version.id.hlc().0,
                device: s.version.id.device(),
                deleted: s.version.deleted,
                explanation: why.remove(&s.version.id).unwrap_or_default(),
                value: s.version.value,
                supersedes: s.version.supersedes,
                synced: s.synced,
            })
            .collect())
    }

    /// Creates a collection with `policy`. Succeeds without change if it exists with the
    /// same policy; an existing collection with another policy is refused
    /// ([`ClientError::InvalidInput`]): a collection's policy is fixed when it is created,
    /// and once synced, by the first descriptor pinned in the roster.
    pub(crate) fn create_collection(
        &mut self,
        name: &str,
        policy: Policy,
    ) -> Result<(), ClientError> {
        self.refresh()?;
        match self.store.collection(name)? {
            None => {
                let cid = self.collection_id(name);
                self.store.create_collection(name, policy, cid, false)?;
                Ok(())
            }
            Some(c) if c.policy == policy => Ok(()),
            Some(c) => Err(ClientError::InvalidInput(format!(
                "collection {name:?} already exists with policy {}; a collection's policy cannot be changed",
                c.policy
            ))),
        }
    }

    /// Records of a `manual` collection with concurrent versions, in key order. Empty for a
    /// collection this device does not know; [`ClientError::InvalidInput`] for a collection
    /// with another policy (it never keeps conflicts).
    pub(crate) fn conflicts(&self, collection: &str) -> Result<Vec<Conflict>, ClientError> {
        let Some(coll) = self.store.collection(collection)? else {
            return Ok(Vec::new());
        };
        require_manual(&coll)?;
        let mut out = Vec::new();
        for (key, heads) in self.store.conflicted_keys(&coll)? {
            let versions = self
                .store
                .versions(&coll, &key)?
                .into_iter()
                .filter(|s| heads.contains(&s.version.id))
                .map(|s| ConflictVersion {
                    version: s.version.id,
                    device: s.version.id.device(),
                    deleted: s.version.deleted,
                    value: s.version.value,
                })
                .collect();
            out.push(Conflict { key, versions });
        }
        Ok(out)
    }

    /// Combined state root over the collections that hold records (tombstones included).
    pub(crate) fn state_root(&self) -> Result<[u8; 32], ClientError> {
        let mut roots = Vec::new();
        for c in self.store.collections()? {
            if self.store.has_records(&c)? {
                roots.push((c.name.clone(), self.store.collection_root(&c)?));
            }
        }
        Ok(combined_root(&roots))
    }

    /// Device, account, state and per-collection counters.
    pub(crate) fn status(&self) -> Result<Status, ClientError> {
        let mut collections = Vec::new();
        for c in self.store.collections()? {
            let pending = self.store.outbox_count(c.id)? + u64::from(self.store.has_unsent(c.id)?);
            collections.push(CollectionStatus {
                records: self.store.live_count(&c)?,
                pending_batches: pending,
                state_root: hex::encode(self.store.collection_root(&c)?),
                policy: c.policy,
                name: c.name,
            });
        }
        // Read from the store: another handle may have changed it (`refresh`).
        let state = self
            .store
            .meta_text(meta::STATE)?
            .and_then(|s| DeviceState::parse(&s))
            .ok_or_else(|| corrupt("unknown state"))?;
        let last_error = match self.store.meta_text(meta::LAST_ERROR)? {
            Some(message) => Some(LastError {
                at: self.store.meta_u64(meta::LAST_ERROR_AT)?.unwrap_or(0),
                message,
            }),
            None => None,
        };
        Ok(Status {
            device_id: self.device_id,
            account: self.account.clone(),
            name: self.name.clone(),
            state,
            server_url: self.server_url.clone(),
            collections,
            last_sync: self.store.meta_u64(meta::LAST_SYNC)?,
            last_error,
        })
    }

    /// Test hook, not for applications: adds `skew_ms` (may be negative) to every reading
    /// of the system clock by this `Core` only, as if the device's clock were that far
    /// off. Not persisted; a reopened replica reads the system clock as it is.
    #[doc(hidden)]
    pub(crate) fn set_clock_skew_for_tests(&mut self, skew_ms: i64) {
        self.store.time.skew_ms = skew_ms;
    }
}

/// Conflicts and resolutions exist only in `manual` collections.
pub(crate) fn require_manual(coll: &CollInfo) -> Result<(), ClientError> {
    if coll.policy == Policy::Manual {
        return Ok(());
    }
    Err(ClientError::InvalidInput(format!(
        "collection {} uses the {} policy, which never keeps conflicts: only manual collections have conflicts to resolve",
        crate::types::echo(&coll.name),
        coll.policy
    )))
}
