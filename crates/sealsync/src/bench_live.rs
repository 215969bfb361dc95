//! `sealsync bench --workload w6`: live sync latency (W6 of docs/performance).
//!
//! Devices A and B of one account both run the sync driver (`start_sync`, live updates on).
//! A writes one record every `--interval-ms` for `--duration-secs`; B follows its change
//! feed. Each write's latency runs from the instant before A calls `put` to the instant B's
//! subscriber receives that key's change (B has committed it by then). Targets on loopback:
//! p50 ≤ 10 ms, p99 ≤ 50 ms; a miss is reported, not an error.
//!
//! To show where the time goes, both drivers' status is followed (when each sync starts and
//! ends, as seen by a task on the bench's runtime, so a little late), and after the run the
//! same steps are timed without the drivers: A's `put`, A's `sync` (push), B's `sync` (pull
//! of one record) and a sync with nothing to do.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::ensure;
use sealsync_client::{ChangeFilter, Origin, Replica, SyncOptions, SyncStatus};
use tokio::sync::watch;

use super::rig::{Rig, Summary, summary_line};
use crate::cli::BenchArgs;

const COLLECTION: &str = "live";
/// Target write → other device's change latencies on loopback (W6).
const TARGET_P50_MS: f64 = 10.0;
const TARGET_P99_MS: f64 = 50.0;
/// How long B may still take for the last writes after A stops.
const GRACE: Duration = Duration::from_secs(10);
/// Rounds of the driverless breakdown.
const BREAKDOWN_ROUNDS: usize = 20;

/// One sync of a driver: start and end, as seen by the follower.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: Instant,
    end: Instant,
}

pub(super) async fn w6(root: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    let rig = Rig::start(root, ["device-a", "device-b"]).await?;
    let (a, b) = (rig.first.clone(), rig.second.clone());
    let interval = Duration::from_millis(args.interval_ms);
    let writes = usize::try_from(args.duration_secs * 1000 / args.interval_ms)?.max(1);
    let value = vec![0x5Au8; args.size];

    // The collection exists and is synced on both devices, so B's driver watches it.
    a.put(COLLECTION, "warm-up", &value)?;
    a.sync().await?;
    b.sync().await?;

    let mut feed = b.subscribe(ChangeFilter::all().collection(COLLECTION))?;
    let driver_a = a.start_sync(SyncOptions::new())?;
    let driver_b = b.start_sync(SyncOptions::new())?;
    let spans_a = follow(driver_a.status());
    let spans_b = follow(driver_b.status());
    // Both drivers' first syncs, then time for B's watch to reach the server.
    for s in [driver_a.status(), driver_b.status()] {
        let mut s = s;
        s.wait_for(|s| s.syncs >= 1 && !s.syncing).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + interval * writes as u32 + GRACE);
    let subscriber = tokio::spawn(async move {
        let mut got: HashMap<String, Instant> = HashMap::with_capacity(writes);
        let mut lagged = 0u64;
        while got.len() < writes {
            match tokio::time::timeout_at(deadline, feed.next()).await {
                Ok(Some(Ok(c))) => {
                    let now = Instant::now();
                    if matches!(c.origin, Origin::Remote(_)) && c.key.starts_with("w6-") {
                        got.entry(c.key).or_insert(now);
                    }
                }
                Ok(Some(Err(lag))) => lagged += lag.missed,
                Ok(None) | Err(_) => break,
            }
        }
        (got, lagged)
    });

    let writer = {
        let (a, value) = (a.clone(), value.clone());
        std::thread::spawn(move || -> anyhow::Result<Vec<(Instant, Duration)>> {
            let mut sent = Vec::with_capacity(writes);
            for i in 0..writes {
                let due = start + interval * i as u32;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let t0 = Instant::now();
                a.put(COLLECTION, &key(i), &value)?;
                sent.push((t0, t0.elapsed()));
            }
            Ok(sent)
        })
    };
    let sent = tokio::task::spawn_blocking(move || writer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))??;
    let (got, lagged) = subscriber.await?;
    let (status_a, status_b) = (
        driver_a.status().borrow().clone(),
        driver_b.status().borrow().clone(),
    );
    driver_a.stop().await;
    driver_b.stop().await;
    let spans_a = spans_a
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let spans_b = spans_b
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();

    let mut latencies = Vec::with_capacity(writes);
    let mut phases = Phases::default();
    for (i, (t0, put)) in sent.iter().enumerate() {
        let Some(at) = got.get(&key(i)) else { continue };
        latencies.push(at.saturating_duration_since(*t0));
        phases.add(*t0, *put, *at, &spans_a, &spans_b);
    }
    let missing = writes - latencies.len();

    println!(
        "sealsync bench w6: live sync latency, {} writes of {} bytes every {} ms ({} s), \
         both devices running start_sync(SyncOptions::new())",
        writes, args.size, args.interval_ms, args.duration_secs
    );
    println!("write -> B's change feed : {}", summary_line(&latencies));
    if missing > 0 || lagged > 0 {
        println!("not received             : {missing} (feed lag notices: {lagged} changes)");
    }
    match Summary::of(&latencies) {
        Some(s) => println!(
            "targets (p50 <= {TARGET_P50_MS} ms, p99 <= {TARGET_P99_MS} ms): p50 {}, p99 {}",
            verdict(s.p50 <= TARGET_P50_MS),
            verdict(s.p99 <= TARGET_P99_MS)
        ),
        None => println!("targets: not measured (no write arrived)"),
    }
    println!(
        "driver syncs             : A {} (last error: {}), B {} (last error: {})",
        status_a.syncs,
        error_of(&status_a),
        status_b.syncs,
        error_of(&status_b)
    );
    phases.print();

    breakdown(&a, &b, &value).await?;
    rig.stop().await;
    ensure!(
        !latencies.is_empty(),
        "no write of A reached B's change feed"
    );
    Ok(())
}

