//! CF-12, CF-13, CF-14 on the shipped code path: real replicas (SQLite files in a temporary
//! directory) of 2 to 5 devices of one account edit offline through the public `Core` API
//! (`put`, `delete`, `resolve`), seal real batches into their outboxes (`seal_outbox`), and
//! pull them from per-device logs through the same three calls `pull_collection` makes for
//! each page: `check_page_indices`, `Core::verify_page` and `Store::apply_page`. Each
//! device's log interleaves the authors' batches in a random order, some not yet delivered,
//! some delivered twice, fetched in pages of random size, with out-of-order batches probed
//! (and refused) on the way. At the end every device, and an observer that received every
//! batch in canonical order, must have the state root that `sealsync_core` computes from
//! every sealed version, and the history of every record must hold exactly the versions that
//! were written: none lost, none invented.
//!
//! Speed: the accounts are made once per test (one per number of devices, each with its
//! observer) and their homes copied into a fresh directory per case, on tmpfs where there is
//! one (see [`case_dir`]), and each case's connections run with `PRAGMA synchronous = OFF`.
//! All reads, writes and transactions are the store's own; only the fsync at each commit is
//! skipped, which matters for power loss (tested in `local`), not for what a merge computes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sealsync_core::{
    ChainState, Policy, Version, VersionId, collection_root, combined_root, mutation_version,
    open_batch_with_keys, verify_batch,
};
use sealsync_proto::{LogEntry, Sealed};

use crate::pull::check_page_indices;
use crate::store::VerifiedPage;
use crate::testutil::offline_account;
use crate::{Core, error::ClientError};

const COLL: &str = "c";
/// Devices that edit, at most.
const MAX_DEVICES: usize = 5;
/// Record keys `k0` .. `k3`.
const KEYS: u8 = 4;
/// Cases per policy in the normal test run (3 policies: 1,020 cases).
const CASES_PER_POLICY: u32 = 340;

#[derive(Clone, Debug)]
enum Op {
    Put {
        dev: usize,
        key: u8,
        val: u8,
    },
    Delete {
        dev: usize,
        key: u8,
    },
    /// `resolve`: a version superseding every current head (`manual` only; under the other
    /// policies `resolve` is refused, so the op is a plain `put` there).
    Resolve {
        dev: usize,
        key: u8,
        val: u8,
    },
    /// `seal_outbox`: the device's unsent edits become batches, "pushed" to the server.
    Seal {
        dev: usize,
    },
    /// The server delivers part of what was pushed to this device's log; the device pulls a
    /// few pages.
    Pull {
        dev: usize,
        seed: u64,
    },
}

#[derive(Clone, Debug)]
struct Case {
    devices: usize,
    policy: Policy,
    /// Per device: clock skew in ms (so HLC order differs from the order of edits).
    skews: Vec<i64>,
    /// Which homes of the template account the devices use, the observer's last (a
    /// permutation: varies the order of device ids).
    homes: Vec<usize>,
    ops: Vec<Op>,
    seed: u64,
}

fn op() -> impl Strategy<Value = Op> {
    let d = 0..MAX_DEVICES;
    prop_oneof![
        5 => (d.clone(), 0..KEYS, 0..12u8).prop_map(|(dev, key, val)| Op::Put { dev, key, val }),
        1 => (d.clone(), 0..KEYS).prop_map(|(dev, key)| Op::Delete { dev, key }),
        2 => (d.clone(), 0..KEYS, 0..12u8).prop_map(|(dev, key, val)| Op::Resolve { dev, key, val }),
        2 => d.clone().prop_map(|dev| Op::Seal { dev }),
        2 => (d, any::<u64>()).prop_map(|(dev, seed)| Op::Pull { dev, seed }),
    ]
}

fn case(policy: Policy) -> impl Strategy<Value = Case> {
    (2..=MAX_DEVICES)
        .prop_flat_map(|devices| {
            (
                Just(devices),
                prop::collection::vec(-2000i64..2000, devices),
                Just((0..=devices).collect::<Vec<usize>>()).prop_shuffle(),
                prop::collection::vec(op(), 4..24),
                any::<u64>(),
            )
        })
        .prop_map(move |(devices, skews, homes, ops, seed)| Case {
            devices,
            policy,
            skews,
            homes,
            ops,
            seed,
        })
}

