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
    // Every entry, the genesis too: an entry stamped far ahead would freeze the roster, since
    // later entries may not be more than a day older than their predecessor (BI-19).
    if body.created_ms > now_ms.saturating_add(MAX_DRIFT_MS) {
        return Err(conflict(format!(
            "roster entry created {} ms ahead of the server clock",
            body.created_ms - now_ms
        )));
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
    roster
        .apply(entry)
        .map_err(|e| conflict(format!("roster entry refused: {e}")))?;
    Ok(body.seq)
}

#[cfg(test)]
mod tests {
    use sealsync_core::{AccountKeys, GenesisParams, Hlc, NewMember, Policy, seal_descriptor};
    use sealsync_crypto::{KdfParams, KxSecretKey, SigningKey, device_id};

    use super::*;
    use crate::store::AdmissionState;

    struct Dev {
        sign: SigningKey,
        kx: KxSecretKey,
        id: DeviceId,
    }

    fn dev() -> Dev {
        let sign = SigningKey::generate();
        let id = DeviceId(device_id(&sign.verifying_key()));
        Dev {
            sign,
            kx: KxSecretKey::generate(),
            id,
        }
    }

    fn record(d: &Dev) -> DeviceRecord {
        DeviceRecord {
            device_id: d.id,
            account: "acct".into(),
            name: "d".into(),
            sign_pk: d.sign.verifying_key().to_bytes(),
            kx_pk: d.kx.public_key().to_bytes(),
            cert_fp: [0; 32],
            state: AdmissionState::Active,
            enrolled_ms: 1,
        }
    }

    fn body(e: &SignedRosterEntry) -> RosterEntryBody {
        sealsync_proto::decode(&e.body).unwrap()
    }

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn collection_pins_need_their_signer_and_a_sane_clock() {
        // CD-12, CD-07, BI-19: the server appends a member's pin posted by its signer only,
        // never one created beyond its clock, and a pin row's subject is its signer.
        let (a, b) = (dev(), dev());
        let genesis = Roster::make_genesis(GenesisParams {
            account: "acct",
            signing: &a.sign,
            kx_pk: &a.kx.public_key(),
            name: "a",
            recovery_pk: &SigningKey::generate().verifying_key(),
            recovery_salt: &[1; 16],
            recovery_kdf: KdfParams::FLOOR,
            now_ms: NOW,
        });
        let mut roster = Roster::from_genesis(&genesis, "acct").unwrap();
        let add = roster.make_add(
            &a.sign,
            a.id,
            NewMember {
                device_id: b.id,
                sign_pk: &b.sign.verifying_key(),
                kx_pk: &b.kx.public_key(),
                name: "b",
            },
            NOW,
        );
        assert_eq!(
            check_append(
                std::slice::from_ref(&genesis),
                &add,
                &body(&add),
                "acct",
                a.id,
                Some(&record(&b)),
                NOW
            ),
            Ok(1)
        );
        roster.apply(&add).unwrap();
        let stored = roster.entries().to_vec();
        let keys = AccountKeys::generate();
        let (_, d) =
            seal_descriptor(&b.sign, b.id, "acct", &keys, "n", Policy::Lww, Hlc(1)).unwrap();
        let pin = roster.make_collection_pin(&b.sign, b.id, &d, NOW).unwrap();
        assert_eq!(row_subject(&body(&pin)), Some(b.id));
        let check = |e: &SignedRosterEntry, caller: DeviceId, now: u64| {
            check_append(&stored, e, &body(e), "acct", caller, None, now)
        };
        assert_eq!(check(&pin, b.id, NOW), Ok(2));
        assert!(matches!(
            check(&pin, a.id, NOW),
            Err(AppendRefusal::Forbidden(_))
        ));
        let ahead = roster
            .make_collection_pin(&b.sign, b.id, &d, NOW + MAX_DRIFT_MS + 1)
            .unwrap();
        assert!(matches!(
            check(&ahead, b.id, NOW),
            Err(AppendRefusal::Conflict(_))
        ));
        assert_eq!(check(&ahead, b.id, NOW + 1), Ok(2));
        // An ADD whose subject keys differ from the enrolled ones is refused.
        let c = dev();
        let mut other = record(&c);
        other.kx_pk = KxSecretKey::generate().public_key().to_bytes();
        let add_c = roster.make_add(
            &a.sign,
            a.id,
            NewMember {
                device_id: c.id,
                sign_pk: &c.sign.verifying_key(),
                kx_pk: &c.kx.public_key(),
                name: "c",
            },
            NOW,
        );
        assert!(matches!(
            check_append(
                &stored,
                &add_c,
                &body(&add_c),
                "acct",
                a.id,
                Some(&other),
                NOW
            ),
            Err(AppendRefusal::Conflict(_))
        ));
    }

    #[test]
    fn a_genesis_ahead_of_the_server_clock_is_refused() {
        // BI-19: a genesis stamped beyond the drift bound (a founding device whose clock
        // runs days fast) would hold back every later entry, so it is refused like any
        // entry; within the bound it is accepted.
        let a = dev();
        let genesis_at = |now_ms| {
            Roster::make_genesis(GenesisParams {
                account: "acct",
                signing: &a.sign,
                kx_pk: &a.kx.public_key(),
                name: "a",
                recovery_pk: &SigningKey::generate().verifying_key(),
                recovery_salt: &[1; 16],
                recovery_kdf: KdfParams::FLOOR,
                now_ms,
            })
        };
        let ahead = genesis_at(NOW + MAX_DRIFT_MS + 1);
        assert!(matches!(
            check_append(
                &[],
                &ahead,
                &body(&ahead),
                "acct",
                a.id,
                Some(&record(&a)),
                NOW
            ),
            Err(AppendRefusal::Conflict(_))
        ));
        let fine = genesis_at(NOW + MAX_DRIFT_MS);
        assert_eq!(
            check_append(
                &[],
                &fine,
                &body(&fine),
                "acct",
                a.id,
                Some(&record(&a)),
                NOW
            ),
            Ok(0)
        );
        // Only its subject posts a genesis (another device of the account cannot found it
        // under its own or anyone's keys).
        let b = dev();
        assert!(matches!(
            check_append(
                &[],
                &fine,
                &body(&fine),
                "acct",
                b.id,
                Some(&record(&a)),
                NOW
            ),
            Err(AppendRefusal::Forbidden(_))
        ));
    }
}
