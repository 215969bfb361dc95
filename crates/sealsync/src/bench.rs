//! `sealsync bench`: workload W1 of docs/performance (initial sync).
//!
//! One device writes N records of S bytes and pushes them; a fresh device of the same account
//! pulls them all, both through a real server over loopback mutual TLS. Reports records/s for
//! the push and the pull, and bytes on the wire (socket bytes, TLS included, counted by a
//! relay) divided by the plaintext bytes. Fails if the two devices' state roots differ.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use sealsync_client::{EnrollOptions, Replica};

use crate::cli::BenchArgs;
use crate::proxy::CountingProxy;

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    ensure!(args.records > 0, "--records must be at least 1");
    ensure!(
        args.size > 0 && args.size <= sealsync_core::MAX_VALUE_BYTES,
        "--size must be between 1 and {}",
        sealsync_core::MAX_VALUE_BYTES
    );
    let tmp = tempfile::Builder::new()
        .prefix("sealsync-bench")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let rt = crate::runtime()?;
    rt.block_on(bench(tmp.path(), args))
}

async fn bench(root: &std::path::Path, args: BenchArgs) -> anyhow::Result<()> {
    let server_dir = root.join("server");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let server_addr = listener.local_addr()?;
    let proxy = CountingProxy::start(server_addr)
        .await
        .context("cannot start the counting relay")?;
    let url = format!("https://{}", proxy.addr);
    sealsync_server::init(&server_dir, &url)?;
    let server = sealsync_server::Server::from_listener(&server_dir, listener).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(server.run(async move {
        let _ = stop_rx.await;
    }));

    let ttl = Duration::from_secs(900);
    let writer = Replica::enroll(
        &root.join("writer"),
        &sealsync_server::enroll_ticket(&server_dir, "bench", ttl, None)?,
        EnrollOptions::new("writer").new_account(true),
    )
    .await?;
    let mut writer = writer.replica;
    let reader = Replica::enroll(
        &root.join("reader"),
        &sealsync_server::enroll_ticket(&server_dir, "bench", ttl, None)?,
        EnrollOptions::new("reader"),
    )
    .await?;
    let mut reader = reader.replica;
    crate::demo::pair(&mut writer, &mut reader).await?;
    reader.sync().await?;

    // Deterministic, incompressible-looking values (xorshift), fixed seed.
    let mut state: u64 = 0x5EA1_5EA1_2026_0001;
    let mut records = Vec::with_capacity(args.records);
    for i in 0..args.records {
        let mut value = vec![0u8; args.size];
        for chunk in value.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bytes = state.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        records.push((format!("record-{i:08}"), value));
    }
    let plaintext_bytes: u64 = records
        .iter()
        .map(|(k, v)| (k.len() + v.len()) as u64)
        .sum();

    let t = Instant::now();
    writer.put_many("bench", &records)?;
    let local_write = t.elapsed();

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
    let _ = stop_tx.send(());
    let _ = server_task.await;
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
