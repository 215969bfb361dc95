//! Test-only in-memory model of devices and replicas, using the real sealing and
//! verification path, and small fixtures shared by the unit tests (a random device, a
//! re-signed header).
//!
//! Devices each have an [`HlcClock`], a local replica and an outbox; they write offline,
//! seal REAL batches (`seal_batch` with real keys) and apply them locally. Replicas receive
//! batches in any order with duplicates: each batch goes through `verify_batch`, the log
//! check and `check_chain`; a batch whose predecessor has not arrived is held back until it
//! does, duplicates are no-ops, and the rest are opened with `open_batch` and merged with
//! `resolve` per key.

use std::collections::BTreeMap;

use sealsync_crypto::{KxSecretKey, SigContext, SigningKey, VerifyingKey, device_id};
use sealsync_proto::{Mutation, Sealed};

use crate::batch::{
    BatchDraft, ChainCheck, ChainState, check_chain, mutation_version, open_batch_with_keys,
    seal_batch,
};
use crate::error::BatchError;
use crate::hlc::{Hlc, HlcClock};
use crate::ids::{BatchHash, CollectionId, DeviceId};
use crate::keys::AccountKeys;
use crate::merge::{Version, resolve};
use crate::policy::Policy;
use crate::state::collection_root;
use crate::verify::{VerifiedHeader, verify_batch};

mod convergence;
mod fixture;
mod tamper;
mod tamper_chain;

/// Account name used by the model.
pub(crate) const ACCOUNT: &str = "acct";

/// Deterministic signing key for device number `i`, so device ids (and thus tie-breaks)
/// are reproducible from a proptest seed.
pub(crate) fn device_key(i: usize) -> SigningKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    SigningKey::from_seed(&seed)
}

/// The device id of a signing key.
pub(crate) fn id_of(k: &SigningKey) -> DeviceId {
    DeviceId(device_id(&k.verifying_key()))
}

/// A test device with random keys.
pub(crate) struct Dev {
    /// Its signing key.
    pub(crate) sign: SigningKey,
    /// Its key-exchange secret key.
    pub(crate) kx: KxSecretKey,
    /// Its device id (from `sign`).
    pub(crate) id: DeviceId,
}

/// A fresh device with random keys.
pub(crate) fn dev() -> Dev {
    let sign = SigningKey::generate();
    Dev {
        id: id_of(&sign),
        sign,
        kx: KxSecretKey::generate(),
    }
}

/// `sealed` with its header (decoded as `H`) edited by `edit` and signed again by `signer`
/// in context `ctx` over the same ciphertext, as a holder of a member's key would forge it.
pub(crate) fn resign_header<H: prost::Message + Default>(
    sealed: &Sealed,
    ctx: SigContext,
    signer: &SigningKey,
    edit: impl FnOnce(&mut H),
) -> Sealed {
    let mut h: H = sealsync_proto::decode(&sealed.header).unwrap();
    edit(&mut h);
    let header = sealsync_proto::encode(&h);
    let signature = signer.sign(ctx, &header, &sealed.ciphertext).to_vec();
    Sealed {
        header,
        ciphertext: sealed.ciphertext.clone(),
        signature,
    }
}

/// What happened to a received batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Verified, opened and merged.
    Applied,
    /// Already applied: no-op.
    Duplicate,
    /// Its predecessor is missing: kept until it arrives.
    Held,
}

/// One replica of one collection.
#[derive(Clone, Debug)]
pub(crate) struct Replica {
    keys: AccountKeys,
    collection: CollectionId,
    policy: Policy,
    authors: BTreeMap<DeviceId, VerifyingKey>,
    chains: BTreeMap<DeviceId, ChainState>,
    hashes: BTreeMap<(DeviceId, u64), BatchHash>,
    held: Vec<(VerifiedHeader, Sealed)>,
    /// Versions per record key.
    pub(crate) records: BTreeMap<String, Vec<Version>>,
}

impl Replica {
    pub(crate) fn new(
        keys: &AccountKeys,
        collection: CollectionId,
        policy: Policy,
        authors: &BTreeMap<DeviceId, VerifyingKey>,
    ) -> Self {
        Self {
            keys: keys.clone(),
            collection,
            policy,
            authors: authors.clone(),
            chains: BTreeMap::new(),
            hashes: BTreeMap::new(),
            held: Vec::new(),
            records: BTreeMap::new(),
        }
    }

