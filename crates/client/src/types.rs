//! Public value types returned by [`crate::Replica`]: enrollment results, history entries,
//! conflicts, sync reports, status and pending devices. All are `serde::Serialize` (ids as
//! lowercase hex, values as UTF-8 text with invalid bytes replaced) and `Display` for humans.

use std::fmt;

use sealsync_core::{DeviceId, Policy, VersionId};

use crate::check::Check;
use serde::Serialize;

use crate::Replica;

/// Admission state of this device in its account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// Enrolled with the server but not yet in the account roster: no account keys yet.
    Pending,
    /// In the roster and holding the account keys.
    Trusted,
}

impl DeviceState {
    /// `"pending"` or `"trusted"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Trusted => "trusted",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "trusted" => Some(Self::Trusted),
            _ => None,
        }
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Options of [`Replica::enroll`]: `EnrollOptions::new("laptop")`, then the builder methods.
#[non_exhaustive]
#[derive(Clone, Default)]
pub struct EnrollOptions {
    /// Human-readable device name shown to the other devices and the operator.
    pub name: String,
    /// The account's recovery secret, to join without approval from a trusted device
    /// (zeroized when the options are dropped).
    pub recovery: Option<zeroize::Zeroizing<String>>,
    /// This is the first device of a new account: the server must have no roster for it.
    /// Without it, an account with no devices is refused (no silent new account, MS-09).
    pub new_account: bool,
    /// Protection of the new key store (passphrase, or another [`crate::KeyStore`]) and the
    /// replica's timeouts; the same options open it later ([`Replica::open_with`]).
    pub open: crate::OpenOptions,
}

impl EnrollOptions {
    /// Options for a device named `name` joining an existing account, without a recovery
    /// secret, with a key store protected by a key file.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Joins with the account's recovery secret instead of an approval.
    pub fn recovery(self, secret: impl Into<String>) -> Self {
        self.recovery_opt(Some(secret.into()))
    }

    /// [`EnrollOptions::recovery`] when `secret` is `Some`.
    pub fn recovery_opt(mut self, secret: Option<String>) -> Self {
        self.recovery = secret.map(zeroize::Zeroizing::new);
        self
    }

    /// Founds a new account (this is its first device) when `yes`.
    pub fn new_account(mut self, yes: bool) -> Self {
        self.new_account = yes;
        self
    }

    /// Key store protection and timeouts of the new replica.
    pub fn open(mut self, open: crate::OpenOptions) -> Self {
        self.open = open;
        self
    }
}

impl fmt::Debug for EnrollOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollOptions")
            .field("name", &self.name)
            .field("recovery", &self.recovery.as_ref().map(|_| ".."))
            .field("new_account", &self.new_account)
            .field("open", &self.open)
            .finish()
    }
}

/// Result of [`Replica::enroll`].
pub struct Enrolled {
    /// The enrolled replica, ready to use.
    pub replica: Replica,
    /// This device's id.
    pub device_id: DeviceId,
    /// Pending (waiting for approval) or trusted.
    pub state: DeviceState,
    /// The account's recovery secret: `Some` only for the account's first device, shown once.
    pub recovery_secret: Option<zeroize::Zeroizing<String>>,
}

impl fmt::Debug for Enrolled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enrolled")
            .field("device_id", &self.device_id)
            .field("state", &self.state)
            .field(
                "recovery_secret",
                &self.recovery_secret.as_ref().map(|_| ".."),
            )
            .finish_non_exhaustive()
    }
}

pub(crate) mod ser {
    //! serde helpers: ids as hex, bytes as lossy UTF-8.
    use serde::Serializer;

    pub(crate) fn display<T: std::fmt::Display, S: Serializer>(
        v: &T,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub(crate) fn display_vec<T: std::fmt::Display, S: Serializer>(
        v: &[T],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(ToString::to_string))
    }

    pub(crate) fn text<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(v))
    }
}

/// `s` cut to at most `max` bytes (at a character boundary), with `…` when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// User input echoed in a message: quoted and escaped, at most 64 bytes of it, with its
/// length when cut (so a 10 KB name does not fill the terminal).
pub(crate) fn echo(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return format!("{s:?}");
    }
    format!(
        "{:?}… ({} bytes)",
        truncate(s, MAX).trim_end_matches('…'),
        s.len()
    )
}

/// Short, printable preview of a value.
fn preview(v: &[u8]) -> String {
    let text = String::from_utf8_lossy(v);
    let mut s: String = text
        .chars()
        .take(60)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > 60 {
        s.push('…');
    }
    s
}

