//! The listener: accept loop, per-connection TLS handshake (ALPN picks the mode), HTTP/2
//! serving with hyper, graceful shutdown.
//!
//! The accept loop only accepts and spawns; the handshake (with its 10 s deadline, NA-14)
//! runs in the spawned task, so a slow client never delays others. A device connection's
//! identity is read from its verified certificate once and attached to every request.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use sealsync_core::DeviceId;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

use crate::ServerError;
use crate::datadir::{self, DataDir};
use crate::http::{self, AppState, PeerIdentity};
use crate::pki::{self, CertAuthority};
use crate::store::{SqliteStore, StoreError};
use crate::tls::{Mode, TlsConfigs};

/// Deadline for reading the ClientHello and completing the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; further ones are closed right after accept.
const MAX_CONNECTIONS: usize = 1024;
/// HTTP/2 streams per connection.
const MAX_STREAMS: u32 = 64;
/// How long shutdown waits for open connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A bound, ready-to-run Sealsync server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: TlsConfigs,
    state: AppState,
}

impl Server {
    /// Opens the data directory (it must be initialised) and binds `listen` (port 0 picks a
    /// free port; see [`Server::local_addr`]).
    pub async fn bind(data_dir: &Path, listen: SocketAddr) -> Result<Server, ServerError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(ServerError::Listen)?;
        Self::from_listener(data_dir, listener).await
    }

    /// Opens the data directory (it must be initialised) and serves on an already bound
    /// listener.
    pub async fn from_listener(
        data_dir: &Path,
        listener: TcpListener,
    ) -> Result<Server, ServerError> {
        let dir = DataDir::new(data_dir);
        dir.require_initialised()?;
        let local_addr = listener.local_addr().map_err(ServerError::Listen)?;
        let ca_pem = dir.read(datadir::CA_PEM)?;
        let ca_key = zeroize::Zeroizing::new(dir.read(datadir::CA_KEY)?);
        let server_pem = dir.read(datadir::SERVER_PEM)?;
        let server_key = zeroize::Zeroizing::new(dir.read(datadir::SERVER_KEY)?);
        let tls = TlsConfigs::from_pem(&server_pem, &server_key, &ca_pem)?;
        let ca_text =
            String::from_utf8(ca_pem).map_err(|_| ServerError::Pki("ca.pem is not text".into()))?;
        let ca_key_text = std::str::from_utf8(&ca_key)
            .map_err(|_| ServerError::Pki("ca.key is not text".into()))?;
        let ca = CertAuthority::from_pem(&ca_text, ca_key_text)?;
        let db_path = dir.file(datadir::DB);
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(&db_path))
            .await
            .map_err(|e| ServerError::Store(StoreError::Task(e.to_string())))??;
        let state = AppState::new(Arc::new(store), Arc::new(ca));
        Ok(Server {
            listener,
            local_addr,
            tls,
            state,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then stops accepting, asks every connection to
    /// finish (HTTP/2 GOAWAY) and waits up to 30 s for them. Prints nothing.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            listener,
            tls,
            state,
            ..
        } = self;
        let routers = Routers {
            device: http::device_router(state.clone()),
            enroll: http::enroll_router(state),
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (tcp, peer_addr) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Per-connection errors (reset before accept, fd exhaustion): log, back off briefly.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    // Small HTTP/2 frames must not wait for delayed ACKs (Nagle): ~40 ms per
                    // request otherwise.
                    let _ = tcp.set_nodelay(true);
                    let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                        tracing::warn!(peer = %peer_addr, "connection limit reached; closing");
                        continue;
                    };
                    let tls = tls.clone();
                    let routers = routers.clone();
                    let stop = stop_rx.clone();
                    tokio::spawn(async move {
                        serve_connection(tcp, peer_addr, tls, routers, stop).await;
                        drop(permit);
                    });
                }
            }
        }
        drop(listener);
        // Ignored error: no connection is listening, which is what we want anyway.
        let _ = stop_tx.send(true);
        drop(stop_rx);
        if tokio::time::timeout(DRAIN_TIMEOUT, stop_tx.closed())
            .await
            .is_err()
        {
            tracing::warn!("shutdown: connections still open after the drain timeout");
        }
        Ok(())
    }
}

#[derive(Clone)]
struct Routers {
    device: Router,
    enroll: Router,
}

/// Device identity from a verified client certificate chain.
fn peer_identity(
    certs: Option<&[rustls_pki_types::CertificateDer<'static>]>,
) -> Option<PeerIdentity> {
    let leaf = certs?.first()?;
    let id = pki::device_id_from_cert(leaf)?;
    Some(PeerIdentity {
        device_id: DeviceId(id),
        cert_fp: pki::sha256(leaf),
    })
}

/// Resolves when shutdown is signalled (or the server is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means: stop.
    let _ = stop.wait_for(|s| *s).await;
}

async fn serve_connection(
    tcp: TcpStream,
    peer_addr: SocketAddr,
    tls: TlsConfigs,
    routers: Routers,
    mut stop: watch::Receiver<bool>,
) {
    let handshake = async {
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
        let Some((mode, config)) = tls.choose(&start.client_hello()) else {
            return Err(std::io::Error::other("no acceptable ALPN protocol offered"));
        };
        let stream = start.into_stream(config).await?;
        Ok((mode, stream))
    };
    let handshake = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake) => r,
        () = stopped(&mut stop) => return,
    };
    let (mode, stream) = match handshake {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer_addr, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %peer_addr, "TLS handshake timed out");
            return;
        }
    };
    let (router, peer) = match mode {
        Mode::Enroll => (routers.enroll, None),
        Mode::Device => {
            let Some(peer) = peer_identity(stream.get_ref().1.peer_certificates()) else {
                tracing::warn!(peer = %peer_addr, "client certificate without a device id; closing");
                return;
            };
            (routers.device, Some(peer))
        }
    };
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        if let Some(p) = peer {
            req.extensions_mut().insert(p);
        }
        router.clone().oneshot(req.map(axum::body::Body::new))
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(64 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(60)))
        .keep_alive_timeout(Duration::from_secs(20));
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer_addr, error = %e, "connection ended with an error");
    }
}
