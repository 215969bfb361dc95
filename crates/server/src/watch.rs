//! Live updates: the in-process hub that wakes `POST /v1/watch` long polls when a push
//! commits, and the watch itself ([`watch`]).
//!
//! Flow: a watch checks its request (at most [`MAX_WATCH_CURSORS`] cursors, 16-byte ids,
//! each collection once), takes one of its device's [`MAX_WATCHES_PER_DEVICE`] slots and
//! subscribes to its account's hint channel, and only then reads the log heads of the named
//! collections from the store; so a push that commits between that read and the wait still
//! wakes it. If a log is past its cursor it answers at once; otherwise it sleeps until a hint
//! names a watched collection past its cursor (then it reads the heads again: the store, not
//! the hint, decides the answer, after checking again that the device is still active), the
//! wait ends, or the server shuts down ([`WatchHub::close`]), and then answers with what
//! changed, possibly nothing.
//!
//! Hints are keyed by account: a push wakes only the watches of its own account, and a watch
//! reads only its own account's logs, so another account's collection id is answered as a
//! log that never changes (no existence leak, BI-16). The hub is in-process; across server
//! nodes, the store's commit notification (PostgreSQL `LISTEN/NOTIFY`, a later backend) is
//! meant to call [`WatchHub::pushed`] on every node (see `docs/protocol.md`, "Live updates").

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sealsync_core::{CollectionId, DeviceId};
use sealsync_proto::{
    MAX_WATCH_CURSORS, MAX_WATCHES_PER_DEVICE, WatchRequest, WatchResponse, watch_wait_ms,
};
use tokio::sync::{broadcast, watch as signal};
use tokio::time::Instant;

use crate::http::ApiError;
use crate::store::{AdmissionState, DeviceRecord, PushOutcome, Store};

/// Hints buffered per account before a slow watch lags (it then re-reads the store).
const HINT_CAPACITY: usize = 256;

/// One hint: `(collection, last log index appended)`.
type Hint = (CollectionId, u64);

/// Wakes the watches of an account when a push to it commits.
#[derive(Debug)]
pub(crate) struct WatchHub {
    state: Mutex<HubState>,
    closed: signal::Sender<bool>,
}

#[derive(Debug, Default)]
struct HubState {
    /// Hint channel per account with at least one open watch.
    accounts: HashMap<String, broadcast::Sender<Hint>>,
    /// Open watches per device.
    per_device: HashMap<DeviceId, usize>,
}

/// Why a device may not open one more watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooManyWatches;

impl Default for WatchHub {
    fn default() -> Self {
        WatchHub {
            state: Mutex::new(HubState::default()),
            closed: signal::Sender::new(false),
        }
    }
}

impl WatchHub {
    /// Tells the account's open watches about a committed push (call only after the store
    /// acknowledged it). Duplicates appended nothing and wake no one.
    pub(crate) fn pushed(&self, account: &str, outcomes: &[PushOutcome]) {
        let mut last: Vec<Hint> = Vec::new();
        for o in outcomes.iter().filter(|o| !o.duplicate) {
            match last.iter_mut().find(|(c, _)| *c == o.collection) {
                Some((_, index)) => *index = (*index).max(o.log_index),
                None => last.push((o.collection, o.log_index)),
            }
        }
        if last.is_empty() {
            return;
        }
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = state.accounts.get(account) {
            for hint in last {
                // An error only means no watch is listening any more.
                let _ = tx.send(hint);
            }
        }
    }