/// One version of a record, with why it won or lost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// Version id (`u64be(hlc) || device`).
    #[serde(serialize_with = "ser::display")]
    pub version: VersionId,
    /// Hybrid logical clock of the version.
    pub hlc: u64,
    /// Author device.
    #[serde(serialize_with = "ser::display")]
    pub device: DeviceId,
    /// A delete (tombstone).
    pub deleted: bool,
    /// The value written (empty for a delete).
    #[serde(serialize_with = "ser::text")]
    pub value: Vec<u8>,
    /// Versions its author had seen (manual policy resolutions).
    #[serde(serialize_with = "ser::display_vec")]
    pub supersedes: Vec<VersionId>,
    /// Whether the version has been sealed for the server (always true for remote ones).
    pub synced: bool,
    /// Why it won or lost (from `sealsync_core::explain`).
    pub explanation: String,
}

impl fmt::Display for HistoryEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.deleted {
            "delete".to_string()
        } else {
            format!("put {:?}", preview(&self.value))
        };
        write!(
            f,
            "{} device {} {}{}: {}",
            self.version,
            &self.device.to_string()[..8],
            what,
            if self.synced { "" } else { " (not synced)" },
            self.explanation
        )
    }
}

/// One version taking part in a conflict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConflictVersion {
    /// Version id.
    #[serde(serialize_with = "ser::display")]
    pub version: VersionId,
    /// Author device.
    #[serde(serialize_with = "ser::display")]
    pub device: DeviceId,
    /// A delete.
    pub deleted: bool,
    /// Value (empty for a delete).
    #[serde(serialize_with = "ser::text")]
    pub value: Vec<u8>,
}

/// A record of a `manual` collection with concurrent versions (siblings) awaiting
/// [`Replica::resolve`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// Record key.
    pub key: String,
    /// The concurrent head versions, in id order; the last one is the value `get` shows.
    pub versions: Vec<ConflictVersion>,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} versions", self.key, self.versions.len())?;
        for v in &self.versions {
            let what = if v.deleted {
                "deleted".to_string()
            } else {
                format!("{:?}", preview(&v.value))
            };
            write!(f, " | {} from {}", what, &v.device.to_string()[..8])?;
        }
        Ok(())
    }
}

/// Serialises a value by its `Display` form (ids as hex, policies by name).
pub(crate) fn as_display<T: fmt::Display, S: serde::Serializer>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// A problem met during sync in one collection (the rest of the sync went on).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SyncIssue {
    /// Collection name (or blinded id hex when the name is unknown).
    pub collection: String,
    /// The failed check.
    pub check: Check,
    /// Author device of the refused object, when known.
    pub author: Option<String>,
    /// Human-readable description.
    pub message: String,
}

/// What one [`Replica::sync`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Batches pushed to (and acknowledged by) the server.
    pub pushed_batches: u64,
    /// Of `pushed_batches`, those the server had acknowledged before but lost (restored
    /// from an older backup), re-sent with their exact bytes.
    pub resent_batches: u64,
    /// This device's own batches taken back from the server: its home had been restored
    /// from an older backup (or cloned) and had forgotten them. Their edits are applied.
    pub adopted_batches: u64,
    /// Edits this device made after such a restore, sealed again after the batches taken
    /// back (their version ids changed; none is lost).
    pub resealed_versions: u64,
    /// Batches pulled, verified and applied.
    pub pulled_batches: u64,
    /// New versions applied from pulled batches.
    pub applied_mutations: u64,
    /// The device became trusted during this sync.
    pub became_trusted: bool,
    /// The device is still pending approval: nothing was pushed or pulled.
    pub still_pending: bool,
    /// Local edits that a fast clock had stamped too far ahead for the server, re-stamped
    /// from trusted time before they were sealed (their version ids changed).
    pub restamped_versions: u64,
    /// Per-collection refusals (nothing of a refused page was applied).
    pub errors: Vec<SyncIssue>,
    /// Local collections whose policy was replaced by the one pinned in the roster (another
    /// device created the same collection first, with another policy); their records were
    /// re-resolved under the pinned policy.
    pub policy_changes: Vec<PolicyChange>,
    /// Records that batches pulled from other devices wrote in this sync, each once,
    /// sorted by collection then key. The same changes reach
    /// [`Replica::subscribe`](crate::Replica::subscribe) subscribers as they commit.
    pub changed: Vec<ChangedKey>,
}

/// A record a sync changed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ChangedKey {
    /// Collection name.
    pub collection: String,
    /// Record key.
    pub key: String,
}