fn key(i: usize) -> String {
    format!("w6-{i:06}")
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn error_of(s: &SyncStatus) -> String {
    s.last_error
        .as_ref()
        .map_or_else(|| "none".to_string(), |e| e.to_string())
}

/// Records the start and end of every sync of a driver, from its status.
fn follow(mut status: watch::Receiver<SyncStatus>) -> Arc<Mutex<Vec<Span>>> {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let out = spans.clone();
    tokio::spawn(async move {
        let mut started: Option<Instant> = None;
        let mut syncs = status.borrow().syncs;
        while status.changed().await.is_ok() {
            let s = status.borrow_and_update().clone();
            let now = Instant::now();
            if s.syncing && started.is_none() {
                started = Some(now);
            }
            if s.syncs > syncs {
                syncs = s.syncs;
                let start = started.take().unwrap_or(now);
                spans
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Span { start, end: now });
                if s.syncing {
                    started = Some(now);
                }
            }
        }
    });
    out
}

/// Where each write's time went, from the drivers' sync spans.
#[derive(Debug, Default)]
struct Phases {
    /// A's put.
    put: Vec<Duration>,
    /// From put returned to the start of A's sync that pushed it (debounce, wake-up).
    to_push: Vec<Duration>,
    /// A's sync that pushed it.
    push_sync: Vec<Duration>,
    /// From the start of A's sync to the start of B's sync that pulled it (A's push, the
    /// server's watch answer, B's hint).
    to_pull: Vec<Duration>,
    /// From the start of B's sync to the change on B's feed.
    pull: Vec<Duration>,
    /// Writes whose syncs could not be told apart (a sync that started before the put).
    unmatched: usize,
}

impl Phases {
    fn add(&mut self, t0: Instant, put: Duration, at: Instant, a: &[Span], b: &[Span]) {
        let put_end = t0 + put;
        let push = a.iter().find(|s| s.start >= put_end);
        let pull = b.iter().rev().find(|s| s.start <= at);
        match (push, pull) {
            (Some(p), Some(q)) if q.start >= p.start && p.start <= at => {
                self.put.push(put);
                self.to_push.push(p.start - put_end);
                self.push_sync.push(p.end - p.start);
                self.to_pull.push(q.start - p.start);
                self.pull.push(at - q.start);
            }
            _ => self.unmatched += 1,
        }
    }

    fn print(&self) {
        println!("where the time goes (driver syncs as seen by a follower task):");
        println!(
            "  A put (local commit)             : {}",
            summary_line(&self.put)
        );
        println!(
            "  put -> A's sync starts           : {}",
            summary_line(&self.to_push)
        );
        println!(
            "  A's sync (seal, push, pull, ...) : {}",
            summary_line(&self.push_sync)
        );
        println!(
            "  A's sync starts -> B's starts    : {}",
            summary_line(&self.to_pull)
        );
        println!(
            "  B's sync starts -> B's feed      : {}",
            summary_line(&self.pull)
        );
        if self.unmatched > 0 {
            println!("  writes not attributed            : {}", self.unmatched);
        }
    }
}

/// The same steps without the drivers, one at a time: A's put, A's sync pushing it, B's sync
/// pulling it, and a sync with nothing to do.
async fn breakdown(a: &Replica, b: &Replica, value: &[u8]) -> anyhow::Result<()> {
    let (mut put, mut push, mut pull, mut empty) = (vec![], vec![], vec![], vec![]);
    for i in 0..BREAKDOWN_ROUNDS {
        let t = Instant::now();
        a.put(COLLECTION, &format!("breakdown-{i:04}"), value)?;
        put.push(t.elapsed());
        let t = Instant::now();
        a.sync().await?;
        push.push(t.elapsed());
        let t = Instant::now();
        let report = b.sync().await?;
        pull.push(t.elapsed());
        ensure!(
            report.applied_mutations >= 1,
            "B's sync pulled nothing in the breakdown"
        );
        let t = Instant::now();
        b.sync().await?;
        empty.push(t.elapsed());
    }
    println!("the same steps without the drivers ({BREAKDOWN_ROUNDS} rounds):");
    println!(
        "  A put                            : {}",
        summary_line(&put)
    );
    println!(
        "  A sync (push 1 record)           : {}",
        summary_line(&push)
    );
    println!(
        "  B sync (pull 1 record)           : {}",
        summary_line(&pull)
    );
    println!(
        "  B sync (nothing new)             : {}",
        summary_line(&empty)
    );
    Ok(())
}