/// The value a device writes: JSON objects for `fields` (the API refuses anything else),
/// opaque bytes otherwise.
fn value(policy: Policy, key: u8, val: u8) -> Vec<u8> {
    match policy {
        Policy::Fields if val % 4 == 3 => {
            format!(r#"{{"f{}":{},"k":{key}}}"#, val % 3, val / 4).into_bytes()
        }
        Policy::Fields => format!(r#"{{"f{}":{}}}"#, val % 3, val / 3).into_bytes(),
        _ => format!("v{val}").into_bytes(),
    }
}

/// xorshift64: the delivery order inside a case, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// One case: devices `0..devices` edit, device `devices` is the observer.
struct World {
    policy: Policy,
    replicas: Vec<Core>,
    /// Every batch each device sealed, in seq order.
    sealed: Vec<Vec<Sealed>>,
    /// Per receiver: the log the server shows it.
    logs: Vec<Vec<Sealed>>,
    /// Per receiver and author: how many of the author's batches its log holds.
    delivered: Vec<Vec<usize>>,
    /// Every version id the API returned for an edit.
    written: BTreeSet<VersionId>,
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if ok {
        Ok(())
    } else {
        Err(TestCaseError::fail(what()))
    }
}

fn fail(e: ClientError) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

impl World {
    fn new(template: &Path, dir: &Path, c: &Case) -> Self {
        let mut replicas = Vec::new();
        for (i, h) in c.homes.iter().enumerate() {
            let home = dir.join(format!("dev{i}"));
            std::fs::create_dir_all(&home).unwrap();
            for f in std::fs::read_dir(template.join(format!("dev{h}"))).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), home.join(f.file_name())).unwrap();
            }
            let mut r = Core::open(&home, &Default::default()).unwrap();
            r.store
                .conn
                .pragma_update(None, "synchronous", "OFF")
                .unwrap();
            r.set_clock_skew_for_tests(c.skews.get(i).copied().unwrap_or(0));
            r.create_collection(COLL, c.policy).unwrap();
            replicas.push(r);
        }
        let n = replicas.len();
        World {
            policy: c.policy,
            replicas,
            sealed: vec![Vec::new(); n],
            logs: vec![Vec::new(); n],
            delivered: vec![vec![0; n]; n],
            written: BTreeSet::new(),
        }
    }

    fn edit(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let policy = self.policy;
        let done = match *op {
            Op::Put { dev, key, val } => {
                self.replicas[dev].put(COLL, &format!("k{key}"), &value(policy, key, val))
            }
            Op::Delete { dev, key } => match self.replicas[dev].delete(COLL, &format!("k{key}")) {
                // Deleting a key this device has not seen live writes nothing.
                Ok(None) => return Ok(()),
                Ok(Some(vid)) => Ok(vid),
                Err(e) => Err(e),
            },
            Op::Resolve { dev, key, val } if policy == Policy::Manual => {
                self.replicas[dev].resolve(COLL, &format!("k{key}"), &value(policy, key, val))
            }
            Op::Resolve { dev, key, val } => {
                self.replicas[dev].put(COLL, &format!("k{key}"), &value(policy, key, val))
            }
            _ => return Ok(()),
        };
        match done {
            Ok(vid) => check(self.written.insert(vid), || {
                format!("version {vid} issued twice")
            }),
            // Deleting or resolving a key this device has not seen live.
            Err(ClientError::NotFound { .. }) => Ok(()),
            Err(e) => Err(fail(e)),
        }
    }

    fn seal(&mut self, dev: usize) -> Result<(), TestCaseError> {
        let r = &mut self.replicas[dev];
        r.seal_outbox().map_err(fail)?;
        let out = r.store.outbox().map_err(fail)?;
        for e in &out {
            let sealed: Sealed = sealsync_proto::decode(&e.bytes)
                .map_err(|_| TestCaseError::fail("outbox bytes do not decode"))?;
            self.sealed[dev].push(sealed);
            check(e.seq == self.sealed[dev].len() as u64, || {
                format!("outbox seq {} out of order", e.seq)
            })?;
        }
        let acked: Vec<_> = out.iter().map(|e| (e.coll, e.seq, e.hash)).collect();
        r.store.ack_outbox(&acked).map_err(fail)?;
        Ok(())
    }

    /// Appends to `dev`'s log a random part (`all`: everything) of what was pushed and is
    /// not in it yet, authors interleaved at random, with random duplicates of earlier
    /// entries; then pulls some pages (`all`: until the log is read).
    fn pull(&mut self, dev: usize, rng: &mut Rng, all: bool) -> Result<(), TestCaseError> {
        let n = self.replicas.len();
        let mut queue: Vec<(usize, usize)> = Vec::new(); // (author, next index, per author)
        for a in 0..n {
            let have = self.delivered[dev][a];
            let pushed = self.sealed[a].len();
            let upto = if all {
                pushed
            } else {
                have + rng.below(pushed - have + 1)
            };
            queue.extend((have..upto).map(|i| (a, i)));
            self.delivered[dev][a] = upto;
        }
        // Random interleaving that keeps each author's order (the server's push check).
        let mut lanes: BTreeMap<usize, std::collections::VecDeque<usize>> = BTreeMap::new();
        for (a, i) in queue {
            lanes.entry(a).or_default().push_back(i);
        }
        while !lanes.is_empty() {
            let pick = *lanes.keys().nth(rng.below(lanes.len())).unwrap_or(&0);
            let lane = lanes.get_mut(&pick).expect("picked lane exists");
            let i = lane.pop_front().expect("lanes are never empty");
            if lane.is_empty() {
                lanes.remove(&pick);
            }
            self.logs[dev].push(self.sealed[pick][i].clone());
            if rng.below(5) == 0 {
                let again = self.logs[dev][rng.below(self.logs[dev].len())].clone();
                self.logs[dev].push(again);
            }
        }
        if !all && rng.below(3) == 0 {
            self.probe_gap(dev, rng)?;
        }
        let mut pages = if all { usize::MAX } else { 1 + rng.below(3) };
        let r = &mut self.replicas[dev];
        let mut ckeys = HashMap::new();
        loop {
            let coll = r.store.collection_required(COLL).map_err(fail)?;
            let cid = coll.cid.expect("trusted devices know collection ids");
            let cursor = coll.cursor as usize;
            let log = &self.logs[dev];
            if cursor >= log.len() || pages == 0 {
                return Ok(());
            }
            pages -= 1;
            let end = (cursor + 1 + rng.below(4)).min(log.len());
            let entries: Vec<LogEntry> = (cursor..end)
                .map(|i| LogEntry {
                    index: i as u64 + 1,
                    batch: Some(log[i].clone()),
                })
                .collect();
            let next = end as u64;
            check_page_indices(coll.cursor, &entries, next).map_err(TestCaseError::fail)?;
            let batches = r
                .verify_page(&coll, cid, &entries, &mut ckeys)
                .map_err(fail)?;
            r.store
                .apply_page(&coll, VerifiedPage { batches, next })
                .map_err(fail)?;
        }
    }

    /// A batch whose predecessor `dev` has not applied is refused whole with the `chain`
    /// check (MS-26), and the refusal changes nothing.
    fn probe_gap(&mut self, dev: usize, rng: &mut Rng) -> Result<(), TestCaseError> {
        let a = rng.below(self.replicas.len());
        let r = &self.replicas[dev];
        let coll = r.store.collection_required(COLL).map_err(fail)?;
        let author = self.replicas[a].device_id;
        let applied = r.store.chain(&author, coll.id).map_err(fail)?.last_seq as usize;
        let Some(ahead) = self.sealed[a].get(applied + 1) else {
            return Ok(());
        };
        let before = r.state_root().map_err(fail)?;
        let entries = [LogEntry {
            index: coll.cursor + 1,
            batch: Some(ahead.clone()),
        }];
        match r.verify_page(&coll, coll.cid.expect("cid"), &entries, &mut HashMap::new()) {
            Err(ClientError::Batch { check, .. }) if check == "chain" => {}
            other => {
                return Err(TestCaseError::fail(format!(
                    "a batch after a gap was not refused by the chain check: {other:?}"
                )));
            }
        }
        check(r.state_root().map_err(fail)? == before, || {
            "a refused page changed the state".into()
        })
    }

    /// The observer receives every batch in canonical order (authors by index, each in seq
    /// order) in one page.
    fn pull_canonical(&mut self) -> Result<(), TestCaseError> {
        let obs = self.replicas.len() - 1;
        let entries: Vec<LogEntry> = self
            .sealed
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, b)| LogEntry {
                index: i as u64 + 1,
                batch: Some(b.clone()),
            })
            .collect();
        let r = &mut self.replicas[obs];
        let coll = r.store.collection_required(COLL).map_err(fail)?;
        let next = entries.len() as u64;
        let batches = r
            .verify_page(&coll, coll.cid.expect("cid"), &entries, &mut HashMap::new())
            .map_err(fail)?;
        r.store
            .apply_page(&coll, VerifiedPage { batches, next })
            .map_err(fail)?;
        Ok(())
    }

    /// Every sealed version, opened with `sealsync_core` alone (not the store), by key.
    fn canonical_versions(&self) -> Result<BTreeMap<String, Vec<Version>>, TestCaseError> {
        let r = &self.replicas[0];
        let keys = r.account_keys().map_err(fail)?;
        let mut out: BTreeMap<String, Vec<Version>> = BTreeMap::new();
        for batches in &self.sealed {
            let mut chain = ChainState::default();
            for s in batches {
                let vh = verify_batch(s, |d| r.trusted_roster().ok()?.member(d).map(|m| m.sign_pk))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let muts = open_batch_with_keys(&vh, s, keys, &chain)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                chain = chain.advance(&vh);
                for m in &muts {
                    let (k, v) = mutation_version(m, vh.device);
                    out.entry(k).or_default().push(v);
                }
            }
        }
        Ok(out)
    }

    fn finish(mut self, rng: &mut Rng) -> Result<(), TestCaseError> {
        let editors = self.replicas.len() - 1;
        for dev in 0..editors {
            self.seal(dev)?;
        }
        for dev in 0..editors {
            self.pull(dev, rng, true)?;
        }
        self.pull_canonical()?;

        let versions = self.canonical_versions()?;
        let all: BTreeSet<VersionId> = versions.values().flatten().map(|v| v.id).collect();
        check(all == self.written, || {
            format!(
                "sealed versions differ from the edits made: {} sealed, {} written",
                all.len(),
                self.written.len()
            )
        })?;
        let root = collection_root(
            self.policy,
            versions.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        );
        let want = if versions.is_empty() {
            combined_root(&[])
        } else {
            combined_root(&[(COLL.to_string(), root)])
        };
        for (i, r) in self.replicas.iter().enumerate() {
            let got = r.state_root().map_err(fail)?;
            check(got == want, || {
                format!(
                    "device {i} of {editors} (observer = {editors}) has root {} instead of {}",
                    hex::encode(got),
                    hex::encode(want)
                )
            })?;
            for key in 0..KEYS {
                let key = format!("k{key}");
                let have: BTreeSet<VersionId> = r
                    .history(COLL, &key)
                    .map_err(fail)?
                    .iter()
                    .map(|h| h.version)
                    .collect();
                let expected: BTreeSet<VersionId> = versions
                    .get(&key)
                    .map(|vs| vs.iter().map(|v| v.id).collect())
                    .unwrap_or_default();
                check(have == expected, || {
                    format!(
                        "device {i}: history of {key} has {} versions, {} were written",
                        have.len(),
                        expected.len()
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// A directory for one case's homes: on tmpfs (`/dev/shm`) where there is one, else the
/// system's temporary directory. Creating, copying and deleting some 60 files per case on a
/// disk filesystem took most of the run's time (file metadata, not fsync: the cases commit
/// with `synchronous = OFF`, see the module docs).
fn case_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

fn run_case(templates: &[Option<tempfile::TempDir>], c: &Case) -> Result<(), TestCaseError> {
    let template = templates[c.devices]
        .as_ref()
        .expect("a template per device count");
    let dir = case_dir();
    let mut w = World::new(template.path(), dir.path(), c);
    let mut rng = Rng(c.seed | 1);
    let editors = c.devices;
    for op in &c.ops {
        match *op {
            Op::Seal { dev } => w.seal(dev % editors)?,
            Op::Pull { dev, seed } => {
                let mut local = Rng(seed | 1);
                w.pull(dev % editors, &mut local, false)?
            }
            Op::Put { dev, key, val } => w.edit(&Op::Put {
                dev: dev % editors,
                key,
                val,
            })?,
            Op::Delete { dev, key } => w.edit(&Op::Delete {
                dev: dev % editors,
                key,
            })?,
            Op::Resolve { dev, key, val } => w.edit(&Op::Resolve {
                dev: dev % editors,
                key,
                val,
            })?,
        }
    }
    w.finish(&mut rng)
}

/// Runs [`CASES_PER_POLICY`] cases of `policy`. The accounts (one per number of devices, each
/// with an observer) are made once and copied into every case.
fn converge(policy: Policy) {
    let templates: Vec<Option<tempfile::TempDir>> = (0..=MAX_DEVICES)
        .map(|n| {
            (n >= 2).then(|| {
                let dir = tempfile::tempdir().unwrap();
                drop(offline_account(dir.path(), n + 1));
                dir
            })
        })
        .collect();
    let mut runner = TestRunner::new(Config {
        cases: CASES_PER_POLICY,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case(policy), |c| run_case(&templates, &c))
        .unwrap();
}

// CF-12: N offline devices reconnecting in random order, with loss (partial delivery),
// duplication and reordering: identical state hashes, no edit lost. CF-13, CF-14: every
// overwrite and delete race is decided by the same HLC order on every device. MS-26:
// out-of-order batches are refused on the way. 3 x 340 = 1,020 cases.

#[test]
fn lww_replicas_converge_under_any_delivery() {
    converge(Policy::Lww);
}

#[test]
fn fields_replicas_converge_under_any_delivery() {
    converge(Policy::Fields);
}

#[test]
fn manual_replicas_converge_under_any_delivery() {
    converge(Policy::Manual);
}