/// A local collection whose policy was replaced by the pinned one during a sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyChange {
    /// Collection name.
    pub collection: String,
    /// The policy this device had chosen.
    pub from: String,
    /// The policy pinned in the roster, now in force.
    pub to: String,
}

impl fmt::Display for SyncReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pushed {} batches, pulled {} batches, applied {} mutations",
            self.pushed_batches, self.pulled_batches, self.applied_mutations
        )?;
        if self.resent_batches > 0 {
            write!(
                f,
                "; re-sent {} batches the server had lost (restored from a backup?)",
                self.resent_batches
            )?;
        }
        if self.adopted_batches > 0 {
            write!(
                f,
                "; took back {} of this device's batches that its home had lost (restored from a backup?) and sealed {} newer edits after them",
                self.adopted_batches, self.resealed_versions
            )?;
        }
        if self.became_trusted {
            write!(f, "; this device is now trusted")?;
        }
        if self.still_pending {
            write!(f, "; this device is still pending approval")?;
        }
        if self.restamped_versions > 0 {
            write!(
                f,
                "; re-stamped {} edits that this device's clock had dated in the future",
                self.restamped_versions
            )?;
        }
        for c in &self.policy_changes {
            write!(
                f,
                "\ncollection {:?} uses policy {} (set by the device that created it first), not {}: its records were re-resolved",
                c.collection, c.to, c.from
            )?;
        }
        for e in &self.errors {
            write!(
                f,
                "\nrefused in {}: {} ({} check",
                e.collection, e.message, e.check
            )?;
            if let Some(a) = &e.author {
                write!(f, ", author {a}")?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

/// One collection in [`Status`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CollectionStatus {
    /// Collection name.
    pub name: String,
    /// Merge policy (serialised by name: `lww`, `fields`, `manual`).
    #[serde(serialize_with = "as_display")]
    pub policy: Policy,
    /// Live (not deleted) records.
    pub records: u64,
    /// Outbox batches not yet acknowledged, plus one if unsealed local edits exist.
    pub pending_batches: u64,
    /// State root of the collection (hex).
    pub state_root: String,
}

/// What [`Replica::status`] reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    /// This device's id (serialised as hex).
    #[serde(serialize_with = "as_display")]
    pub device_id: DeviceId,
    /// Account name.
    pub account: String,
    /// Device name.
    pub name: String,
    /// `pending` or `trusted`.
    pub state: DeviceState,
    /// Server URL from the enrollment bundle.
    pub server_url: String,
    /// Collections by name.
    pub collections: Vec<CollectionStatus>,
    /// When the last sync that reached the end finished (ms since the Unix epoch, this
    /// device's clock); `None` before the first one.
    pub last_sync: Option<u64>,
    /// The last sync's failure or first refusal, until a sync finishes without either.
    pub last_error: Option<LastError>,
}

/// A sync failure kept for [`Status`]: the one-line message and when it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LastError {
    /// When (ms since the Unix epoch, this device's clock).
    pub at: u64,
    /// What went wrong (no secrets, no record contents).
    pub message: String,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "device   {} ({})", self.device_id, self.name)?;
        writeln!(f, "account  {}", self.account)?;
        writeln!(f, "server   {}", self.server_url)?;
        write!(f, "state    {}", self.state)?;
        match self.last_sync {
            Some(at) => write!(f, "\nlast sync {}", ago(at))?,
            None => write!(f, "\nlast sync never")?,
        }
        if let Some(e) = &self.last_error {
            write!(f, "\nlast error {} ({})", e.message, ago(e.at))?;
        }
        for c in &self.collections {
            write!(
                f,
                "\ncollection {} [{}]: {} records, {} pending batches, root {}",
                c.name,
                c.policy,
                c.records,
                c.pending_batches,
                &c.state_root[..16]
            )?;
        }
        Ok(())
    }
}

/// `"N s ago"` (or minutes, hours, days) for a time in ms since the Unix epoch.
fn ago(at_ms: u64) -> String {
    let now = crate::store::now_ms();
    let secs = now.saturating_sub(at_ms) / 1000;
    match secs {
        0..120 => format!("{secs} s ago"),
        120..7200 => format!("{} min ago", secs / 60),
        7200..172_800 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// A device waiting for approval, as listed by the server (unverified: only a pairing
/// proves its keys).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PendingDeviceInfo {
    /// Device id (serialised as hex).
    #[serde(serialize_with = "as_display")]
    pub device_id: DeviceId,
    /// Name the device gave itself.
    pub name: String,
    /// When it enrolled (server clock, ms since the Unix epoch).
    pub enrolled_ms: u64,
}
