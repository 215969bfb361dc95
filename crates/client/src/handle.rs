//! [`Replica`]: the cheap, clonable handle an application shares between its UI and its
//! background tasks.
//!
//! A replica's shared state holds two [`Core`]s on one home directory, each with its own
//! SQLite connection: the *local* core serves reads and local writes behind a mutex held
//! for one local transaction at most, and the *engine* core runs syncs, pairing and the
//! driver on the replica's own thread (`crate::worker`). A sync therefore never holds the
//! lock that a write or read needs while it waits for the network; its local steps take
//! SQLite's write lock for one transaction each, which is the longest a write waits.
//!
//! Handles opened separately on the same home (in this process or another, such as the
//! CLI while the app runs) coordinate through the database itself: every change is one
//! transaction, each core re-reads what another may have changed (`crate::refresh`), and
//! one sync runs at a time per home (`crate::sync_lock`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use sealsync_core::{DeviceId, Policy, VersionId};

use crate::driver::{SyncHandle, SyncOptions};
use crate::error::ClientError;
use crate::errors::{EnrollError, OpenError, PairingError, ReadError, SyncError, WriteError};
use crate::feed::{ChangeFilter, Changes, PollerSetup};
use crate::options::OpenOptions;
use crate::types::{
    Conflict, EnrollOptions, Enrolled, HistoryEntry, PendingDeviceInfo, Status, SyncReport,
};
use crate::worker::Worker;
use crate::{Approval, Core};

/// One device's replica: local store, keys and sync engine.
///
/// `Replica` is `Clone + Send + Sync`: clones are handles on the same shared state, cheap to
/// make and to pass to tasks and threads. Reads and local writes are synchronous and wait
/// at most for one local transaction, never for the network; network operations are
/// `async`, run on the replica's own thread and can be awaited from any executor. Dropping
/// such a future cancels the operation at its next step, losing nothing. `Debug` prints no
/// secrets.
#[derive(Clone)]
pub struct Replica {
    pub(crate) shared: Arc<Shared>,
}

/// What an engine operation returns: a future borrowing the engine core.
pub(crate) type EngineFuture<'a, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<T, ClientError>> + Send + 'a>>;

/// State shared by the handles of one replica.
pub(crate) struct Shared {
    pub(crate) home: PathBuf,
    pub(crate) device_id: DeviceId,
    account: String,
    name: String,
    /// Reads and local writes.
    local: Mutex<Core>,
    /// Syncs, pairing, the driver: opened from `local` on first use.
    pub(crate) engine: Arc<tokio::sync::Mutex<Option<Core>>>,
    /// The replica's thread, started on first use.
    worker: OnceLock<Worker>,
    /// Bumped after every local commit of this replica's handles (wakes change feeds and
    /// the sync driver at once; commits by other processes are found by polling).
    pub(crate) commits: Arc<tokio::sync::watch::Sender<u64>>,
    /// The change feeds' poller, while anyone subscribes.
    feed: crate::feed::FeedSlot,
    /// Progress of this replica's syncs.
    progress: crate::progress::ProgressSink,
}