    /// Receives one batch; on success returns what happened to it (held batches that become
    /// applicable are applied too). On error the replica is unchanged.
    pub(crate) fn receive(&mut self, sealed: &Sealed) -> Result<Outcome, BatchError> {
        let v = verify_batch(sealed, |d| self.authors.get(d).copied())?;
        v.check_log(ACCOUNT, &self.collection)?;
        let out = self.place(v, sealed)?;
        if out == Outcome::Applied {
            self.drain_held()?;
        }
        Ok(out)
    }

    fn place(&mut self, v: VerifiedHeader, sealed: &Sealed) -> Result<Outcome, BatchError> {
        let chain = self.chains.get(&v.device).copied().unwrap_or_default();
        match check_chain(&chain, &v, |s| self.hashes.get(&(v.device, s)).copied()) {
            ChainCheck::Next => {
                let muts = open_batch_with_keys(&v, sealed, &self.keys, &chain)?;
                for m in &muts {
                    let (k, version) = mutation_version(m, v.device);
                    self.records.entry(k).or_default().push(version);
                }
                self.chains.insert(v.device, chain.advance(&v));
                self.hashes.insert((v.device, v.header.seq), v.hash);
                Ok(Outcome::Applied)
            }
            ChainCheck::Duplicate => Ok(Outcome::Duplicate),
            ChainCheck::Gap { .. } => {
                if !self.held.iter().any(|(h, _)| h.hash == v.hash) {
                    self.held.push((v, sealed.clone()));
                }
                Ok(Outcome::Held)
            }
            fork @ ChainCheck::Fork { .. } => Err(BatchError::Chain(fork)),
        }
    }

    fn drain_held(&mut self) -> Result<(), BatchError> {
        loop {
            let before = self.held.len();
            for (v, s) in std::mem::take(&mut self.held) {
                self.place(v, &s)?;
            }
            if self.held.len() == before {
                return Ok(());
            }
        }
    }

    /// Batches still waiting for a predecessor.
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// Total versions held, over all records.
    pub(crate) fn version_count(&self) -> usize {
        self.records.values().map(Vec::len).sum()
    }

    /// The chain state of one author.
    pub(crate) fn chain(&self, d: &DeviceId) -> ChainState {
        self.chains.get(d).copied().unwrap_or_default()
    }

    /// The collection's state root.
    pub(crate) fn root(&self) -> [u8; 32] {
        collection_root(
            self.policy,
            self.records.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        )
    }
}

/// One device: clock, outbox chain and its own replica.
#[derive(Debug)]
pub(crate) struct Device {
    pub(crate) id: DeviceId,
    signing: SigningKey,
    clock: HlcClock,
    skew_ms: i64,
    seq: u64,
    prev_hash: BatchHash,
    pending: Vec<Mutation>,
    pub(crate) replica: Replica,
}

impl Device {
    fn now(&self, world_ms: u64) -> u64 {
        world_ms.saturating_add_signed(self.skew_ms)
    }

    /// Writes a put (`Some(value)`) or delete (`None`) of `key` at world time `world_ms`.
    /// `supersedes` lists the heads this device currently sees for the key.
    pub(crate) fn write(&mut self, key: &str, value: Option<Vec<u8>>, world_ms: u64) -> Hlc {
        let hlc = self.clock.tick(self.now(world_ms));
        let mut seen: Vec<Version> = self.replica.records.get(key).cloned().unwrap_or_default();
        seen.extend(
            self.pending
                .iter()
                .filter(|m| m.key == key)
                .map(|m| mutation_version(m, self.id).1),
        );
        let supersedes = resolve(Policy::Manual, &seen)
            .map(|r| r.heads)
            .unwrap_or_default();
        self.pending.push(Mutation {
            key: key.to_owned(),
            hlc: hlc.0,
            deleted: value.is_none(),
            value: value.unwrap_or_default(),
            supersedes: supersedes.iter().map(|v| v.0.to_vec()).collect(),
        });
        hlc
    }

    /// Seals the pending mutations as the next batch, applies it locally and returns it.
    pub(crate) fn flush(&mut self, keys: &AccountKeys) -> Option<Sealed> {
        if self.pending.is_empty() {
            return None;
        }
        let cid = self.replica.collection;
        let ck = keys.collection_key(ACCOUNT, &cid, keys.current_epoch())?;
        let draft = BatchDraft {
            account: ACCOUNT.to_owned(),
            collection: cid,
            device: self.id,
            seq: self.seq + 1,
            prev_hash: self.prev_hash,
            epoch: keys.current_epoch(),
            // The model has no roster; devices check roster heads in the client (MS-12).
            roster_head: [0; 32],
            mutations: std::mem::take(&mut self.pending),
        };
        let sb = seal_batch(draft, &self.signing, &ck).expect("model batches are valid");
        self.seq += 1;
        self.prev_hash = sb.hash;
        let out = self
            .replica
            .receive(&sb.sealed)
            .expect("own batch verifies");
        assert_eq!(out, Outcome::Applied, "own batch is next in its own chain");
        Some(sb.sealed)
    }

