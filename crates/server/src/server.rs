//! The listener: accept loop, per-connection TLS handshake (ALPN picks the mode), HTTP/2
//! serving with hyper, graceful shutdown.
//!
//! The accept loop only accepts, takes a slot (see [`crate::conns`]: it may evict an older
//! unauthenticated connection, never refuses the new one) and spawns; the handshake runs in
//! the spawned task under its deadline, so a slow client never delays others (NA-14). A
//! device connection's identity is read from its verified certificate once, moves the
//! connection into the device pool, and is attached to every request.
//!
//! Deadlines: [`HANDSHAKE_TIMEOUT`] from accept to a finished handshake; an enrollment
//! connection with no request in flight for [`ENROLL_IDLE_TIMEOUT`], or a device connection
//! for [`DEVICE_IDLE_TIMEOUT`], is closed (GOAWAY, then [`CLOSE_GRACE`] for what is in
//! flight); HTTP/2 pings find dead peers. Log lines a peer can trigger (failed handshakes,
//! evictions, refusals) carry the peer address, and the device id once known, and are rate
//! limited ([`crate::lograte`]).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use sealsync_core::DeviceId;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt as _;
use tracing::Instrument as _;

use crate::ServerError;
use crate::conns::{self, Eviction, Limits, Refused, Slot, Slots};
use crate::datadir::{self, DataDir};
use crate::http::{self, AppState, PeerIdentity};
use crate::lograte::LogLimit;
use crate::pki::{self, CertAuthority};
use crate::store::{SqliteStore, StoreError};
use crate::tls::{Mode, TlsConfigs};

/// Deadline for reading the ClientHello and completing the TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An enrollment connection with no request in flight this long is closed.
pub(crate) const ENROLL_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// A device connection with no request in flight this long is closed.
pub(crate) const DEVICE_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// After a GOAWAY (idle, evicted device connection), time left for requests in flight.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(30);
/// HTTP/2 streams per device connection.
const MAX_STREAMS: u32 = 64;
/// HTTP/2 streams per enrollment connection (it serves one request).
const ENROLL_MAX_STREAMS: u32 = 4;
/// How long shutdown waits for open connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Failed or timed-out handshakes.
static HANDSHAKE_LOG: LogLimit = LogLimit::new(10, Duration::from_secs(1));
/// Evicted or refused connections.
static SLOT_LOG: LogLimit = LogLimit::new(10, Duration::from_secs(1));
/// Failed accepts (for example, out of file descriptors).
static ACCEPT_LOG: LogLimit = LogLimit::new(1, Duration::from_secs(1));

/// A bound, ready-to-run Sealsync server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: TlsConfigs,
    state: AppState,
    limits: Limits,
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
        let limits = Limits::for_fd_limit(conns::raise_fd_limit());
        Ok(Server {
            listener,
            local_addr,
            tls,
            state,
            limits,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then stops accepting, ends pending watches (empty
    /// answers), asks every connection to finish (HTTP/2 GOAWAY) and waits up to 30 s for
    /// them. Prints nothing.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            listener,
            tls,
            state,
            limits,
            ..
        } = self;
        let watches = Arc::clone(&state.watch);
        let shared = Arc::new(Shared {
            tls,
            device: http::device_router(state.clone()),
            enroll: http::enroll_router(state),
        });
        let slots = Slots::new(limits);
        tracing::info!(
            unauthenticated = limits.unauthenticated,
            unauthenticated_per_address = limits.unauthenticated_per_addr,
            devices = limits.devices,
            per_device = limits.per_device,
            "connection limits"
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (tcp, peer_addr) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Per-connection errors (reset before accept, fd exhaustion): log, back off briefly.
                            if let Some(suppressed) = ACCEPT_LOG.allow() {
                                tracing::warn!(error = %e, suppressed, "accept failed");
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    // Small HTTP/2 frames must not wait for delayed ACKs (Nagle): ~40 ms per
                    // request otherwise.
                    let _ = tcp.set_nodelay(true);
                    let (slot, eviction, made_room) = slots.admit(peer_addr.ip());
                    tracing::trace!(peer = %peer_addr, ?made_room, "accepted");
                    let shared = Arc::clone(&shared);
                    let stop = stop_rx.clone();
                    tokio::spawn(serve_connection(tcp, peer_addr, shared, slot, eviction, stop));
                }
            }
        }
        drop(listener);
        // Pending watches answer now (empty), so the drain below never waits for them.
        watches.close();
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

/// What every connection task shares.
struct Shared {
    tls: TlsConfigs,
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

/// Logs (rate-limited) that the connection from `peer` was closed to make room.
fn log_evicted(peer: SocketAddr, device: Option<DeviceId>, stage: &'static str) {
    if let Some(suppressed) = SLOT_LOG.allow() {
        match device {
            Some(d) => {
                tracing::info!(peer = %peer, device = %d, stage, suppressed, "connection evicted: the device opened newer connections")
            }
            None => {
                tracing::info!(peer = %peer, stage, suppressed, "connection evicted: the unauthenticated connection limit was reached")
            }
        }
    }
}

async fn serve_connection(
    tcp: TcpStream,
    peer_addr: SocketAddr,
    shared: Arc<Shared>,
    slot: Slot,
    mut eviction: Eviction,
    mut stop: watch::Receiver<bool>,
) {
    let mut chosen: Option<Mode> = None;
    let handshake = async {
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
        let (mode, config) = shared.tls.choose(&start.client_hello());
        chosen = Some(mode);
        let stream = start.into_stream(config).await?;
        Ok::<_, std::io::Error>((mode, stream))
    };
    let handshake = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake) => r,
        _ = &mut eviction => {
            log_evicted(peer_addr, None, "handshake");
            return;
        }
        () = stopped(&mut stop) => return,
    };
    let mode_name = |m: Option<Mode>| match m {
        None => "unknown",
        Some(Mode::Device) => "device",
        Some(Mode::Enroll) => "enroll",
    };
    let (mode, stream) = match handshake {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            if let Some(suppressed) = HANDSHAKE_LOG.allow() {
                tracing::info!(peer = %peer_addr, mode = mode_name(chosen), error = %e, suppressed, "TLS handshake failed");
            }
            return;
        }
        Err(_) => {
            if let Some(suppressed) = HANDSHAKE_LOG.allow() {
                tracing::info!(peer = %peer_addr, mode = mode_name(chosen), suppressed, "TLS handshake timed out");
            }
            return;
        }
    };
    match mode {
        Mode::Enroll => {
            let span = tracing::info_span!("conn", peer = %peer_addr, mode = "enroll");
            let settings = ConnSettings {
                idle: ENROLL_IDLE_TIMEOUT,
                max_streams: ENROLL_MAX_STREAMS,
                graceful_eviction: false,
            };
            let router = shared.enroll.clone();
            drop(shared);
            let info = ConnInfo {
                addr: peer_addr,
                peer: None,
                span,
            };
            serve_http(stream, router, info, settings, eviction, stop).await;
            drop(slot);
        }
        Mode::Device => {
            let Some(peer) = peer_identity(stream.get_ref().1.peer_certificates()) else {
                if let Some(suppressed) = SLOT_LOG.allow() {
                    tracing::warn!(peer = %peer_addr, suppressed, "client certificate without a device id; closing");
                }
                return;
            };
            let (slot, eviction) = match slot.promote(peer.device_id) {
                Ok(s) => s,
                Err(Refused::Evicted) => {
                    log_evicted(peer_addr, None, "handshake");
                    return;
                }
                Err(Refused::DevicesFull) => {
                    if let Some(suppressed) = SLOT_LOG.allow() {
                        tracing::warn!(peer = %peer_addr, device = %peer.device_id, suppressed, "device connection limit reached; closing");
                    }
                    return;
                }
            };
            let span = tracing::info_span!("conn", peer = %peer_addr, device = %peer.device_id);
            let settings = ConnSettings {
                idle: DEVICE_IDLE_TIMEOUT,
                max_streams: MAX_STREAMS,
                graceful_eviction: true,
            };
            let router = shared.device.clone();
            drop(shared);
            let info = ConnInfo {
                addr: peer_addr,
                peer: Some(peer),
                span,
            };
            serve_http(stream, router, info, settings, eviction, stop).await;
            drop(slot);
        }
    }
}

