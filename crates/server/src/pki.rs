//! The server's own PKI: the CA, the server TLS certificate and device client certificates.
//!
//! All keys are ECDSA P-256 made with rcgen on aws-lc-rs. The CA (CN "Sealsync CA") signs
//! the server certificate (SAN = the URL's host) and, at enrollment, one client certificate
//! per device from the device's PKCS#10 request (CN = device id in hex, client-auth EKU,
//! one year). Devices pin the CA by the SHA-256 of its DER ([`ca_pin`]).

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use x509_parser::prelude::{FromDer as _, X509Certificate};
use zeroize::Zeroizing;

use crate::ServerError;
use crate::datadir::UrlHost;

/// Common name of the CA certificate.
pub(crate) const CA_COMMON_NAME: &str = "Sealsync CA";
/// Lifetime of a device certificate.
const DEVICE_CERT_SECS: i64 = 365 * 24 * 3600;
/// Lifetime of the CA certificate.
const CA_CERT_SECS: i64 = 20 * 365 * 24 * 3600;
/// Lifetime of the server certificate.
const SERVER_CERT_SECS: i64 = 10 * 365 * 24 * 3600;
/// Backdating of `not_before`, so a device whose clock is slightly behind accepts it.
const BACKDATE_SECS: i64 = 3600;

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Fills an array from the OS random generator (aws-lc-rs).
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], ServerError> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out)
        .map_err(|_| ServerError::Pki("random generator failed".into()))?;
    Ok(out)
}

/// The pin devices compare against: SHA-256 of the CA certificate DER.
pub(crate) fn ca_pin(ca_der: &[u8]) -> [u8; 32] {
    sha256(ca_der)
}

/// A certificate and its private key as PEM (the key zeroized on drop).
pub(crate) struct PemPair {
    /// Certificate, PEM.
    pub(crate) cert_pem: String,
    /// Certificate, DER.
    pub(crate) cert_der: Vec<u8>,
    /// Private key, PKCS#8 PEM.
    pub(crate) key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for PemPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PemPair")
            .field("cert_der_len", &self.cert_der.len())
            .finish_non_exhaustive()
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2))
        .unwrap_or(0)
}

fn serial() -> Result<SerialNumber, ServerError> {
    let mut bytes = random_bytes::<16>()?;
    // Positive and with a non-zero leading byte, so the DER INTEGER keeps all 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn validity(params: &mut CertificateParams, lifetime_secs: i64) -> Result<(), ServerError> {
    let now = now_secs();
    let at = |secs: i64| {
        x509_parser::time::ASN1Time::from_timestamp(secs)
            .map_err(|_| ServerError::Pki("time out of range".into()))
    };
    params.not_before = at(now - BACKDATE_SECS)?.to_datetime();
    params.not_after = at(now + lifetime_secs)?.to_datetime();
    Ok(())
}

fn ca_params() -> Result<CertificateParams, ServerError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(serial()?);
    validity(&mut params, CA_CERT_SECS)?;
    Ok(params)
}

/// Makes a new self-signed CA.
pub(crate) fn generate_ca() -> Result<PemPair, ServerError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = ca_params()?.self_signed(&key)?;
    Ok(PemPair {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem: Zeroizing::new(key.serialize_pem()),
    })
}

/// The CA loaded for signing: its issuer data, signing key and certificate DER.
pub(crate) struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    ca_der: Vec<u8>,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority")
            .field("ca_pin", &hex::encode(ca_pin(&self.ca_der)))
            .finish_non_exhaustive()
    }
}

impl CertAuthority {
    /// Loads the CA from its certificate and key PEM.
    pub(crate) fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, ServerError> {
        let key = KeyPair::from_pem(key_pem)?;
        let ca_der = pem_cert_der(cert_pem)?;
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(ca_der.as_slice()), key)?;
        Ok(CertAuthority { issuer, ca_der })
    }

    /// DER of the CA certificate.
    pub(crate) fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// Issues the server's TLS certificate for `host`.
    pub(crate) fn issue_server_cert(&self, host: &UrlHost) -> Result<PemPair, ServerError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host.as_text());
        params.distinguished_name = dn;
        params.subject_alt_names = vec![match host {
            UrlHost::Ip(ip) => SanType::IpAddress(*ip),
            UrlHost::Dns(name) => SanType::DnsName(name.clone().try_into()?),
        }];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(serial()?);
        validity(&mut params, SERVER_CERT_SECS)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(PemPair {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }

    /// Issues a device client certificate for the public key in `csr_der` (whose signature
    /// rcgen verifies). Nothing else from the request is copied: the subject is
    /// CN = `device_hex`, the only EKU is client auth, validity one year.
    pub(crate) fn issue_device_cert(
        &self,
        csr_der: &[u8],
        device_hex: &str,
    ) -> Result<Vec<u8>, ServerError> {
        let csr = CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(
            csr_der,
        ))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, device_hex);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(serial()?);
        validity(&mut params, DEVICE_CERT_SECS)?;
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok(cert.der().to_vec())
    }
}