impl Shared {
    /// The replica's thread, started on first use.
    pub(crate) fn worker(&self) -> Result<&Worker, ClientError> {
        if let Some(w) = self.worker.get() {
            return Ok(w);
        }
        let w = Worker::start()?;
        // Another handle may have started one meanwhile: then this one stops at once.
        let _ = self.worker.set(w);
        self.worker
            .get()
            .ok_or_else(|| ClientError::Internal("the replica's thread did not start".into()))
    }
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("home", &self.shared.home)
            .field("device_id", &self.shared.device_id)
            .field("account", &self.shared.account)
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Opens the replica enrolled in `home`, with a key store protected by a key file (see
    /// [`Replica::open_with`] for a passphrase or another key store).
    pub fn open(home: &Path) -> Result<Replica, OpenError> {
        Self::open_with(home, OpenOptions::default())
    }

    /// Opens the replica enrolled in `home` with `options`.
    pub fn open_with(home: &Path, options: OpenOptions) -> Result<Replica, OpenError> {
        Ok(Self::from_core(Core::open(home, &options)?, None))
    }

    pub(crate) fn from_core(mut core: Core, worker: Option<Worker>) -> Replica {
        let commits = Arc::new(tokio::sync::watch::Sender::new(0));
        core.commits = Some(commits.clone());
        let cell = OnceLock::new();
        if let Some(w) = worker {
            let _ = cell.set(w);
        }
        let progress = core.progress.clone();
        Replica {
            shared: Arc::new(Shared {
                home: core.home.clone(),
                device_id: core.device_id,
                account: core.account.clone(),
                name: core.name.clone(),
                local: Mutex::new(core),
                engine: Arc::new(tokio::sync::Mutex::new(None)),
                worker: cell,
                commits,
                feed: Default::default(),
                progress,
            }),
        }
    }

    /// Enrolls this device into the account named by `bundle` (from `sealsync admin
    /// enroll`), creating the replica in `home`. See [`Enrolled`] for the outcomes and
    /// [`EnrollOptions`] for the key store's protection.
    pub async fn enroll(
        home: &Path,
        bundle: &str,
        opts: EnrollOptions,
    ) -> Result<Enrolled, EnrollError> {
        let worker = Worker::start()?;
        let (home, bundle) = (home.to_path_buf(), bundle.to_string());
        let e = worker
            .run(async move { Core::enroll(&home, &bundle, opts).await })
            .await?;
        Ok(Enrolled {
            replica: Self::from_core(e.core, Some(worker)),
            device_id: e.device_id,
            state: e.state,
            recovery_secret: e.recovery_secret,
        })
    }

    pub(crate) fn local(&self) -> MutexGuard<'_, Core> {
        // A panic while the lock was held left nothing half-done in the database (every
        // change is one transaction), and the core re-reads its state before each write.
        self.shared
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a local write and wakes the change feeds and the driver if it committed.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Core) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let out = f(&mut self.local())?;
        self.shared.commits.send_modify(|n| *n = n.wrapping_add(1));
        Ok(out)
    }

    /// Runs `op` with the engine core on the replica's thread.
    pub(crate) fn on_engine<T, F>(
        &self,
        op: F,
    ) -> impl Future<Output = Result<T, ClientError>> + Send + 'static
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a mut Core) -> EngineFuture<'a, T> + Send + 'static,
    {
        let shared = self.shared.clone();
        async move {
            let on = shared.clone();
            let task = on.worker()?.run(async move {
                let mut guard = shared.engine.clone().lock_owned().await;
                if guard.is_none() {
                    let fork = shared
                        .local
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .fork()?;
                    *guard = Some(fork);
                }
                let core = guard
                    .as_mut()
                    .ok_or_else(|| ClientError::Internal("no engine".into()))?;
                let out = op(core).await;
                shared.commits.send_modify(|n| *n = n.wrapping_add(1));
                out
            });
            task.await
        }
    }

    /// Writes `value` under `key` (creating the collection with the `lww` policy if needed).
    /// Durable when it returns. In a `fields` collection the value must be a JSON object
    /// and is a patch: the top-level fields it names replace those fields whole, the others
    /// stay, and a field given as `null` is stored as `null`, not removed (see
    /// [`Replica::patch`] and [`Transaction::put`](crate::Transaction::put)). The
    /// returned id changes if a sync later finds the edit was stamped by a clock that ran
    /// fast and re-stamps it (`SyncReport::restamped_versions`).
    pub fn put(&self, collection: &str, key: &str, value: &[u8]) -> Result<VersionId, WriteError> {
        self.write(|c| c.put(collection, key, value))
            .map_err(Into::into)
    }

    /// Writes many records of one collection in one transaction (bulk import); same rules
    /// as [`Replica::put`]. For several collections, or deletes, use a transaction.
    pub fn put_many(
        &self,
        collection: &str,
        records: &[(String, Vec<u8>)],
    ) -> Result<Vec<VersionId>, WriteError> {
        self.write(|c| c.put_many(collection, records))
            .map_err(Into::into)
    }

    /// The live value of `key`, `None` if absent or deleted.
    pub fn get(&self, collection: &str, key: &str) -> Result<Option<Vec<u8>>, ReadError> {
        self.local().get(collection, key).map_err(Into::into)
    }

    /// Deletes `key` (a tombstone version) and returns its id; `None`, writing nothing, if
    /// there was no live record: deleting is idempotent.
    pub fn delete(&self, collection: &str, key: &str) -> Result<Option<VersionId>, WriteError> {
        self.write(|c| c.delete(collection, key))
            .map_err(Into::into)
    }

    /// Live records in key order (decrypts the whole collection; see `scan` for a part).
    pub fn list(&self, collection: &str) -> Result<Vec<(String, Vec<u8>)>, ReadError> {
        self.local().list(collection).map_err(Into::into)
    }

    /// Every version of `key` ever seen, in version order, each with why it won or lost.
    /// Empty if the key was never written.
    pub fn history(&self, collection: &str, key: &str) -> Result<Vec<HistoryEntry>, ReadError> {
        self.local().history(collection, key).map_err(Into::into)
    }

    /// Creates a collection with `policy`. Succeeds without change if it exists with the
    /// same policy; an existing collection with another policy is refused
    /// ([`WriteError::InvalidInput`](crate::WriteError::InvalidInput)): a collection's policy is fixed when it is created,
    /// and once synced, by the first descriptor pinned in the roster.
    pub fn create_collection(&self, name: &str, policy: Policy) -> Result<(), WriteError> {
        self.local()
            .create_collection(name, policy)
            .map_err(Into::into)
    }

    /// Records of a `manual` collection with concurrent versions, in key order. Empty for a
    /// collection this device does not know; [`WriteError::InvalidInput`](crate::WriteError::InvalidInput) for a collection
    /// with another policy (it never keeps conflicts).
    pub fn conflicts(&self, collection: &str) -> Result<Vec<Conflict>, ReadError> {
        self.local().conflicts(collection).map_err(Into::into)
    }

    /// Writes `value` as the resolution of `key`: a version superseding all current heads.
    /// [`WriteError::NotFound`](crate::WriteError::NotFound) if the key has no versions; [`WriteError::InvalidInput`](crate::WriteError::InvalidInput)
    /// if the collection's policy is not `manual`.
    pub fn resolve(
        &self,
        collection: &str,
        key: &str,
        value: &[u8],
    ) -> Result<VersionId, WriteError> {
        self.write(|c| c.resolve(collection, key, value))
            .map_err(Into::into)
    }

    /// Combined state root over the collections that hold records (tombstones included).
    pub fn state_root(&self) -> Result<[u8; 32], ReadError> {
        self.local().state_root().map_err(Into::into)
    }

    /// Device, account, state and per-collection counters.
    pub fn status(&self) -> Result<Status, ReadError> {
        self.local().status().map_err(Into::into)
    }

    /// Test hook, not for applications: adds `skew_ms` (may be negative) to every reading
    /// of the system clock by this replica only, as if the device's clock were that far
    /// off. Not persisted; a reopened replica reads the system clock as it is.
    #[doc(hidden)]
    pub fn set_clock_skew_for_tests(&self, skew_ms: i64) {
        self.local().set_clock_skew_for_tests(skew_ms);
        if let Ok(mut engine) = self.shared.engine.try_lock()
            && let Some(core) = engine.as_mut()
        {
            core.set_clock_skew_for_tests(skew_ms);
        }
    }

    /// This device's id.
    pub fn device_id(&self) -> DeviceId {
        self.shared.device_id
    }

    /// Home directory of this replica.
    pub fn home(&self) -> &Path {
        &self.shared.home
    }

    /// Subscribes to the changes `filter` wants: every version committed from now on, by a
    /// local write (this handle, another handle, another process on this home) or a pull,
    /// exactly once and in commit order. Local writes arrive at once; commits by other
    /// processes within [`crate::feed::POLL`]. A subscriber that falls behind gets a
    /// [`Lagged`](crate::Lagged) item and never blocks a writer. See [`Changes`].
    pub fn subscribe(&self, filter: ChangeFilter) -> Result<Changes, ReadError> {
        let shared = &self.shared;
        let (rx, start) = shared.feed.subscribe(
            || self.local().store.last_change_seq(),
            |start| PollerSetup {
                db: shared.home.join(crate::store::DB_FILE),
                me: shared.device_id,
                commits: shared.commits.subscribe(),
                start,
            },
            |fut| {
                shared.worker()?.spawn(fut);
                Ok(())
            },
        )?;
        Ok(Changes::new(rx, filter, start))
    }

    /// Starts the sync driver (see [`crate::driver`]): syncs now, after local writes, when
    /// the server says other devices pushed (`live`), and every `interval`; retries
    /// retryable failures with backoff. Stop it with [`SyncHandle::stop`] or by dropping the
    /// handle. Running it alongside explicit [`Replica::sync`] calls is fine: one sync runs
    /// at a time per home.
    pub fn start_sync(&self, options: SyncOptions) -> Result<SyncHandle, SyncError> {
        crate::driver::start(self, options).map_err(Into::into)
    }

    /// Progress of this replica's running sync (or of its last one): batches, records and
    /// bytes each way, updated as each request completes. See [`crate::progress`].
    pub fn progress(&self) -> tokio::sync::watch::Receiver<crate::SyncProgress> {
        self.shared.progress.subscribe()
    }

    /// Synchronises with the server (`docs/protocol.md`): extends the verified roster,
    /// pushes this device's sealed edits and pulls, verifies and applies the other
    /// devices'. Anything from the server that fails a check is refused as a whole and
    /// leaves local state unchanged. The outcome is kept for [`Replica::status`].
    ///
    /// One sync runs at a time per home, across every handle and process on it: a second
    /// one waits for the first (up to [`crate::SYNC_LOCK_WAIT`], then
    /// [`SyncError::Busy`] having done nothing). Reads and local writes never wait
    /// for a sync's network I/O. Dropping the future cancels the sync, losing nothing.
    pub async fn sync(&self) -> Result<SyncReport, SyncError> {
        self.on_engine(|core| Box::pin(core.sync()))
            .await
            .map_err(Into::into)
    }

    /// Starts approving the pending device `device`: makes a fresh code and opens the
    /// attempt on the server. Show [`Approval::code`] to the user, then call
    /// [`Replica::finish_approval`]. The attempt stays open for `timeout`.
    pub async fn begin_approval(
        &self,
        device: DeviceId,
        timeout: Duration,
    ) -> Result<Approval, PairingError> {
        self.on_engine(move |core| Box::pin(core.begin_approval(device, timeout)))
            .await
            .map_err(Into::into)
    }

    /// Waits for the new device's reply and verifies its key-confirmation MAC; only then adds
    /// it to the roster with the keys the MAC proved, seals the account keys to it and sends
    /// the confirmation; then waits until the new device reports, under its MAC, that it is
    /// trusted. A wrong code is [`PairingError::WrongCode`] (the attempt is aborted and
    /// nothing was sealed); no reply in time is [`PairingError::Timeout`]; no report
    /// of the trusted state in time is [`PairingError::Unconfirmed`].
    pub async fn finish_approval(&self, approval: Approval) -> Result<(), PairingError> {
        self.on_engine(move |core| Box::pin(core.finish_approval(approval)))
            .await
            .map_err(Into::into)
    }

    /// Pairs this pending device with the trusted device that shows `code`; returns once
    /// the device is trusted. Errors: [`PairingError::WrongCode`],
    /// [`PairingError::Aborted`], [`PairingError::Timeout`],
    /// [`PairingError::Refused`].
    pub async fn join(&self, code: &str, timeout: Duration) -> Result<(), PairingError> {
        let code = zeroize::Zeroizing::new(code.to_string());
        self.on_engine(move |core| Box::pin(async move { core.join(&code, timeout).await }))
            .await
            .map_err(Into::into)
    }

    /// Devices of the account waiting for approval, as the server lists them (unverified:
    /// only a pairing proves a device's keys).
    pub async fn pending_devices(&self) -> Result<Vec<PendingDeviceInfo>, PairingError> {
        self.on_engine(|core| Box::pin(core.pending_devices()))
            .await
            .map_err(Into::into)
    }

    // Queries (`crate::query`).

    /// Live records of `collection` selected by `opts` (prefix, range, limit, order; see
    /// [`crate::ScanOptions`]). Decrypts only the records it returns. Empty for an unknown
    /// collection.
    pub fn scan(
        &self,
        collection: &str,
        opts: crate::ScanOptions,
    ) -> Result<Vec<(String, Vec<u8>)>, ReadError> {
        self.local().scan(collection, &opts).map_err(Into::into)
    }

    /// Creates an index on the top-level JSON `field` of `collection`'s records (built from
    /// the live records at once, then kept up to date by every change, local or pulled).
    /// Idempotent; the collection need not exist yet. The index holds keyed hashes, never
    /// field values in clear.
    pub fn create_index(&self, collection: &str, field: &str) -> Result<(), WriteError> {
        self.write(|c| c.create_index(collection, field))
            .map_err(Into::into)
    }

    /// Live records of `collection` whose JSON `field` equals `value`, in key order.
    /// [`ReadError::NoIndex`] if the field has no index (see [`Replica::create_index`]).
    pub fn find(
        &self,
        collection: &str,
        field: &str,
        value: &serde_json::Value,
    ) -> Result<Vec<(String, Vec<u8>)>, ReadError> {
        self.local()
            .find(collection, field, value)
            .map_err(Into::into)
    }

    // Transactions and typed values (`crate::txn`).

    /// Runs `f` as one local transaction: everything it writes through its
    /// [`Transaction`](crate::Transaction), in any number of collections, commits at once
    /// when `f` returns `Ok`, and nothing is written when it returns `Err` or panics (the
    /// panic then goes on, after the rollback). Durable when this returns `Ok`; a process
    /// killed before that leaves nothing of it. Reads through the transaction
    /// ([`Transaction::get`](crate::Transaction::get)) see its own writes; nothing else
    /// sees them before the commit.
    ///
    /// The closure's error type is the caller's, as in Diesel's `Connection::transaction`:
    /// anything that converts from [`WriteError`] (`WriteError` itself, `anyhow::Error`,
    /// an application error enum with `From<WriteError>`), so `?` works on the
    /// transaction's operations and on the application's own fallible steps alike. A
    /// failure to begin or to commit is converted into `E` too. Whatever the `Err`, nothing
    /// was written. The closure runs once (no automatic retry).
    ///
    /// ```no_run
    /// # fn demo(replica: &sealsync_client::Replica) -> Result<(), sealsync_client::WriteError> {
    /// let order = serde_json::json!({"item": "tea", "qty": 2});
    /// replica.transaction(|tx| {
    ///     tx.put_json("orders", "o-17", &order)?;
    ///     tx.put("stock", "tea", b"41")?;
    ///     tx.delete("carts", "c-9")?;
    ///     Ok::<_, sealsync_client::WriteError>(())
    /// })?;
    /// # Ok(()) }
    /// ```
    ///
    /// While `f` runs, this replica's local lock and SQLite's write lock are held: reads
    /// and writes through any clone of this handle wait, and so do writes by other handles
    /// and processes on this home and a sync's local steps (those for at most the
    /// database's busy timeout, 30 s). Keep `f` short, without network I/O or waits, and
    /// use only `tx` inside it: calling this `Replica` (or a clone) from inside `f`
    /// deadlocks. Each operation inside is atomic by itself: one that returns `Err`
    /// changed nothing, so `f` may handle it and go on. On the wire, a transaction
    /// travels as one batch per collection (more only past the batch limits); other
    /// devices apply each batch whole, but may pull one collection's part before
    /// another's: see the `txn` module documentation.
    pub fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut crate::Transaction<'_>) -> Result<T, E>,
        E: From<WriteError>,
    {
        /// The closure's own error, or the store's (beginning or committing).
        enum Failed<E> {
            Store(ClientError),
            App(E),
        }
        impl<E> From<ClientError> for Failed<E> {
            fn from(e: ClientError) -> Self {
                Self::Store(e)
            }
        }
        let out = self
            .local()
            .transaction(|tx| f(tx).map_err(Failed::App))
            .map_err(|e| match e {
                Failed::App(e) => e,
                Failed::Store(e) => E::from(WriteError::from(e)),
            })?;
        self.shared.commits.send_modify(|n| *n = n.wrapping_add(1));
        Ok(out)
    }

    /// Serializes `value` to JSON (serde) and writes it as [`Replica::put`] does. In a
    /// `fields` collection it must serialize to an object and is a patch: the top-level
    /// fields it names replace those fields (whole: no deep merge), the others stay, and a
    /// field that serializes to `null` (such as an `Option` that is `None`, unless skipped
    /// with `#[serde(skip_serializing_if = "Option::is_none")]`) is stored as `null`, not
    /// removed; see [`Transaction::put`](crate::Transaction::put). Serialization errors are
    /// [`WriteError::Json`](crate::WriteError::Json).
    pub fn put_json<T: serde::Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<VersionId, WriteError> {
        Ok(self.write(|c| c.put_json(collection, key, value))?)
    }

    /// The live value of `key` deserialized from JSON (serde); `None` if absent or deleted.
    /// In a `fields` collection this is the merged object of every field written, by any
    /// device. [`WriteError::Json`](crate::WriteError::Json) if the stored value is not JSON of type `T`.
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<T>, ReadError> {
        Ok(self.local().get_json(collection, key)?)
    }

    /// Sets the top-level fields given in `fields` (a `serde_json::Map`, or anything that
    /// serializes to a JSON object) on record `key` of a `fields` collection, keeping the
    /// other fields: a field given replaces that field's value whole (no deep merge; across
    /// devices the latest write of each field wins), a field given as `null` is stored as
    /// `null` (no patch removes a field: delete the record and write it again, in one
    /// [`Replica::transaction`], to drop fields), and an absent or deleted record is
    /// created with just these fields. A [`Replica::put`] of a JSON object into a `fields`
    /// collection does exactly the same; `patch` states the intent and refuses other
    /// collections: [`WriteError::NotFieldsCollection`](crate::WriteError::NotFieldsCollection) if the collection does not exist
    /// (it is never created here) or uses another policy, [`WriteError::Json`](crate::WriteError::Json) if
    /// `fields` does not serialize, [`WriteError::InvalidInput`](crate::WriteError::InvalidInput) if it is not an object.
    pub fn patch<P: serde::Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        fields: &P,
    ) -> Result<VersionId, WriteError> {
        Ok(self.write(|c| c.patch(collection, key, fields))?)
    }
}
