//! A loopback TCP relay that counts the bytes crossing it in each direction, so benchmarks
//! can report socket bytes (TLS records included) rather than application bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Byte counters of a [`CountingProxy`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Bytes from clients to the server.
    pub(crate) up: AtomicU64,
    /// Bytes from the server to clients.
    pub(crate) down: AtomicU64,
}

/// A running relay from a loopback port to `target`.
#[derive(Debug)]
pub(crate) struct CountingProxy {
    pub(crate) addr: SocketAddr,
    pub(crate) counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    /// Listens on 127.0.0.1 (a free port) and relays every connection to `target`.
    pub(crate) async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let c = Arc::clone(&counters);
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let c = Arc::clone(&c);
                tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(target).await {
                        relay(inbound, outbound, c).await;
                    }
                });
            }
        });
        Ok(Self {
            addr,
            counters,
            task,
        })
    }

    /// Bytes (up, down) so far.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (
            self.counters.up.load(Ordering::Relaxed),
            self.counters.down.load(Ordering::Relaxed),
        )
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(inbound: TcpStream, outbound: TcpStream, counters: Arc<Counters>) {
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (mut ir, mut iw) = inbound.into_split();
    let (mut or, mut ow) = outbound.into_split();
    let up = Arc::clone(&counters);
    let a = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = ir.read(&mut buf).await {
            if n == 0 || ow.write_all(&buf[..n]).await.is_err() {
                break;
            }
            up.up.fetch_add(n as u64, Ordering::Relaxed);
        }
        let _ = ow.shutdown().await;
    };
    let b = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = or.read(&mut buf).await {
            if n == 0 || iw.write_all(&buf[..n]).await.is_err() {
                break;
            }
            counters.down.fetch_add(n as u64, Ordering::Relaxed);
        }
        let _ = iw.shutdown().await;
    };
    tokio::join!(a, b);
}
