//! Connection floods against a real server while a real device syncs (NA-14).
//!
//! Each test opens 1024 (or 1100) real idle connections — TLS handshakes completed with the
//! `sealsync-enroll` ALPN and no ticket, or raw TCP connections that never send a byte —
//! from loopback source addresses chosen by binding the client socket (Linux routes all of
//! 127.0.0.0/8 to loopback), holds them open, and then has a real `Replica` push and pull,
//! and a fresh device enroll. Before the connection slots, such a flood held every one of
//! the server's 1024 connection slots and the device's handshake was closed at accept.
//!
//! What happens when the flood shares the device's address (a NAT, say), documented by
//! [`an_idle_flood_from_the_devices_own_address_does_not_lock_it_out`]: the flood only ever
//! holds that address's 8 unauthenticated slots, each new connection (the device's too)
//! evicts the address's oldest, so an idle flood cannot keep the device out. A flood that
//! keeps opening connections from the device's own address faster than one handshake takes
//! can evict the device's handshake; once a device's handshake completes its connection is
//! in the device pool, out of the flood's reach.
//!
//! Every test is bounded: a fixed number of connections, opened a few at a time, with an
//! overall deadline that only guards against a hang; every socket is closed when the test
//! ends.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustls_pki_types::ServerName;
use sealsync_client::{DeviceState, Replica};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

use crate::kit::{TLS13, TestServer, client_config, first_opts, opts};

/// Connections in one flood (the old server-wide limit).
const FLOOD: usize = 1024;
/// Raw TCP connections in the raw flood (the figure).
const RAW_FLOOD: usize = 1100;
/// Connections opened at once while flooding.
const PARALLEL: usize = 32;
/// Guard against a hang of one whole test phase (not a timing assertion).
const PHASE_DEADLINE: Duration = Duration::from_secs(300);

/// What a flood opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// TCP only; nothing is ever sent.
    RawTcp,
    /// A completed TLS 1.3 handshake offering `sealsync-enroll`, then nothing.
    EnrollTls,
}

