//! The server's data directory: file names, permissions, `server.json` and URL parsing.
//!
//! Layout (created by [`crate::init`]): `ca.pem`, `ca.key`, `server.pem`, `server.key`
//! (private keys 0600), `server.json` (the URL), `sealsync.db` (SQLite). The directory itself
//! is 0700.

use std::fs;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ServerError;

/// CA certificate (PEM).
pub(crate) const CA_PEM: &str = "ca.pem";
/// CA private key (PEM, 0600).
pub(crate) const CA_KEY: &str = "ca.key";
/// Server certificate (PEM).
pub(crate) const SERVER_PEM: &str = "server.pem";
/// Server private key (PEM, 0600).
pub(crate) const SERVER_KEY: &str = "server.key";
/// Server settings (JSON).
pub(crate) const CONFIG: &str = "server.json";
/// SQLite database.
pub(crate) const DB: &str = "sealsync.db";

/// Every file `init` creates; the presence of any marks the directory as initialised.
const ALL_FILES: [&str; 6] = [CA_PEM, CA_KEY, SERVER_PEM, SERVER_KEY, CONFIG, DB];

/// Contents of `server.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ConfigFile {
    /// The URL devices use to reach this server (goes into enrollment bundles).
    pub(crate) url: String,
    /// When `init` ran (ms since the Unix epoch).
    pub(crate) created_ms: u64,
}

/// Paths inside one data directory.
#[derive(Debug, Clone)]
pub(crate) struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Wraps `root` without touching the filesystem.
    pub(crate) fn new(root: &Path) -> Self {
        DataDir {
            root: root.to_path_buf(),
        }
    }

    /// The path of `name` inside the directory.
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The directory itself.
    #[cfg(test)]
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// True when any file `init` creates is already present.
    pub(crate) fn is_initialised(&self) -> bool {
        ALL_FILES.iter().any(|f| self.file(f).exists())
    }

    /// Errors unless the directory has been initialised completely.
    pub(crate) fn require_initialised(&self) -> Result<(), ServerError> {
        if ALL_FILES.iter().all(|f| self.file(f).is_file()) {
            Ok(())
        } else {
            Err(ServerError::NotInitialised(self.root.clone()))
        }
    }

    /// Creates the directory (0700) if needed and tightens its mode if it already exists.
    pub(crate) fn create(&self) -> Result<(), ServerError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|e| ServerError::io(&self.root, e))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
            .map_err(|e| ServerError::io(&self.root, e))
    }

    /// Writes a new file with `mode`, refusing to overwrite, and syncs it to disk.
    pub(crate) fn write_new(
        &self,
        name: &str,
        contents: &[u8],
        mode: u32,
    ) -> Result<(), ServerError> {
        let path = self.file(name);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| ServerError::io(&path, e))?;
        f.write_all(contents)
            .map_err(|e| ServerError::io(&path, e))?;
        f.sync_all().map_err(|e| ServerError::io(&path, e))
    }

    /// Reads a whole file.
    pub(crate) fn read(&self, name: &str) -> Result<Vec<u8>, ServerError> {
        let path = self.file(name);
        fs::read(&path).map_err(|e| ServerError::io(&path, e))
    }

    /// Reads `server.json`.
    pub(crate) fn config(&self) -> Result<ConfigFile, ServerError> {
        let bytes = self.read(CONFIG)?;
        serde_json::from_slice(&bytes).map_err(|e| ServerError::Config {
            path: self.file(CONFIG),
            reason: e.to_string(),
        })
    }
}

/// The host part of a server URL, as it goes into the certificate's subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UrlHost {
    /// An IP literal (`https://127.0.0.1:8443`, `https://[::1]:8443`).
    Ip(IpAddr),
    /// A DNS name, lowercased.
    Dns(String),
}

impl UrlHost {
    /// The host as text (for the certificate's common name).
    pub(crate) fn as_text(&self) -> String {
        match self {
            UrlHost::Ip(ip) => ip.to_string(),
            UrlHost::Dns(name) => name.clone(),
        }
    }
}

/// Checks that `url` is `https://HOST[:PORT][/]` and returns its host.
pub(crate) fn parse_url(url: &str) -> Result<UrlHost, ServerError> {
    parse_url_with_port(url).map(|(host, _)| host)
}

