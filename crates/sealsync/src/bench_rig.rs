//! What every `sealsync bench` workload starts from: a real server on a loopback port, behind
//! a relay that counts socket bytes, and two devices of one account, both trusted (the
//! second paired with the first) and synced once. Also small helpers: the benchmarks'
//! deterministic values and latency percentiles.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use sealsync_client::{EnrollOptions, Replica};
use tokio::sync::oneshot;

use crate::proxy::CountingProxy;

/// A server and two devices of the account `bench`.
#[derive(Debug)]
pub(crate) struct Rig {
    /// The relay in front of the server (the devices' server address).
    pub(crate) proxy: CountingProxy,
    /// The account's first device.
    pub(crate) first: Replica,
    /// The second device, paired with the first.
    pub(crate) second: Replica,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), sealsync_server::ServerError>>,
}

impl Rig {
    /// Starts the server in `root/server` and enrolls the devices `names` in `root/<name>`.
    pub(crate) async fn start(root: &Path, names: [&str; 2]) -> anyhow::Result<Rig> {
        let server_dir = root.join("server");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let server_addr = listener.local_addr()?;
        let proxy = CountingProxy::start(server_addr)
            .await
            .context("cannot start the counting relay")?;
        let url = format!("https://{}", proxy.addr);
        sealsync_server::init(&server_dir, &url)?;
        let server = sealsync_server::Server::from_listener(&server_dir, listener).await?;
        let (stop, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(server.run(async move {
            let _ = stop_rx.await;
        }));

        let ttl = Duration::from_secs(900);
        let first = Replica::enroll(
            &root.join(names[0]),
            &sealsync_server::enroll_ticket(&server_dir, "bench", ttl, None)?,
            EnrollOptions::new(names[0]).new_account(true),
        )
        .await?;
        let mut first = first.replica;
        let second = Replica::enroll(
            &root.join(names[1]),
            &sealsync_server::enroll_ticket(&server_dir, "bench", ttl, None)?,
            EnrollOptions::new(names[1]),
        )
        .await?;
        let mut second = second.replica;
        crate::demo::pair(&mut first, &mut second).await?;
        second.sync().await?;
        Ok(Rig {
            proxy,
            first,
            second,
            stop,
            server,
        })
    }

    /// Stops the server and waits for it.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}

/// `n` records of `size` bytes with deterministic, incompressible-looking values (xorshift,
/// fixed seed), keyed `record-00000000` on.
pub(crate) fn records(n: usize, size: usize) -> Vec<(String, Vec<u8>)> {
    let mut state: u64 = 0x5EA1_5EA1_2026_0001;
    let mut records = Vec::with_capacity(n);
    for i in 0..n {
        let mut value = vec![0u8; size];
        for chunk in value.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bytes = state.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        records.push((format!("record-{i:08}"), value));
    }
    records
}

/// Latency summary of a set of samples, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Summary {
    pub(crate) count: usize,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Summary {
    /// Nearest-rank percentiles of `samples` (any order); `None` if empty.
    pub(crate) fn of(samples: &[Duration]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let i = ((p / 100.0) * ms.len() as f64).ceil() as usize;
            ms[i.clamp(1, ms.len()) - 1]
        };
        Some(Summary {
            count: ms.len(),
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: ms[ms.len() - 1],
        })
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n {:>5}  p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
            self.count, self.p50, self.p90, self.p99, self.max
        )
    }
}

/// A summary's line, or "no samples".
pub(crate) fn summary_line(samples: &[Duration]) -> String {
    Summary::of(samples).map_or_else(|| "no samples".to_string(), |s| s.to_string())
}