    /// Receives batches from others and adopts their clocks (within the drift bound).
    pub(crate) fn pull(&mut self, batches: &[Sealed], world_ms: u64) {
        for b in batches {
            self.replica.receive(b).expect("honest batches verify");
            let header: sealsync_proto::BatchHeader =
                sealsync_proto::decode(&b.header).expect("verified above");
            // A clock beyond the drift bound is ignored, not adopted (protocol.md).
            let _ = self.clock.observe(Hlc(header.hlc_max), self.now(world_ms));
        }
    }
}

/// A whole account with one collection, N devices and the pool of every batch pushed.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) keys: AccountKeys,
    pub(crate) collection: CollectionId,
    pub(crate) policy: Policy,
    pub(crate) authors: BTreeMap<DeviceId, VerifyingKey>,
    pub(crate) devices: Vec<Device>,
    /// Every batch pushed, in push order, with its author index.
    pub(crate) pool: Vec<(usize, Sealed)>,
    /// Number of mutations written.
    pub(crate) written: usize,
}

impl World {
    /// `n` devices with clock skews `skews_ms[i]` (missing = 0).
    pub(crate) fn new(policy: Policy, n: usize, skews_ms: &[i64]) -> Self {
        let keys = AccountKeys::generate();
        let collection = keys.collection_id(ACCOUNT, "things");
        let signing: Vec<SigningKey> = (0..n).map(device_key).collect();
        let authors = signing
            .iter()
            .map(|k| (id_of(k), k.verifying_key()))
            .collect();
        let devices = signing
            .into_iter()
            .enumerate()
            .map(|(i, k)| Device {
                id: id_of(&k),
                signing: k,
                clock: HlcClock::default(),
                skew_ms: skews_ms.get(i).copied().unwrap_or(0),
                seq: 0,
                prev_hash: [0; 32],
                pending: Vec::new(),
                replica: Replica::new(&keys, collection, policy, &authors),
            })
            .collect();
        Self {
            keys,
            collection,
            policy,
            authors,
            devices,
            pool: Vec::new(),
            written: 0,
        }
    }

    /// A fresh replica with no data.
    pub(crate) fn observer(&self) -> Replica {
        Replica::new(&self.keys, self.collection, self.policy, &self.authors)
    }

    /// Device `d` writes.
    pub(crate) fn write(&mut self, d: usize, key: &str, value: Option<Vec<u8>>, world_ms: u64) {
        self.devices[d].write(key, value, world_ms);
        self.written += 1;
    }

    /// Device `d` pushes its pending mutations as one batch.
    pub(crate) fn flush(&mut self, d: usize) {
        if let Some(s) = self.devices[d].flush(&self.keys) {
            self.pool.push((d, s));
        }
    }

    /// Device `d` pulls every batch of device `from` pushed so far, newest first (so earlier
    /// ones are held until their predecessors arrive), each twice.
    pub(crate) fn pull(&mut self, d: usize, from: usize, world_ms: u64) {
        let batches: Vec<Sealed> = self
            .pool
            .iter()
            .rev()
            .filter(|(a, _)| *a == from)
            .flat_map(|(_, s)| [s.clone(), s.clone()])
            .collect();
        self.devices[d].pull(&batches, world_ms);
    }

    /// Every device pushes what it still has pending.
    pub(crate) fn flush_all(&mut self) {
        for d in 0..self.devices.len() {
            self.flush(d);
        }
    }

    /// The pool in canonical order: by author, then seq (push order within an author).
    pub(crate) fn canonical(&self) -> Vec<Sealed> {
        let mut by_author: Vec<(DeviceId, usize, &Sealed)> = self
            .pool
            .iter()
            .enumerate()
            .map(|(n, (a, s))| (self.devices[*a].id, n, s))
            .collect();
        by_author.sort_by_key(|(id, n, _)| (*id, *n));
        by_author.into_iter().map(|(_, _, s)| s.clone()).collect()
    }
}

/// A deterministic permutation of `0..len` plus `extra` duplicates, from `seed` (splitmix64:
/// test shuffling only, not cryptography).
pub(crate) fn delivery_order(len: usize, extra: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..len).collect();
    if len > 0 {
        for _ in 0..extra {
            order.push((next() % len as u64) as usize);
        }
    }
    for i in (1..order.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}