    /// Ends every open watch (with an empty answer) and every later one at once: called
    /// when the server shuts down, so that draining connections never waits for a watch.
    pub(crate) fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Opens a watch for `device` of `account`: takes one of the device's slots and
    /// subscribes to the account's hints.
    fn enter(self: &Arc<Self>, account: &str, device: DeviceId) -> Result<Watcher, TooManyWatches> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let open = state.per_device.entry(device).or_insert(0);
        if *open >= MAX_WATCHES_PER_DEVICE {
            return Err(TooManyWatches);
        }
        *open += 1;
        let hints = match state.accounts.entry(account.to_string()) {
            Entry::Occupied(e) => e.get().subscribe(),
            Entry::Vacant(e) => e.insert(broadcast::Sender::new(HINT_CAPACITY)).subscribe(),
        };
        Ok(Watcher {
            hub: Arc::clone(self),
            account: account.to_string(),
            device,
            hints: Some(hints),
            closed: self.closed.subscribe(),
        })
    }

    /// Watches open now (for tests and metrics).
    #[cfg(test)]
    fn open_watches(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.per_device.values().sum()
    }
}

/// One open watch; gives its slot back and unsubscribes when dropped (also when the client
/// goes away and the request is cancelled).
struct Watcher {
    hub: Arc<WatchHub>,
    account: String,
    device: DeviceId,
    hints: Option<broadcast::Receiver<Hint>>,
    closed: signal::Receiver<bool>,
}

/// What ended a wait for hints.
enum Woken {
    /// A watched collection may have moved past its cursor (or hints were lost).
    Hint,
    /// The wait is over or the server is shutting down.
    Done,
}

