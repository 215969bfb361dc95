//! The TLS configuration as a client sees it: modes chosen by ALPN (no ALPN means mutual
//! TLS), client certificates required on `h2`, TLS 1.3 only, the pinned key-exchange
//! groups, the chain served for pinning, and a slow client not holding up others.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use sealsync_proto::{ALPN_ENROLL, ALPN_H2};
use tokio::io::AsyncReadExt as _;

use crate::kit::{
    Device, H2, TLS13, TestServer, client_config, generic_error, key_der, tls_connect,
};

/// A connection that must not reach HTTP: the handshake or the first exchange fails, and
/// no HTTP status ever comes back.
async fn assert_no_http(server: &TestServer, config: Arc<rustls::ClientConfig>) {
    let outcome = async {
        let tls = tls_connect(server.addr, config)
            .await
            .map_err(|e| e.to_string())?;
        let mut h2 = H2::over(tls).await?;
        h2.request("GET", "/v1/status", Vec::new()).await
    };
    let result = tokio::time::timeout(Duration::from_secs(10), outcome)
        .await
        .unwrap();
    assert!(result.is_err(), "a request got through: {result:?}");
}

#[tokio::test]
async fn client_without_certificate_gets_no_http_on_h2() {
    // NA-01
    let server = TestServer::start().await;
    assert_no_http(
        &server,
        client_config(&server.ca_der(), None, &[ALPN_H2], TLS13),
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn certificate_from_another_ca_or_self_signed_is_refused() {
    // NA-02
    let server = TestServer::start().await;
    let device_cn = hex::encode([0xab; 16]);
    // A certificate issued by a foreign CA, for a plausible device id.
    let foreign_ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Sealsync CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let foreign_ca = rcgen::Issuer::new(ca_params, foreign_ca_key);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut leaf = rcgen::CertificateParams::default();
    leaf.distinguished_name = rcgen::DistinguishedName::new();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, device_cn.clone());
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = leaf.signed_by(&key, &foreign_ca).unwrap();
    let identity = (cert.der().clone(), key_der(&key));
    assert_no_http(
        &server,
        client_config(&server.ca_der(), Some(identity), &[ALPN_H2], TLS13),
    )
    .await;

    // A self-signed certificate.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, device_cn);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key).unwrap();
    let identity = (cert.der().clone(), key_der(&key));
    assert_no_http(
        &server,
        client_config(&server.ca_der(), Some(identity), &[ALPN_H2], TLS13),
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn tls12_only_client_is_refused_on_both_modes_and_without_alpn() {
    // NA-07
    let server = TestServer::start().await;
    for alpn in [&[ALPN_H2][..], &[ALPN_ENROLL][..], &[][..]] {
        let config = client_config(&server.ca_der(), None, alpn, &[&rustls::version::TLS12]);
        let r = tokio::time::timeout(Duration::from_secs(10), tls_connect(server.addr, config))
            .await
            .unwrap();
        assert!(r.is_err(), "a TLS 1.2 handshake succeeded");
    }
    server.stop().await;
}

/// A client certificate resolver that has none, and records whether the server asked.
#[derive(Debug, Default)]
struct NoCertButRecord(AtomicBool);

impl rustls::client::ResolvesClientCert for NoCertButRecord {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.store(true, Ordering::SeqCst);
        None
    }

    fn has_certs(&self) -> bool {
        false
    }
}

/// The rustls error inside an I/O error from a TLS stream, if any.
fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

#[tokio::test]
async fn client_without_alpn_gets_the_mutual_tls_handshake_up_to_the_certificate_request() {
    // NA-07, NA-01: a scanner offering no ALPN sees TLS 1.3 and the certificate request,
    // then the standard certificate_required alert, not a bare EOF.
    let server = TestServer::start().await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server.ca_der()).unwrap();
    let asked = Arc::new(NoCertButRecord::default());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(TLS13)
    .unwrap()
    .with_root_certificates(roots)
    .with_client_cert_resolver(asked.clone());
    let mut tls = tokio::time::timeout(
        Duration::from_secs(10),
        tls_connect(server.addr, Arc::new(config)),
    )
    .await
    .unwrap()
    .expect("the handshake ended before the client's Finished");
    assert!(
        asked.0.load(Ordering::SeqCst),
        "no CertificateRequest reached the client"
    );
    let conn = tls.get_ref().1;
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(conn.alpn_protocol(), None);
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
        .await
        .unwrap();
    let err = read.expect_err("the server served a client without a certificate");
    assert!(
        matches!(
            tls_error(&err),
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired
            ))
        ),
        "expected the certificate_required alert, got {err:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn unknown_alpn_gets_the_no_application_protocol_alert() {
    // NA-07: an offer of only foreign protocols is refused with the standard alert.
    let server = TestServer::start().await;
    let config = client_config(&server.ca_der(), None, &[&b"http/1.1"[..]], TLS13);
    let r = tokio::time::timeout(Duration::from_secs(10), tls_connect(server.addr, config))
        .await
        .unwrap();
    let err = r.expect_err("handshake without an acceptable ALPN succeeded");
    assert!(
        matches!(
            tls_error(&err),
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::NoApplicationProtocol
            ))
        ),
        "expected the no_application_protocol alert, got {err:?}"
    );
    server.stop().await;
}

