//! Operator entry points: `init`, `enroll_ticket`, `parse_duration`, `Server::bind`, and
//! the inspection helper.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use sealsync_server::{ServerError, enroll_ticket, init, parse_duration};

use crate::kit::{Device, TestServer, files_containing, parse_bundle};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_creates_keys_privately_and_refuses_an_initialised_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let report = init(&dir, "https://127.0.0.1:9443").unwrap();
    assert_eq!(report.url, "https://127.0.0.1:9443");
    assert_eq!(mode(&dir), 0o700);
    for key in ["ca.key", "server.key", "sealsync.db"] {
        assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
    }
    for f in ["ca.pem", "server.pem", "server.json"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let ca = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    let ca_der = CertificateDer::from_pem_slice(ca.as_bytes()).unwrap();
    let pin = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &ca_der);
    assert_eq!(report.ca_pin.as_slice(), pin.as_ref());
    let before = std::fs::read(dir.join("ca.key")).unwrap();
    assert!(matches!(
        init(&dir, "https://127.0.0.1:9443"),
        Err(ServerError::AlreadyInitialised(_))
    ));
    assert_eq!(
        std::fs::read(dir.join("ca.key")).unwrap(),
        before,
        "init overwrote the CA key"
    );
}

#[test]
fn init_puts_the_url_host_in_the_server_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    for (url, want) in [
        (
            "https://sync.example.com:8443",
            "DNSName(\"sync.example.com\")",
        ),
        ("https://[::1]:1", "IPAddress"),
    ] {
        let dir = tmp.path().join(want.len().to_string());
        init(&dir, url).unwrap();
        let pem = std::fs::read(dir.join("server.pem")).unwrap();
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let san = format!(
            "{:?}",
            cert.subject_alternative_name()
                .unwrap()
                .unwrap()
                .value
                .general_names
        );
        assert!(san.contains(want), "{url}: {san}");
    }
    assert!(matches!(
        init(&tmp.path().join("x"), "http://host"),
        Err(ServerError::InvalidUrl(_))
    ));
    assert!(
        !tmp.path().join("x").exists(),
        "a refused init left a directory"
    );
}

#[test]
fn enroll_ticket_makes_a_pinned_single_line_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let report = init(&dir, "https://127.0.0.1:9443").unwrap();
    let line = enroll_ticket(&dir, "acme", Duration::from_secs(900), None).unwrap();
    assert!(!line.contains('\n') && !line.contains('='));
    let b = parse_bundle(&line);
    assert_eq!(b.url, "https://127.0.0.1:9443");
    assert_eq!(b.account, "acme");
    assert_eq!(b.ca_pin, report.ca_pin.to_vec());
    assert_eq!(b.ticket.len(), 32);
    let other = parse_bundle(
        &enroll_ticket(
            &dir,
            "acme",
            Duration::from_secs(60),
            Some("https://example.net"),
        )
        .unwrap(),
    );
    assert_eq!(other.url, "https://example.net");
    assert_ne!(other.ticket, b.ticket);
    // The ticket itself is not stored, only its hash: not in the database, its WAL, or any
    // other file of the data directory.
    assert!(dir.join("sealsync.db").is_file());
    let hits = files_containing(&dir, &b.ticket);
    assert!(hits.is_empty(), "ticket stored in clear: {hits:?}");

    assert!(matches!(
        enroll_ticket(&dir, "", Duration::from_secs(60), None),
        Err(ServerError::InvalidAccount)
    ));
    assert!(matches!(
        enroll_ticket(&dir, "a\nb", Duration::from_secs(60), None),
        Err(ServerError::InvalidAccount)
    ));
    assert!(matches!(
        enroll_ticket(&dir, "acme", Duration::ZERO, None),
        Err(ServerError::InvalidTtl)
    ));
    assert!(matches!(
        enroll_ticket(&dir, "acme", Duration::from_secs(31 * 86_400), None),
        Err(ServerError::InvalidTtl)
    ));
    assert!(matches!(
        enroll_ticket(&dir, "acme", Duration::from_secs(60), Some("ftp://x")),
        Err(ServerError::InvalidUrl(_))
    ));
    assert!(matches!(
        enroll_ticket(
            &tmp.path().join("none"),
            "acme",
            Duration::from_secs(60),
            None
        ),
        Err(ServerError::NotInitialised(_))
    ));
}

#[test]
fn parse_duration_accepts_the_documented_forms() {
    assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
    assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
    assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
    assert!(matches!(
        parse_duration("soon"),
        Err(ServerError::InvalidDuration(_))
    ));
}

#[tokio::test]
async fn bind_needs_an_initialised_dir_and_reports_its_port() {
    let tmp = tempfile::tempdir().unwrap();
    let r = sealsync_server::Server::bind(tmp.path(), "127.0.0.1:0".parse().unwrap()).await;
    assert!(matches!(r, Err(ServerError::NotInitialised(_))));
    init(&tmp.path().join("d"), sealsync_server::DEFAULT_URL).unwrap();
    let server =
        sealsync_server::Server::bind(&tmp.path().join("d"), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    assert_ne!(server.local_addr().port(), 0);
    // Shutdown with no connection returns promptly.
    tokio::time::timeout(Duration::from_secs(5), server.run(async {}))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn sample_batch_shows_metadata_only() {
    let server = TestServer::start().await;
    assert_eq!(
        sealsync_server::inspect::sample_batch(&server.data_dir()).unwrap(),
        "no batch stored yet"
    );
    let mut dev = Device::enroll(&server, "acme", "a").await;
    dev.post_genesis().await;
    let batch = dev.batch(
        sealsync_core::CollectionId([4; 16]),
        1,
        [0; 32],
        b"plaintext-canary",
    );
    let req = sealsync_proto::PushRequest {
        batches: vec![batch.sealed],
    };
    assert_eq!(dev.send("POST", "/v1/batches", &req).await.0, 200);
    let text = sealsync_server::inspect::sample_batch(&server.data_dir()).unwrap();
    assert!(text.contains("acme"));
    assert!(text.contains(&hex::encode([4u8; 16])));
    assert!(text.contains(&dev.id.to_string()));
    assert!(!text.contains("plaintext-canary"));
    server.stop().await;
}