/// A connection the flood holds open.
#[derive(Debug)]
#[allow(dead_code)] // held only to keep the socket open
enum Held {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A TCP connection to `server` from `source` (port chosen by the kernel).
async fn connect_from(source: Ipv4Addr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    socket.connect(server).await
}

/// Opens `count` idle connections of `kind` to `server`, spread round-robin over
/// `sources`, at most [`PARALLEL`] at a time. Connections the server closes or refuses
/// during their handshake (it evicts old ones to admit new ones) are not held; the
/// number attempted is always `count`.
async fn flood(server: &TestServer, kind: Kind, sources: &[Ipv4Addr], count: usize) -> Vec<Held> {
    let config = client_config(
        &server.ca_der(),
        None,
        &[sealsync_proto::ALPN_ENROLL],
        TLS13,
    );
    let addr = server.addr;
    let mut held = Vec::with_capacity(count);
    let mut tasks = JoinSet::new();
    let open = async {
        for i in 0..count {
            if tasks.len() >= PARALLEL
                && let Some(done) = tasks.join_next().await
            {
                held.extend(done.expect("flood task"));
            }
            let source = sources[i % sources.len()];
            let config = Arc::clone(&config);
            tasks.spawn(async move { open_one(kind, source, addr, config).await });
        }
        while let Some(done) = tasks.join_next().await {
            held.extend(done.expect("flood task"));
        }
    };
    tokio::time::timeout(PHASE_DEADLINE, open)
        .await
        .expect("the flood did not finish opening its connections");
    held
}

/// One flood connection, or `None` when the server closed it first.
async fn open_one(
    kind: Kind,
    source: Ipv4Addr,
    server: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Option<Held> {
    let tcp = connect_from(source, server).await.ok()?;
    match kind {
        Kind::RawTcp => Some(Held::Tcp(tcp)),
        Kind::EnrollTls => {
            let name = ServerName::IpAddress(server.ip().into());
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .ok()?;
            Some(Held::Tls(Box::new(tls)))
        }
    }
}

/// A trusted device (the account's first) with a record waiting to be pushed.
async fn trusted_device(server: &TestServer) -> Replica {
    let first = Replica::enroll(
        &server.home("first"),
        &server.bundle("acme"),
        first_opts("first"),
    )
    .await
    .expect("enroll the first device");
    assert_eq!(first.state, DeviceState::Trusted);
    let replica = first.replica;
    replica.sync().await.expect("sync before the flood");
    replica
}

/// With the flood held open: the device pushes a new record and pulls, and a new device
/// enrolls (an unauthenticated connection, like the flood's). Each must succeed.
async fn device_works_through_the_flood(server: &TestServer, device: &mut Replica, tag: &str) {
    let work = async {
        device
            .put("notes", &format!("during-{tag}"), b"written under a flood")
            .expect("put");
        device
            .sync()
            .await
            .unwrap_or_else(|e| panic!("sync under the {tag} flood failed: {e}"));
        let after = device.status().expect("status");
        assert_eq!(after.state, DeviceState::Trusted);
        let newcomer = Replica::enroll(
            &server.home(&format!("newcomer-{tag}")),
            &server.bundle("acme"),
            opts("newcomer"),
        )
        .await
        .unwrap_or_else(|e| panic!("enrollment under the {tag} flood failed: {e}"));
        assert_eq!(newcomer.state, DeviceState::Pending);
        device
            .sync()
            .await
            .unwrap_or_else(|e| panic!("second sync under the {tag} flood failed: {e}"));
    };
    tokio::time::timeout(PHASE_DEADLINE, work)
        .await
        .expect("the device's work under the flood hung");
    assert_eq!(
        device.get("notes", &format!("during-{tag}")).expect("get"),
        Some(b"written under a flood".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_enroll_tls_flood_from_another_address_does_not_lock_out_a_device() {
    // NA-14: 1024 completed `sealsync-enroll` handshakes without a ticket, held idle from
    // 127.0.0.2, then a second flooder keeps opening more during the device's work.
    let server = TestServer::start().await;
    let mut device = trusted_device(&server).await;
    let flooder = Ipv4Addr::new(127, 0, 0, 2);
    let held = flood(&server, Kind::EnrollTls, &[flooder], FLOOD).await;
    // Keep flooding while the device works (bounded: at most FLOOD more connections).
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let stop = Arc::clone(&stop);
        let addr = server.addr;
        let config = client_config(
            &server.ca_der(),
            None,
            &[sealsync_proto::ALPN_ENROLL],
            TLS13,
        );
        tokio::spawn(async move {
            let mut kept = Vec::new();
            for _ in 0..FLOOD {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let config = Arc::clone(&config);
                kept.extend(open_one(Kind::EnrollTls, flooder, addr, config).await);
            }
            kept.len()
        })
    };
    device_works_through_the_flood(&server, &mut device, "enroll-tls").await;
    stop.store(true, Ordering::SeqCst);
    tokio::time::timeout(PHASE_DEADLINE, churn)
        .await
        .expect("churn hung")
        .expect("churn task");
    drop(held);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_raw_tcp_flood_does_not_lock_out_a_device() {
    // NA-14: 1100 raw TCP connections that never send a byte, held idle from 127.0.0.2.
    let server = TestServer::start().await;
    let mut device = trusted_device(&server).await;
    let held = flood(
        &server,
        Kind::RawTcp,
        &[Ipv4Addr::new(127, 0, 0, 2)],
        RAW_FLOOD,
    )
    .await;
    assert_eq!(held.len(), RAW_FLOOD, "a TCP connect failed");
    device_works_through_the_flood(&server, &mut device, "raw-tcp").await;
    drop(held);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_spread_over_many_addresses_fills_the_pool_and_a_device_still_gets_in() {
    // NA-14, BI-12: 1024 idle enrollment connections from 128 addresses (8 each: within
    // every per-address cap) fill the unauthenticated pool; the device's and the newcomer's
    // connections each displace the oldest flood connection instead of being refused.
    let server = TestServer::start().await;
    let mut device = trusted_device(&server).await;
    let sources: Vec<Ipv4Addr> = (1..=128).map(|i| Ipv4Addr::new(127, 0, 1, i)).collect();
    let held = flood(&server, Kind::EnrollTls, &sources, FLOOD).await;
    device_works_through_the_flood(&server, &mut device, "many-addresses").await;
    drop(held);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_flood_from_the_devices_own_address_does_not_lock_it_out() {
    // NA-14: the flood shares the device's address (127.0.0.1); it holds at most that
    // address's unauthenticated slots, and the device's connection evicts the oldest.
    let server = TestServer::start().await;
    let mut device = trusted_device(&server).await;
    let own = Ipv4Addr::LOCALHOST;
    // TLS first: raw connections opened last are surely all still open when the device
    // starts (a raw connection is closed at the 10 s handshake deadline).
    let mut held = flood(&server, Kind::EnrollTls, &[own], FLOOD / 2).await;
    held.extend(flood(&server, Kind::RawTcp, &[own], FLOOD / 2).await);
    device_works_through_the_flood(&server, &mut device, "same-address").await;
    drop(held);
    server.stop().await;
}