/// The address `server run` listens on by default for the URL recorded at `init`: the
/// URL's port (443 when it names none); on the URL's address when that is a loopback IP,
/// on `127.0.0.1` for `localhost`, else on every interface (`0.0.0.0`, or `[::]` for an
/// IPv6 URL), since a public name or address often is not bound on the host itself.
pub(crate) fn default_listen(url: &str) -> Result<SocketAddr, ServerError> {
    let (host, port) = parse_url_with_port(url)?;
    let port = port.unwrap_or(443);
    let ip = match host {
        UrlHost::Ip(ip) if ip.is_loopback() => ip,
        UrlHost::Ip(IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        UrlHost::Ip(IpAddr::V4(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        UrlHost::Dns(name) if name == "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        UrlHost::Dns(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Checks that `url` is `https://HOST[:PORT][/]` and returns its host and port.
fn parse_url_with_port(url: &str) -> Result<(UrlHost, Option<u16>), ServerError> {
    let bad = || ServerError::InvalidUrl(url.to_string());
    let rest = url.strip_prefix("https://").ok_or_else(bad)?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(bad());
    }
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (host, after) = inner.split_once(']').ok_or_else(bad)?;
        let port = if after.is_empty() {
            None
        } else {
            Some(after.strip_prefix(':').ok_or_else(bad)?)
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 => Some(n),
            _ => return Err(bad()),
        },
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        if authority.starts_with('[') != ip.is_ipv6() {
            return Err(bad());
        }
        return Ok((UrlHost::Ip(ip), port));
    }
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.len() > 253 || !host.split('.').all(valid_label) {
        return Err(bad());
    }
    Ok((UrlHost::Dns(host.to_ascii_lowercase()), port))
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_and_dns_urls() {
        assert_eq!(
            parse_url("https://127.0.0.1:8443").unwrap(),
            UrlHost::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            parse_url("https://[::1]:8443/").unwrap(),
            UrlHost::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            parse_url("https://[::1]").unwrap(),
            UrlHost::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            parse_url("https://Sync.Example.com").unwrap(),
            UrlHost::Dns("sync.example.com".into())
        );
        assert_eq!(
            parse_url("https://localhost:1/").unwrap(),
            UrlHost::Dns("localhost".into())
        );
    }

    #[test]
    fn refuses_malformed_urls() {
        for bad in [
            "http://127.0.0.1:8443",
            "https://",
            "https://host:0",
            "https://host:99999",
            "https://host:port",
            "https://user@host",
            "https://host/path",
            "https://::1:8443",
            "https://[::1]x",
            "https://[127.0.0.1]:1",
            "https://-bad-.example",
            "https://a..b",
            "127.0.0.1:8443",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn default_listen_follows_the_url() {
        let l = |u: &str| default_listen(u).unwrap().to_string();
        assert_eq!(l("https://127.0.0.1:9555"), "127.0.0.1:9555");
        assert_eq!(l("https://127.0.0.2:9555/"), "127.0.0.2:9555");
        assert_eq!(l("https://[::1]:9555"), "[::1]:9555");
        assert_eq!(l("https://localhost:9555"), "127.0.0.1:9555");
        assert_eq!(l("https://sync.example.com:9555"), "0.0.0.0:9555");
        assert_eq!(l("https://sync.example.com"), "0.0.0.0:443");
        assert_eq!(l("https://203.0.113.5:8000"), "0.0.0.0:8000");
        assert_eq!(l("https://[2001:db8::5]:8000"), "[::]:8000");
        assert!(default_listen("https://host:0").is_err());
    }

    #[test]
    fn write_new_refuses_overwrite_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::new(&dir.path().join("data"));
        d.create().unwrap();
        d.write_new("k", b"secret", 0o600).unwrap();
        let mode = fs::metadata(d.file("k")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(d.root()).unwrap().permissions().mode() & 0o777;
        assert_eq!(dmode, 0o700);
        assert!(d.write_new("k", b"other", 0o600).is_err());
        assert_eq!(d.read("k").unwrap(), b"secret");
    }
}