/// A client configuration offering only the key-exchange groups `groups`.
fn client_with_groups(
    server: &TestServer,
    groups: &[&'static dyn rustls::crypto::SupportedKxGroup],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server.ca_der()).unwrap();
    let provider = rustls::crypto::CryptoProvider {
        kx_groups: groups.to_vec(),
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(TLS13)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_ENROLL.to_vec()];
    Arc::new(config)
}

#[tokio::test]
async fn the_hybrid_post_quantum_group_is_negotiated_and_only_x25519_is_a_fallback() {
    // NA-07: X25519MLKEM768 is negotiated with a client preferring it (the order of
    // rustls' defaults, NIST curves included); X25519 alone still works as a fallback; the
    // NIST curves alone are not accepted.
    use rustls::crypto::aws_lc_rs::kx_group;
    let server = TestServer::start().await;
    let everything = [
        kx_group::X25519MLKEM768,
        kx_group::X25519,
        kx_group::SECP256R1,
        kx_group::SECP384R1,
    ];
    for (offer, expected) in [
        (&everything[..], rustls::NamedGroup::X25519MLKEM768),
        (
            &[kx_group::X25519MLKEM768][..],
            rustls::NamedGroup::X25519MLKEM768,
        ),
        (&[kx_group::X25519][..], rustls::NamedGroup::X25519),
    ] {
        let tls = tls_connect(server.addr, client_with_groups(&server, offer))
            .await
            .unwrap();
        let group = tls.get_ref().1.negotiated_key_exchange_group().unwrap();
        assert_eq!(group.name(), expected);
    }
    for nist in [kx_group::SECP256R1, kx_group::SECP384R1] {
        let r = tls_connect(server.addr, client_with_groups(&server, &[nist])).await;
        assert!(r.is_err(), "a NIST-curve-only client was accepted");
    }
    server.stop().await;
}

#[tokio::test]
async fn enroll_alpn_needs_no_certificate_serves_only_enroll_and_sends_the_ca() {
    let server = TestServer::start().await;
    let bundle = server.bundle("acme");
    let config = client_config(&server.ca_der(), None, &[ALPN_ENROLL], TLS13);
    let tls = tls_connect(server.addr, config).await.unwrap();
    let conn = tls.get_ref().1;
    assert_eq!(conn.alpn_protocol(), Some(ALPN_ENROLL));
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    // The chain is [server, CA]; the CA's SHA-256 is the bundle's pin.
    let chain: Vec<CertificateDer<'static>> = conn.peer_certificates().unwrap().to_vec();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1], server.ca_der());
    let pin = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &chain[1]);
    assert_eq!(pin.as_ref(), bundle.ca_pin.as_slice());
    let mut h2 = H2::over(tls).await.unwrap();
    for (method, path) in [
        ("GET", "/v1/status"),
        ("GET", "/v1/roster"),
        ("POST", "/v1/batches"),
    ] {
        let (status, body) = h2.request(method, path, Vec::new()).await.unwrap();
        assert_eq!(
            status, 404,
            "{method} {path} served without a client certificate"
        );
        assert_eq!(generic_error(&body).code, "not_found");
    }
    // The enrollment endpoint answers (here: a malformed request).
    let (status, body) = h2
        .request("POST", "/v1/enroll", vec![0xff; 3])
        .await
        .unwrap();
    assert_eq!(status, 400);
    generic_error(&body);
    server.stop().await;
}

#[tokio::test]
async fn enrolled_certificate_opens_the_device_api() {
    let server = TestServer::start().await;
    let mut dev = Device::enroll(&server, "acme", "laptop").await;
    let (status, body) = dev.get("/v1/status").await;
    assert_eq!(status, 200);
    let st: sealsync_proto::StatusResponse = sealsync_proto::decode(&body).unwrap();
    assert_eq!(st.device_id, dev.id.0.to_vec());
    assert_eq!(st.account, "acme");
    assert_eq!(st.admission, "active");
    // The issued certificate chains to the CA returned at enrollment.
    assert_eq!(dev.enrolled.ca_der, server.ca_der().to_vec());
    // ... and is not accepted on the enrollment ALPN as a way around mTLS: that mode has no
    // device API at all.
    let config = client_config(
        &server.ca_der(),
        Some((
            CertificateDer::from(dev.cert_der.clone()),
            key_der(&dev.tls_key),
        )),
        &[ALPN_ENROLL],
        TLS13,
    );
    let mut h2 = H2::connect(server.addr, config).await.unwrap();
    assert_eq!(
        h2.request("GET", "/v1/status", Vec::new()).await.unwrap().0,
        404
    );
    server.stop().await;
}

#[tokio::test]
async fn a_silent_client_does_not_block_other_handshakes() {
    // NA-14: the handshake (and its deadline) runs per connection, not in the accept loop.
    let server = TestServer::start().await;
    let _silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let _half = {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, &[0x16, 0x03, 0x01])
            .await
            .unwrap();
        s
    };
    let config = client_config(&server.ca_der(), None, &[ALPN_ENROLL], TLS13);
    let r = tokio::time::timeout(Duration::from_secs(5), tls_connect(server.addr, config)).await;
    assert!(
        matches!(r, Ok(Ok(_))),
        "handshake blocked behind a silent client"
    );
    server.stop().await;
}
