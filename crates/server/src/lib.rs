//! The Sealsync server: an HTTP/2 API over TLS 1.3 that admits enrolled devices and stores
//! and orders their ciphertext.
//!
//! The server holds its own CA and issues each device a client certificate at enrollment
//! (one-time tickets from [`enroll_ticket`]). Devices then talk mutual TLS; every request is
//! checked against the device's admission state. The server never sees plaintext: it checks
//! signatures, chains and sizes on what it stores, and devices verify everything it serves.
//!
//! Entry points: [`init`] (create a data directory), [`enroll_ticket`] (issue a ticket),
//! [`Server`] (serve). The wire protocol is `docs/protocol.md`.
#![forbid(unsafe_code)]

mod conns;
mod datadir;
mod error;
mod http;
pub mod inspect;
mod lograte;
mod pki;
mod roster;
mod server;
pub mod store;
mod tls;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use sealsync_proto::EnrollmentBundle;
use zeroize::Zeroizing;

pub use error::ServerError;
pub use server::Server;

use datadir::{ConfigFile, DataDir, now_ms, parse_url};
use store::{NewTicket, SqliteStore};

/// URL used when the operator gives none.
pub const DEFAULT_URL: &str = "https://127.0.0.1:8443";

/// Prefix of the one-line enrollment bundle.
pub const BUNDLE_PREFIX: &str = "sealsync-enroll:";

/// Longest ticket lifetime [`enroll_ticket`] accepts.
pub const MAX_TICKET_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// What [`init`] created.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The URL recorded for enrollment bundles.
    pub url: String,
    /// SHA-256 of the CA certificate DER: the pin devices receive in bundles.
    pub ca_pin: [u8; 32],
}

/// Creates `data_dir` (0700) with a new CA (ECDSA P-256, CN "Sealsync CA"), a server
/// certificate whose SAN is the host of `url` (served in handshakes as the chain
/// `[server, CA]`), the private keys (0600), the SQLite store, and `server.json` recording
/// `url`. Refuses a directory that is already initialised.
pub fn init(data_dir: &Path, url: &str) -> Result<InitReport, ServerError> {
    let host = parse_url(url)?;
    let dir = DataDir::new(data_dir);
    if dir.is_initialised() {
        return Err(ServerError::AlreadyInitialised(data_dir.to_path_buf()));
    }
    dir.create()?;
    let ca = pki::generate_ca()?;
    let authority = pki::CertAuthority::from_pem(&ca.cert_pem, &ca.key_pem)?;
    let server = authority.issue_server_cert(&host)?;
    dir.write_new(datadir::CA_KEY, ca.key_pem.as_bytes(), 0o600)?;
    dir.write_new(datadir::CA_PEM, ca.cert_pem.as_bytes(), 0o644)?;
    dir.write_new(datadir::SERVER_KEY, server.key_pem.as_bytes(), 0o600)?;
    dir.write_new(datadir::SERVER_PEM, server.cert_pem.as_bytes(), 0o644)?;
    // An empty file is a valid new SQLite database; creating it first fixes its mode.
    dir.write_new(datadir::DB, b"", 0o600)?;
    SqliteStore::open(&dir.file(datadir::DB))?;
    let config = ConfigFile {
        url: url.to_string(),
        created_ms: now_ms(),
    };
    let json = serde_json::to_vec_pretty(&config).map_err(|e| ServerError::Config {
        path: dir.file(datadir::CONFIG),
        reason: e.to_string(),
    })?;
    dir.write_new(datadir::CONFIG, &json, 0o644)?;
    Ok(InitReport {
        data_dir: data_dir.to_path_buf(),
        url: url.to_string(),
        ca_pin: pki::ca_pin(&ca.cert_der),
    })
}

/// The address `server run` listens on when given none, from the URL recorded at [`init`]
/// in `data_dir`: that URL's port (443 if it names none), on its address when that is a
/// loopback IP, on `127.0.0.1` for `localhost`, else on every interface (`0.0.0.0`, or
/// `[::]` for an IPv6 URL).
pub fn default_listen(data_dir: &Path) -> Result<SocketAddr, ServerError> {
    let dir = DataDir::new(data_dir);
    dir.require_initialised()?;
    datadir::default_listen(&dir.config()?.url)
}

/// Checks an account name: 1 to 128 bytes, no control characters.
fn valid_account(account: &str) -> bool {
    !account.is_empty() && account.len() <= 128 && !account.chars().any(char::is_control)
}

/// Issues a one-time enrollment ticket for `account`, valid for `ttl` (at most
/// [`MAX_TICKET_TTL`]), and returns the one-line bundle `"sealsync-enroll:" +
/// base64url-nopad(EnrollmentBundle)`. Only the ticket's SHA-256 is stored. `url`
/// overrides the URL recorded at `init`.
pub fn enroll_ticket(
    data_dir: &Path,
    account: &str,
    ttl: Duration,
    url: Option<&str>,
) -> Result<String, ServerError> {
    if !valid_account(account) {
        return Err(ServerError::InvalidAccount);
    }
    if ttl.is_zero() || ttl > MAX_TICKET_TTL {
        return Err(ServerError::InvalidTtl);
    }
    let dir = DataDir::new(data_dir);
    dir.require_initialised()?;
    let config = dir.config()?;
    let url = url.unwrap_or(&config.url);
    parse_url(url)?;
    let ca_pem = dir.read(datadir::CA_PEM)?;
    let ca_text =
        std::str::from_utf8(&ca_pem).map_err(|_| ServerError::Pki("ca.pem is not text".into()))?;
    let ca_pin = pki::ca_pin(&pki::pem_cert_der(ca_text)?);

    let ticket = Zeroizing::new(pki::random_bytes::<32>()?);
    let now = now_ms();
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let store = SqliteStore::open(&dir.file(datadir::DB))?;
    store.insert_ticket_blocking(&NewTicket {
        hash: pki::sha256(ticket.as_slice()),
        account: account.to_string(),
        created_ms: now,
        expires_ms: now.saturating_add(ttl_ms),
    })?;
    let bundle = Zeroizing::new(sealsync_proto::encode(&EnrollmentBundle {
        url: url.to_string(),
        ca_pin: ca_pin.to_vec(),
        ticket: ticket.to_vec(),
        account: account.to_string(),
    }));
    Ok(format!(
        "{BUNDLE_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bundle.as_slice())
    ))
}

/// Parses a duration written as a whole number and one unit: `90s`, `15m`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, ServerError> {
    let bad = || ServerError::InvalidDuration(s.to_string());
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_duration_units() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration(" 2h ").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn parse_duration_refuses_garbage() {
        for bad in [
            "",
            "15",
            "m",
            "15x",
            "1.5h",
            "-1m",
            "15 m",
            "1h30m",
            "99999999999999999999s",
            "18446744073709551615d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn account_names() {
        assert!(valid_account("demo"));
        assert!(!valid_account(""));
        assert!(!valid_account("a\tb"));
        assert!(!valid_account(&"a".repeat(129)));
    }
}
