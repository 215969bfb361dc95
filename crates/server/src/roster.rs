//! Appending to an account's roster: the server-side rules, apart from storage and HTTP.
//!
//! The server keeps each account's roster as received and appends an entry only when
//! `sealsync_core::Roster` accepts it as the next link of the verified chain. It cannot
//! forge entries; these checks only keep garbage, forks and stale clocks out of the log it
//! serves. Rules by op, beyond [`sealsync_core::Roster::apply`]:
//! - `GENESIS`: only when the account has no roster, posted by its own subject;
//! - `ADD`: posted by its signer (or, recovery-signed, by the new device itself), about an
//!   enrolled device of the account with exactly its enrolled keys;
//! - `COLLECTION`: posted by its signer, a member (the entry's subject in storage is the
//!   signer, so it grants no membership).
//!
//! Every entry after the genesis must be created no later than the server's clock plus the
//! drift bound (BI-19).

use sealsync_core::{DeviceId, MAX_DRIFT_MS, Roster};
use sealsync_proto::{RosterEntryBody, RosterOp, SignedRosterEntry};

use crate::store::DeviceRecord;

/// Why an entry is not appended; each maps to one HTTP refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AppendRefusal {
    /// The entry cannot be the next one (taken seq, not a valid link, wrong subject keys):
    /// 409.
    Conflict(String),
    /// The caller may not post this entry: 403.
    Forbidden(&'static str),
    /// The stored roster does not verify: 500.
    Internal(String),
}

/// The device the entry names as its subject, or the signer for a `COLLECTION` entry.
pub(crate) fn row_subject(body: &RosterEntryBody) -> Option<DeviceId> {
    let bytes = if body.op == RosterOp::Collection as i32 {
        &body.signer_device_id
    } else {
        &body.subject_device_id
    };
    DeviceId::from_slice(bytes).ok()
}

/// Checks that `entry` (decoded as `body`) may be appended to `stored` by `caller` at
/// server time `now_ms`; `subject` is the enrolled device the entry names (looked up by
/// the caller of this function, `None` when unknown). Returns the entry's seq.
pub(crate) fn check_append(
    stored: &[SignedRosterEntry],
    entry: &SignedRosterEntry,
    body: &RosterEntryBody,
    account: &str,
    caller: DeviceId,
    subject: Option<&DeviceRecord>,
    now_ms: u64,
) -> Result<u64, AppendRefusal> {
    let conflict = |s: String| AppendRefusal::Conflict(s);
    let is_collection = body.op == RosterOp::Collection as i32;
    if !is_collection {
        let dev = subject
            .filter(|d| d.account == account)
            .ok_or_else(|| conflict("roster subject is not a device of this account".into()))?;
        if dev.sign_pk.as_slice() != body.subject_sign_pk.as_slice()
            || dev.kx_pk.as_slice() != body.subject_kx_pk.as_slice()
        {
            return Err(conflict(
                "roster subject keys differ from the enrolled keys".into(),
            ));
        }
    }
    let Some((genesis, rest)) = stored.split_first() else {
        if body.subject_device_id.as_slice() != caller.0.as_slice() {
            return Err(AppendRefusal::Forbidden(
                "genesis posted by another device than its subject",
            ));
        }
        Roster::from_genesis(entry, account)
            .map_err(|e| conflict(format!("genesis refused: {e}")))?;
        return Ok(0);
    };
    let mut roster = Roster::from_genesis(genesis, account)
        .map_err(|e| AppendRefusal::Internal(format!("stored genesis does not verify: {e}")))?;
    roster
        .extend(rest)
        .map_err(|e| AppendRefusal::Internal(format!("stored roster does not verify: {e}")))?;
    // The poster is the signer, or for a recovery-signed ADD the new device itself.
    let poster_ok = if body.signer_device_id.is_empty() {
        !is_collection && body.subject_device_id.as_slice() == caller.0.as_slice()
    } else {
        body.signer_device_id.as_slice() == caller.0.as_slice()
    };
    if !poster_ok {
        return Err(AppendRefusal::Forbidden(
            "roster entry posted by a device that did not sign it",
        ));
    }
    if body.created_ms > now_ms.saturating_add(MAX_DRIFT_MS) {
        return Err(conflict(format!(
            "roster entry created {} ms ahead of the server clock",
            body.created_ms - now_ms
        )));
    }
    roster
        .apply(entry)
        .map_err(|e| conflict(format!("roster entry refused: {e}")))?;
    Ok(body.seq)
}
