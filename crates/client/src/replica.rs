//! Opening a replica and the local (offline) operations: put, get, delete, list, history,
//! collections, conflicts, resolve, status and state roots.

use std::path::Path;
use std::sync::Arc;

use sealsync_core::{CollectionId, Policy, Roster, VersionId, combined_root, explain};

use crate::error::ClientError;
use crate::keystore::{FileKeyStore, KEYSTORE_FILE, KeyStore};
use crate::options::OpenOptions;
use crate::store::{CollInfo, DB_FILE, Store, corrupt, meta};
use crate::types::{
    CollectionStatus, Conflict, ConflictVersion, DeviceState, HistoryEntry, LastError, Status,
};
use crate::{Core, MAX_KEY_BYTES, MAX_VALUE_BYTES};

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

    /// The collection, created with the `lww` policy on first write.
    fn collection_for_write(&mut self, name: &str) -> Result<CollInfo, ClientError> {
        if let Some(c) = self.store.collection(name)? {
            return Ok(c);
        }
        let cid = self.collection_id(name);
        self.store.create_collection(name, Policy::Lww, cid, false)
    }

    fn check_write(coll: &CollInfo, key: &str, value: &[u8]) -> Result<(), ClientError> {
        validate_key(key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(ClientError::InvalidInput(format!(
                "values are limited to {MAX_VALUE_BYTES} bytes (got {}); split large data into several records",
                value.len()
            )));
        }
        if coll.policy == Policy::Fields {
            let refuse = |what: &str| {
                ClientError::InvalidInput(format!(
                    "collection {} uses the fields policy: {what}",
                    crate::types::echo(&coll.name)
                ))
            };
            match serde_json::from_slice::<serde_json::Value>(value) {
                Ok(serde_json::Value::Object(_)) => {}
                // serde_json stops at 128 levels instead of overflowing the stack (BI-04).
                Err(e) if e.to_string().contains("recursion limit") => {
                    return Err(refuse(
                        "the value nests JSON deeper than 128 levels; flatten it",
                    ));
                }
                Err(e) if e.is_syntax() || e.is_eof() => {
                    return Err(refuse(&format!(
                        "the value is not valid JSON ({e}); write an object like {{\"field\": \"value\"}}"
                    )));
                }
                _ => {
                    return Err(refuse(
                        "values must be JSON objects like {\"field\": \"value\"}",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Writes `value` under `key` (creating the collection with the `lww` policy if needed).
    /// Durable when it returns. The returned id changes if a sync later finds the edit was
    /// stamped by a clock that ran fast and re-stamps it (`SyncReport::restamped_versions`).
    pub(crate) fn put(
        &mut self,
        collection: &str,
        key: &str,
        value: &[u8],
    ) -> Result<VersionId, ClientError> {
        self.refresh()?;
        let coll = self.collection_for_write(collection)?;
        Self::check_write(&coll, key, value)?;
        let manual = coll.policy == Policy::Manual;
        self.store
            .write_local(&coll, &[(key, false, value)], manual)
            .map(|v| v[0]) // one item in, one id out
    }

    /// Writes many records in one transaction (bulk import); same rules as [`Core::put`].
    pub(crate) fn put_many(
        &mut self,
        collection: &str,
        records: &[(String, Vec<u8>)],
    ) -> Result<Vec<VersionId>, ClientError> {
        self.refresh()?;
        let coll = self.collection_for_write(collection)?;
        for (k, v) in records {
            Self::check_write(&coll, k, v)?;
        }
        let items: Vec<(&str, bool, &[u8])> = records
            .iter()
            .map(|(k, v)| (k.as_str(), false, v.as_slice()))
            .collect();
        self.store
            .write_local(&coll, &items, coll.policy == Policy::Manual)
    }

    /// The live value of `key`, `None` if absent or deleted.
    pub(crate) fn get(&self, collection: &str, key: &str) -> Result<Option<Vec<u8>>, ClientError> {
        match self.store.collection(collection)? {
            Some(c) => self.store.get(&c, key),
            None => Ok(None),
        }
    }

    /// Deletes `key` (a tombstone version); `None` when there was no live record (then
    /// nothing is written: deleting is idempotent).
    pub(crate) fn delete(
        &mut self,
        collection: &str,
        key: &str,
    ) -> Result<Option<VersionId>, ClientError> {
        self.refresh()?;
        validate_key(key)?;
        let Some(coll) = self.store.collection(collection)? else {
            return Ok(None);
        };
        match self.store.record(&coll, key)? {
            Some(r) if !r.deleted => {}
            _ => return Ok(None),
        }
        let manual = coll.policy == Policy::Manual;
        self.store
            .write_local(&coll, &[(key, true, &[])], manual)
            .map(|v| Some(v[0])) // one item in, one id out
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

    /// Writes `value` as the resolution of `key`: a version superseding all current heads.
    /// [`ClientError::NotFound`] if the key has no versions; [`ClientError::InvalidInput`]
    /// if the collection's policy is not `manual`.
    pub(crate) fn resolve(
        &mut self,
        collection: &str,
        key: &str,
        value: &[u8],
    ) -> Result<VersionId, ClientError> {
        self.refresh()?;
        let not_found = || ClientError::NotFound {
            collection: collection.to_string(),
            key: key.to_string(),
        };
        let coll = self.store.collection(collection)?.ok_or_else(not_found)?;
        require_manual(&coll)?;
        if self.store.record(&coll, key)?.is_none() {
            return Err(not_found());
        }
        Self::check_write(&coll, key, value)?;
        self.store
            .write_local(&coll, &[(key, false, value)], true)
            .map(|v| v[0]) // one item in, one id out
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

/// Record keys: 1 to [`MAX_KEY_BYTES`] bytes.
fn validate_key(key: &str) -> Result<(), ClientError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(ClientError::InvalidInput(format!(
            "record keys must be 1 to {MAX_KEY_BYTES} bytes (got {})",
            key.len()
        )));
    }
    Ok(())
}

/// Conflicts and resolutions exist only in `manual` collections.
fn require_manual(coll: &CollInfo) -> Result<(), ClientError> {
    if coll.policy == Policy::Manual {
        return Ok(());
    }
    Err(ClientError::InvalidInput(format!(
        "collection {} uses the {} policy, which never keeps conflicts: only manual collections have conflicts to resolve",
        crate::types::echo(&coll.name),
        coll.policy
    )))
}