/// Decodes the first certificate of a PEM text.
pub(crate) fn pem_cert_der(pem: &str) -> Result<Vec<u8>, ServerError> {
    use rustls_pki_types::pem::PemObject as _;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|e| ServerError::Pki(format!("cannot read certificate PEM: {e}")))
}

/// Identity claimed by a client certificate: the common name as a 16-byte device id.
/// `None` when the certificate does not parse or its CN is not 32 hex digits.
pub(crate) fn device_id_from_cert(der: &[u8]) -> Option<[u8; 16]> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut cns = cert.subject().iter_common_name();
    let cn = cns.next()?.as_str().ok()?;
    if cns.next().is_some() || cn.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    hex::decode_to_slice(cn, &mut id).ok()?;
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData as _;
    use x509_parser::extensions::ParsedExtension;

    fn ca() -> CertAuthority {
        let pair = generate_ca().unwrap();
        CertAuthority::from_pem(&pair.cert_pem, &pair.key_pem).unwrap()
    }

    #[test]
    fn ca_is_a_p256_ca_named_sealsync_ca() {
        let pair = generate_ca().unwrap();
        let (_, cert) = X509Certificate::from_der(&pair.cert_der).unwrap();
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(cn, "Sealsync CA");
        assert!(cert.is_ca());
        assert_eq!(cert.subject(), cert.issuer());
        assert_eq!(ca_pin(&pair.cert_der), sha256(&pair.cert_der));
        assert!(pair.key_pem.contains("PRIVATE KEY"));
    }

    #[test]
    fn server_cert_has_ip_or_dns_san_and_chains_to_ca() {
        let ca = ca();
        let ip = ca
            .issue_server_cert(&UrlHost::Ip("127.0.0.1".parse().unwrap()))
            .unwrap();
        let (_, cert) = X509Certificate::from_der(&ip.cert_der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            format!("{:?}", san.value.general_names),
            "[IPAddress([127, 0, 0, 1])]"
        );
        let (_, ca_cert) = X509Certificate::from_der(ca.ca_der()).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();

        let dns = ca
            .issue_server_cert(&UrlHost::Dns("sync.example.com".into()))
            .unwrap();
        let (_, cert) = X509Certificate::from_der(&dns.cert_der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            format!("{:?}", san.value.general_names),
            "[DNSName(\"sync.example.com\")]"
        );
    }

    #[test]
    fn device_cert_from_csr_has_cn_client_eku_and_one_year() {
        let ca = ca();
        let device_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        // The request asks for a CA certificate and server auth; none of it may be copied.
        let mut req = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        req.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        req.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let csr = req.serialize_request(&device_key).unwrap();
        let hex_id = "00112233445566778899aabbccddeeff";
        let der = ca.issue_device_cert(csr.der(), hex_id).unwrap();

        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(
            device_id_from_cert(&der),
            Some(hex::decode(hex_id).unwrap().try_into().unwrap())
        );
        assert!(!cert.is_ca());
        assert!(cert.subject_alternative_name().unwrap().is_none());
        let eku = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::ExtendedKeyUsage(eku) => Some(eku.clone()),
                _ => None,
            })
            .unwrap();
        assert!(eku.client_auth && !eku.server_auth && !eku.any);
        let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(life, DEVICE_CERT_SECS + BACKDATE_SECS);
        assert_eq!(
            cert.public_key().raw,
            device_key.subject_public_key_info().as_slice()
        );
        let (_, ca_cert) = X509Certificate::from_der(ca.ca_der()).unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
    }

    #[test]
    fn garbage_or_tampered_csr_is_refused() {
        let ca = ca();
        assert!(ca.issue_device_cert(b"not a csr", "00").is_err());
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .unwrap();
        let mut bytes = csr.der().to_vec();
        let last = bytes.len() - 5;
        bytes[last] ^= 0x01; // inside the signature
        assert!(
            ca.issue_device_cert(&bytes, "00112233445566778899aabbccddeeff")
                .is_err()
        );
    }

    #[test]
    fn device_id_from_cert_refuses_non_hex_cn() {
        let ca = ca();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .unwrap();
        let der = ca.issue_device_cert(csr.der(), "not-a-device-id").unwrap();
        assert_eq!(device_id_from_cert(&der), None);
        assert_eq!(device_id_from_cert(b"junk"), None);
    }
}