impl Watcher {
    /// Waits until a hint names a collection of `watched` beyond its cursor, hints were
    /// dropped (lag), the `deadline` passes or the hub closes.
    async fn next(&mut self, watched: &HashMap<CollectionId, u64>, deadline: Instant) -> Woken {
        let Some(hints) = self.hints.as_mut() else {
            return Woken::Done;
        };
        if *self.closed.borrow() {
            return Woken::Done;
        }
        loop {
            tokio::select! {
                biased;
                _ = self.closed.wait_for(|c| *c) => return Woken::Done,
                () = tokio::time::sleep_until(deadline) => return Woken::Done,
                hint = hints.recv() => match hint {
                    Ok((collection, index)) => {
                        if watched.get(&collection).is_some_and(|after| index > *after) {
                            return Woken::Hint;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => return Woken::Hint,
                    Err(broadcast::error::RecvError::Closed) => return Woken::Done,
                },
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let mut state = self
            .hub
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        drop(self.hints.take());
        if let Some(open) = state.per_device.get_mut(&self.device) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                state.per_device.remove(&self.device);
            }
        }
        if state
            .accounts
            .get(&self.account)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            state.accounts.remove(&self.account);
        }
    }
}

/// The checked cursors of a request, in request order.
fn cursors(request: &WatchRequest) -> Result<Vec<(CollectionId, u64)>, ApiError> {
    if request.cursors.len() > MAX_WATCH_CURSORS {
        return Err(ApiError::bad_request(format!(
            "watch of {} cursors, limit {MAX_WATCH_CURSORS}",
            request.cursors.len()
        )));
    }
    let mut out = Vec::with_capacity(request.cursors.len());
    for (i, c) in request.cursors.iter().enumerate() {
        let id: [u8; 16] = c.collection_id.as_slice().try_into().map_err(|_| {
            ApiError::bad_request(format!("watch cursor {i}: invalid collection id"))
        })?;
        out.push((CollectionId(id), c.after));
    }
    Ok(out)
}

/// The collections of `cursors` whose log in `account` is past the cursor, in request order.
async fn changed(
    store: &dyn Store,
    account: &str,
    cursors: &[(CollectionId, u64)],
) -> Result<Vec<Vec<u8>>, ApiError> {
    let ids = cursors.iter().map(|(c, _)| *c).collect();
    let heads = store.log_heads(account.to_string(), ids).await?;
    Ok(cursors
        .iter()
        .zip(heads)
        .filter(|((_, after), head)| head > after)
        .map(|((c, _), _)| c.0.to_vec())
        .collect())
}

/// `POST /v1/watch` for the active device `me`: answers with the collections of its account
/// named in `request` whose log is past the cursor, at once if there are any, else as soon
/// as a push makes one so, or with none after the wait ([`watch_wait_ms`]) or at shutdown.
/// Refusals: more than [`MAX_WATCH_CURSORS`] cursors, an id that is not 16 bytes or a
/// collection named twice (400); a device with [`MAX_WATCHES_PER_DEVICE`] watches open
/// (503 `busy`).
pub(crate) async fn watch(
    store: &dyn Store,
    hub: &Arc<WatchHub>,
    me: &DeviceRecord,
    request: WatchRequest,
) -> Result<WatchResponse, ApiError> {
    let cursors = cursors(&request)?;
    let watched: HashMap<CollectionId, u64> = cursors.iter().copied().collect();
    if watched.len() != cursors.len() {
        return Err(ApiError::bad_request("watch names a collection twice"));
    }
    let deadline =
        Instant::now() + Duration::from_millis(u64::from(watch_wait_ms(request.wait_ms)));
    if cursors.is_empty() {
        return Ok(WatchResponse::default());
    }
    // Subscribed before the first read: a push committed after it is never missed.
    let mut watcher = hub
        .enter(&me.account, me.device_id)
        .map_err(|TooManyWatches| {
            ApiError::busy(format!(
                "device {} has {MAX_WATCHES_PER_DEVICE} watches open",
                me.device_id
            ))
        })?;
    loop {
        let changed_collections = changed(store, &me.account, &cursors).await?;
        if !changed_collections.is_empty() {
            return Ok(WatchResponse {
                changed_collections,
            });
        }
        match watcher.next(&watched, deadline).await {
            Woken::Hint => still_active(store, me).await?,
            Woken::Done => return Ok(WatchResponse::default()),
        }
    }
}

/// CD-01: a device revoked while its watch waited learns nothing more; the watch is
/// refused (403) instead of answering.
async fn still_active(store: &dyn Store, me: &DeviceRecord) -> Result<(), ApiError> {
    match store.device(me.device_id).await? {
        Some(d) if d.state == AdmissionState::Active && d.cert_fp == me.cert_fp => Ok(()),
        _ => Err(ApiError::forbidden(format!(
            "device {} was revoked during its watch",
            me.device_id
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(collection: u8, log_index: u64, duplicate: bool) -> PushOutcome {
        PushOutcome {
            collection: CollectionId([collection; 16]),
            seq: 1,
            log_index,
            duplicate,
        }
    }

    #[tokio::test]
    async fn slots_are_per_device_and_given_back() {
        let hub = Arc::new(WatchHub::default());
        let (a, b) = (DeviceId([1; 16]), DeviceId([2; 16]));
        let mut held: Vec<Watcher> = (0..MAX_WATCHES_PER_DEVICE)
            .map(|_| hub.enter("acme", a).unwrap())
            .collect();
        assert!(hub.enter("acme", a).is_err(), "one watch too many");
        let other = hub.enter("acme", b).unwrap();
        held.pop();
        let again = hub.enter("acme", a).unwrap();
        drop((held, other, again));
        assert_eq!(hub.open_watches(), 0);
        let state = hub.state.lock().unwrap();
        assert!(state.accounts.is_empty() && state.per_device.is_empty());
    }

    #[tokio::test]
    async fn hints_wake_only_watched_collections_of_the_account_past_the_cursor() {
        let hub = Arc::new(WatchHub::default());
        let mut w = hub.enter("acme", DeviceId([1; 16])).unwrap();
        let watched = HashMap::from([(CollectionId([7; 16]), 5)]);
        let soon = || Instant::now() + Duration::from_millis(200);
        hub.pushed("globex", &[outcome(7, 9, false)]);
        hub.pushed("acme", &[outcome(8, 9, false), outcome(7, 5, false)]);
        hub.pushed("acme", &[outcome(7, 6, true)]);
        assert!(matches!(w.next(&watched, soon()).await, Woken::Done));
        hub.pushed("acme", &[outcome(7, 6, false)]);
        assert!(matches!(w.next(&watched, soon()).await, Woken::Hint));
        hub.close();
        hub.pushed("acme", &[outcome(7, 7, false)]);
        let far = Instant::now() + Duration::from_secs(30);
        assert!(matches!(w.next(&watched, far).await, Woken::Done));
    }
}
