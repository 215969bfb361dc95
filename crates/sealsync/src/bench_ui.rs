//! `sealsync bench --workload ui`: local write latency while a device pulls a big sync.
//!
//! Device A writes `--records` records of `--size` bytes and pushes them. Then a "UI" thread
//! on device B calls `put` every `--ui-interval-ms` into another collection: first for
//! [`BASELINE`] with no sync running, then while a task runs B's `sync()`, which pulls all
//! of A's records. Reports the UI puts' latency (p50, p99, max) in both phases, one run.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::ensure;
use sealsync_client::Replica;

use super::rig::{self, Rig, summary_line};
use crate::cli::BenchArgs;

/// How long the UI thread writes with no sync running.
const BASELINE: Duration = Duration::from_secs(3);
const UI_COLLECTION: &str = "ui";
/// Value size of the UI's puts.
const UI_VALUE_BYTES: usize = 256;

pub(super) async fn ui(root: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    let rig = Rig::start(root, ["writer", "ui-device"]).await?;
    let (a, b) = (rig.first.clone(), rig.second.clone());
    let interval = Duration::from_millis(args.ui_interval_ms);

    a.put_many("bench", &rig::records(args.records, args.size))?;
    a.sync().await?;

    // Baseline: no sync running.
    let stop = Arc::new(AtomicBool::new(false));
    let baseline = ui_thread(b.clone(), interval, stop.clone(), 0);
    tokio::time::sleep(BASELINE).await;
    stop.store(true, Ordering::SeqCst);
    let baseline = join(baseline).await?;

    // During B's pull of every record.
    let stop = Arc::new(AtomicBool::new(false));
    let during = ui_thread(b.clone(), interval, stop.clone(), baseline.len());
    let syncing = b.clone();
    let t = Instant::now();
    let report = tokio::spawn(async move { syncing.sync().await }).await??;
    let pull = t.elapsed();
    stop.store(true, Ordering::SeqCst);
    let during = join(during).await?;
    rig.stop().await;
    ensure!(
        report.applied_mutations >= args.records as u64,
        "B's sync applied {} of {} records",
        report.applied_mutations,
        args.records
    );

    println!(
        "sealsync bench ui: UI put latency on B (one {UI_VALUE_BYTES}-byte put every {} ms into \
         another collection)",
        args.ui_interval_ms
    );
    println!(
        "B's sync   : pulled {} records x {} bytes in {:.2} s ({:.0} records/s)",
        args.records,
        args.size,
        pull.as_secs_f64(),
        args.records as f64 / pull.as_secs_f64()
    );
    println!("no sync    : {}", summary_line(&baseline));
    println!("during sync: {}", summary_line(&during));
    Ok(())
}

/// A thread that puts one record every `interval` (on a fixed schedule; a put that runs
/// late delays the next, none is skipped) until `stop`, returning each put's latency.
fn ui_thread(
    replica: Replica,
    interval: Duration,
    stop: Arc<AtomicBool>,
    first_key: usize,
) -> std::thread::JoinHandle<anyhow::Result<Vec<Duration>>> {
    std::thread::spawn(move || {
        let value = vec![0xC3u8; UI_VALUE_BYTES];
        let start = Instant::now();
        let mut latencies = Vec::new();
        let mut i = 0u32;
        while !stop.load(Ordering::SeqCst) {
            let due = start + interval * i;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let t = Instant::now();
            replica.put(
                UI_COLLECTION,
                &format!("ui-{:08}", first_key + i as usize),
                &value,
            )?;
            latencies.push(t.elapsed());
            i += 1;
        }
        Ok(latencies)
    })
}

async fn join(
    t: std::thread::JoinHandle<anyhow::Result<Vec<Duration>>>,
) -> anyhow::Result<Vec<Duration>> {
    tokio::task::spawn_blocking(move || t.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the UI thread panicked"))?
}
