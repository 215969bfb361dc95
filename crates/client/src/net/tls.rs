//! TLS client configurations for the two connection modes.
//!
//! * Enrollment (`sealsync-enroll` ALPN, no client certificate): the device has only the
//!   bundle's CA pin (SHA-256 of the CA certificate DER). [`PinnedCaVerifier`] looks for a
//!   certificate with that fingerprint in the chain the server presents and then runs the
//!   ordinary webpki path validation of the end-entity certificate with that certificate as
//!   the only trust anchor (name, validity, signatures, key usage).
//! * Normal (`h2` ALPN, mutual TLS): the CA stored at enrollment is the only root, its
//!   fingerprint is re-checked against the pin, and the device presents the client
//!   certificate the server issued.
//!
//! Both modes use TLS 1.3 only with the aws-lc-rs provider, and never send early data
//! (0-RTT is off by default in rustls and never enabled here: NA-13). The key-exchange
//! groups are pinned to [`KX_GROUPS`]: the post-quantum hybrid X25519MLKEM768 first.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, SupportedKxGroup, aws_lc_rs};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::ClientError;

/// The key-exchange groups offered, in preference order: X25519MLKEM768 (hybrid
/// X25519 + ML-KEM-768, against recorded traffic being decrypted later by a quantum
/// computer), then X25519 so that a compatible server without ML-KEM still works. The
/// fallback gives a network attacker nothing: the server picks from this offer and TLS 1.3
/// signs the transcript, so stripping the hybrid from the offer breaks the handshake.
pub(crate) static KX_GROUPS: &[&dyn SupportedKxGroup] = &[
    aws_lc_rs::kx_group::X25519MLKEM768,
    aws_lc_rs::kx_group::X25519,
];

/// The crypto provider every Sealsync client connection uses: aws-lc-rs with the
/// key-exchange groups pinned to [`KX_GROUPS`].
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        kx_groups: KX_GROUPS.to_vec(),
        ..aws_lc_rs::default_provider()
    })
}

/// Builds the configuration for the enrollment handshake: pin check, no client certificate,
/// ALPN `sealsync-enroll`.
pub(crate) fn enroll_config(ca_pin: [u8; 32]) -> Result<ClientConfig, ClientError> {
    let provider = provider();
    let verifier = Arc::new(PinnedCaVerifier {
        pin: ca_pin,
        provider: provider.clone(),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Tls(format!("TLS configuration: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![sealsync_proto::ALPN_ENROLL.to_vec()];
    config.enable_early_data = false;
    Ok(config)
}

/// Builds the configuration for mutual TLS: the stored CA as the only root (its SHA-256 must
/// equal `ca_pin`), the device's client certificate and key, ALPN `h2`.
pub(crate) fn mtls_config(
    ca_der: &[u8],
    ca_pin: &[u8; 32],
    cert_der: &[u8],
    key_der: PrivateKeyDer<'static>,
) -> Result<ClientConfig, ClientError> {
    if &sealsync_crypto::sha256(ca_der) != ca_pin {
        return Err(ClientError::Tls(
            "the stored CA certificate does not match the pinned fingerprint; the replica \
             directory may have been tampered with: enroll again"
                .into(),
        ));
    }
    let provider = provider();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .map_err(|e| ClientError::Tls(format!("stored CA certificate is unusable: {e}")))?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| ClientError::Tls(format!("TLS verifier: {e}")))?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Tls(format!("TLS configuration: {e}")))?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(vec![CertificateDer::from(cert_der.to_vec())], key_der)
        .map_err(|e| ClientError::Tls(format!("client certificate or key is unusable: {e}")))?;
    config.alpn_protocols = vec![sealsync_proto::ALPN_H2.to_vec()];
    config.enable_early_data = false;
    Ok(config)
}

/// Accepts a server chain only if one of its certificates has the pinned SHA-256 and the
/// end-entity certificate validates (webpki) with that certificate as the only root.
#[derive(Debug)]
pub(crate) struct PinnedCaVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pinned = intermediates
            .iter()
            .chain(std::iter::once(end_entity))
            .find(|c| sealsync_crypto::sha256(c.as_ref()) == self.pin)
            .ok_or_else(|| {
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(pinned.clone().into_owned())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(format!("verifier: {e}")))?;
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // TLS 1.2 is never negotiated (the config offers TLS 1.3 only).
        Err(rustls::Error::General("TLS 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

    use rustls::pki_types::pem::PemObject as _;

    use super::*;

    #[tokio::test]
    async fn the_hybrid_post_quantum_group_is_negotiated_with_the_real_server() {
        // NA-07: a real handshake of this client configuration with a real server settles
        // on X25519MLKEM768, the first pinned group.
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("server");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        sealsync_server::init(&data, &format!("https://{addr}")).unwrap();
        let server = sealsync_server::Server::from_listener(&data, listener)
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let ca = CertificateDer::from_pem_file(data.join("ca.pem")).unwrap();
        let config = enroll_config(sealsync_crypto::sha256(ca.as_ref())).unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::IpAddress(addr.ip().into());
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        let group = tls.get_ref().1.negotiated_key_exchange_group().unwrap();
        assert_eq!(group.name(), rustls::NamedGroup::X25519MLKEM768);
        assert_eq!(KX_GROUPS[0].name(), rustls::NamedGroup::X25519MLKEM768);
        drop(tls);
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }
}
