//! `sealsync bench`: workloads of docs/performance against a real server over loopback
//! mutual TLS (`--workload`, default `w1`).
//!
//! - `w1` (initial sync): one device writes N records of S bytes and pushes them; a fresh
//!   device of the same account pulls them all. Reports records/s for the push and the pull,
//!   and bytes on the wire (socket bytes, TLS included, counted by a relay) divided by the
//!   plaintext bytes. Fails if the two devices' state roots differ.
//! - `w6` (live sync latency, `bench_live`): both devices run the sync driver; one writes
//!   a record at a fixed rate, the other's change feed reports each; write → change
//!   latency percentiles.
//! - `ui` (`bench_ui`): local write latency on a device while it pulls N records, and
//!   without a sync running.
//! - `all`: the three in turn, each on its own server and devices.
//! - `merkle` (`bench_merkle`): the RFC 9162 log structures of issue 7, without a server.

use std::time::Instant;

use anyhow::{Context as _, ensure};

use crate::cli::BenchArgs;

#[path = "bench_live.rs"]
mod live;
#[path = "bench_merkle.rs"]
mod merkle;
#[path = "bench_rig.rs"]
pub(crate) mod rig;
#[path = "bench_ui.rs"]
mod ui;

use rig::Rig;

/// Which workload `sealsync bench` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Workload {
    /// W1: initial sync of --records records, push then pull.
    W1,
    /// W6: live sync latency between two devices running the sync driver.
    W6,
    /// Local write latency during a big pull, and without one.
    Ui,
    /// w1, w6 and ui in turn.
    All,
    /// The RFC 9162 log structures over --records leaves (no server).
    Merkle,
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    ensure!(args.records > 0, "--records must be at least 1");
    ensure!(
        args.size > 0 && args.size <= sealsync_core::MAX_VALUE_BYTES,
        "--size must be between 1 and {}",
        sealsync_core::MAX_VALUE_BYTES
    );
    ensure!(args.duration_secs > 0, "--duration-secs must be at least 1");
    ensure!(args.interval_ms > 0, "--interval-ms must be at least 1");
    ensure!(
        args.ui_interval_ms > 0,
        "--ui-interval-ms must be at least 1"
    );
    let rt = crate::runtime()?;
    let workloads = match args.workload {
        Workload::All => vec![Workload::W1, Workload::W6, Workload::Ui],
        w => vec![w],
    };
    for (i, w) in workloads.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let tmp = tempfile::Builder::new()
            .prefix("sealsync-bench")
            .tempdir()
            .context("cannot create a temporary directory")?;
        match w {
            Workload::W1 => rt.block_on(w1(tmp.path(), &args))?,
            Workload::W6 => rt.block_on(live::w6(tmp.path(), &args))?,
            Workload::Ui | Workload::All => rt.block_on(ui::ui(tmp.path(), &args))?,
            Workload::Merkle => merkle::run(args.records)?,
        }
    }
    Ok(())
}

async fn w1(root: &std::path::Path, args: &BenchArgs) -> anyhow::Result<()> {
    let rig = Rig::start(root, ["writer", "reader"]).await?;
    let (writer, reader) = (rig.first.clone(), rig.second.clone());

    let records = rig::records(args.records, args.size);
    let plaintext_bytes: u64 = records
        .iter()
        .map(|(k, v)| (k.len() + v.len()) as u64)
        .sum();

    let t = Instant::now();
    writer.put_many("bench", &records)?;
    let local_write = t.elapsed();

    let proxy = &rig.proxy;
    let before = proxy.totals();
    let t = Instant::now();
    writer.sync().await?;
    let push = t.elapsed();
    let after_push = proxy.totals();

    let t = Instant::now();
    let report = reader.sync().await?;
    let pull = t.elapsed();
    let after_pull = proxy.totals();

    let writer_root = writer.state_root()?;
    let reader_root = reader.state_root()?;
    rig.stop().await;
    ensure!(
        writer_root == reader_root,
        "state roots differ after the bench sync"
    );

    let n = args.records as f64;
    let push_bytes = (after_push.0 - before.0) + (after_push.1 - before.1);
    let pull_bytes = (after_pull.0 - after_push.0) + (after_pull.1 - after_push.1);
    println!(
        "sealsync bench: {} records x {} bytes (plaintext {:.1} MB incl. keys)",
        args.records,
        args.size,
        plaintext_bytes as f64 / 1e6
    );
    println!(
        "local write : {:>8.0} records/s ({:.2} s, one transaction)",
        n / local_write.as_secs_f64(),
        local_write.as_secs_f64()
    );
    println!(
        "push        : {:>8.0} records/s ({:.2} s), wire {:.1} MB = {:.3} x plaintext",
        n / push.as_secs_f64(),
        push.as_secs_f64(),
        push_bytes as f64 / 1e6,
        push_bytes as f64 / plaintext_bytes as f64
    );
    println!(
        "pull        : {:>8.0} records/s ({:.2} s), wire {:.1} MB = {:.3} x plaintext",
        n / pull.as_secs_f64(),
        pull.as_secs_f64(),
        pull_bytes as f64 / 1e6,
        pull_bytes as f64 / plaintext_bytes as f64
    );
    println!("pull report : {report}");
    println!("state roots equal: {}", hex::encode(reader_root));
    Ok(())
}