/// How one mode's connections are served.
#[derive(Debug, Clone, Copy)]
struct ConnSettings {
    /// Closed after this long with no request in flight.
    idle: Duration,
    /// HTTP/2 concurrent streams.
    max_streams: u32,
    /// On eviction: GOAWAY and let requests in flight finish (else: close at once).
    graceful_eviction: bool,
}

/// Why a served connection is being closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    Shutdown,
    Idle,
    Evicted,
}

/// Who a served connection is with.
struct ConnInfo {
    /// The peer's address.
    addr: SocketAddr,
    /// The device, on a mutual-TLS connection.
    peer: Option<PeerIdentity>,
    /// The span every log line of the connection is in (peer address, device id).
    span: tracing::Span,
}

async fn serve_http(
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    router: Router,
    info: ConnInfo,
    settings: ConnSettings,
    mut eviction: Eviction,
    mut stop: watch::Receiver<bool>,
) {
    let ConnInfo { addr, peer, span } = info;
    let activity = Arc::new(Activity::new());
    let requests = Arc::clone(&activity);
    let request_span = span.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        if let Some(p) = peer {
            req.extensions_mut().insert(p);
        }
        let busy = Busy::begin(&requests);
        let response = router.clone().oneshot(req.map(axum::body::Body::new));
        // hyper runs each stream on its own task: the span is attached here so that every
        // log line of the request names the peer and device.
        async move {
            let r = response.await;
            drop(busy);
            r
        }
        .instrument(request_span.clone())
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(settings.max_streams)
        .max_header_list_size(64 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(60)))
        .keep_alive_timeout(Duration::from_secs(20));
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let device = peer.map(|p| p.device_id);
    let why = tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(parent: &span, error = %e, "connection ended with an error");
            }
            return;
        }
        () = stopped(&mut stop) => Close::Shutdown,
        () = activity.idle_for(settings.idle) => Close::Idle,
        _ = &mut eviction => Close::Evicted,
    };
    match why {
        Close::Evicted => {
            log_evicted(addr, device, "serving");
            if !settings.graceful_eviction {
                return;
            }
        }
        Close::Idle => tracing::debug!(parent: &span, "idle connection closed"),
        Close::Shutdown => {}
    }
    conn.as_mut().graceful_shutdown();
    match tokio::time::timeout(CLOSE_GRACE, conn).await {
        Ok(Err(e)) => tracing::debug!(parent: &span, error = %e, "connection ended with an error"),
        Ok(Ok(())) => {}
        Err(_) => {
            tracing::debug!(parent: &span, "requests still in flight after the grace period; closed")
        }
    }
}

/// Requests in flight on one connection and when the last one started or ended.
#[derive(Debug)]
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `start` of the last request start or end.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once no request has been in flight for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let wait = if self.in_flight.load(Ordering::Relaxed) > 0 {
                limit
            } else {
                let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
                let quiet = last.elapsed();
                if quiet >= limit {
                    return;
                }
                limit - quiet
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// One request in flight (counted in [`Activity`] until dropped).
struct Busy(Arc<Activity>);

impl Busy {
    fn begin(activity: &Arc<Activity>) -> Busy {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        Busy(Arc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
