//! SQLite statements of the pairing mailboxes and the ticket check (see [`super::Store`]).
//!
//! One row per (account, new device): the current attempt. A new start replaces the row;
//! a reply is stored only once per attempt (the one online guess of the code), a
//! confirmation only after the reply, the new device's done message only after the
//! confirmation, and an aborted attempt takes nothing more.

use rusqlite::{Connection, OptionalExtension as _, Transaction, params};
use sealsync_core::DeviceId;

use super::{NewPairing, PairingRow, StoreError};

pub(super) fn ticket_account(
    c: &Connection,
    ticket_hash: [u8; 32],
    now_ms: u64,
) -> Result<String, StoreError> {
    let ticket: Option<(String, u64, Option<u64>)> = c
        .query_row(
            "SELECT account, expires_ms, used_ms FROM tickets WHERE hash = ?1",
            [ticket_hash],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    match ticket {
        Some((account, expires_ms, None)) if now_ms < expires_ms => Ok(account),
        _ => Err(StoreError::TicketInvalid),
    }
}

pub(super) fn start(tx: &Transaction<'_>, p: &NewPairing) -> Result<(), StoreError> {
    // Another approver's open attempt is not replaced (one member cannot cut off
    // another's pairing); the same approver's, or an ended one's, is.
    let busy: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM pairings WHERE account = ?1 AND device_id = ?2
             AND approver != ?3 AND aborted = 0 AND done IS NULL AND expires_ms > ?4)",
        params![p.account, p.device.0, p.approver.0, p.created_ms],
        |r| r.get(0),
    )?;
    if busy {
        return Err(StoreError::Conflict(
            "another device's pairing attempt for this device is open",
        ));
    }
    tx.execute(
        "INSERT OR REPLACE INTO pairings
         (account, device_id, attempt_id, approver, start, reply, confirm, done, aborted, created_ms, expires_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL, NULL, NULL, 0, ?6, ?7)",
        params![
            p.account,
            p.device.0,
            p.attempt_id,
            p.approver.0,
            p.start,
            p.created_ms,
            p.expires_ms
        ],
    )?;
    Ok(())
}

pub(super) fn get(
    c: &Connection,
    account: &str,
    device: DeviceId,
    now_ms: u64,
) -> Result<Option<PairingRow>, StoreError> {
    Ok(c.query_row(
        "SELECT attempt_id, approver, start, reply, confirm, done, aborted FROM pairings
             WHERE account = ?1 AND device_id = ?2 AND expires_ms > ?3",
        params![account, device.0, now_ms],
        |r| {
            Ok(PairingRow {
                attempt_id: r.get(0)?,
                approver: DeviceId(r.get(1)?),
                start: r.get(2)?,
                reply: r.get(3)?,
                confirm: r.get(4)?,
                done: r.get(5)?,
                aborted: r.get::<_, i64>(6)? != 0,
            })
        },
    )
    .optional()?)
}

pub(super) fn reply(
    tx: &Transaction<'_>,
    account: &str,
    device: DeviceId,
    attempt_id: [u8; 16],
    reply: &[u8],
    now_ms: u64,
) -> Result<(), StoreError> {
    let n = tx.execute(
        "UPDATE pairings SET reply = ?1
         WHERE account = ?2 AND device_id = ?3 AND attempt_id = ?4
           AND reply IS NULL AND aborted = 0 AND expires_ms > ?5",
        params![reply, account, device.0, attempt_id, now_ms],
    )?;
    if n != 1 {
        return Err(StoreError::Conflict(
            "no open pairing attempt waiting for a reply",
        ));
    }
    Ok(())
}

pub(super) fn confirm(
    tx: &Transaction<'_>,
    account: &str,
    device: DeviceId,
    attempt_id: [u8; 16],
    approver: DeviceId,
    confirm: &[u8],
    now_ms: u64,
) -> Result<(), StoreError> {
    let n = tx.execute(
        "UPDATE pairings SET confirm = ?1
         WHERE account = ?2 AND device_id = ?3 AND attempt_id = ?4 AND approver = ?5
           AND reply IS NOT NULL AND confirm IS NULL AND aborted = 0 AND expires_ms > ?6",
        params![confirm, account, device.0, attempt_id, approver.0, now_ms],
    )?;
    if n != 1 {
        return Err(StoreError::Conflict(
            "no answered pairing attempt of this approver to confirm",
        ));
    }
    Ok(())
}

pub(super) fn done(
    tx: &Transaction<'_>,
    account: &str,
    device: DeviceId,
    attempt_id: [u8; 16],
    done: &[u8],
    now_ms: u64,
) -> Result<(), StoreError> {
    let n = tx.execute(
        "UPDATE pairings SET done = ?1
         WHERE account = ?2 AND device_id = ?3 AND attempt_id = ?4
           AND confirm IS NOT NULL AND done IS NULL AND aborted = 0 AND expires_ms > ?5",
        params![done, account, device.0, attempt_id, now_ms],
    )?;
    if n != 1 {
        return Err(StoreError::Conflict(
            "no confirmed pairing attempt of this device waiting for its done message",
        ));
    }
    Ok(())
}

pub(super) fn abort(
    tx: &Transaction<'_>,
    account: &str,
    device: DeviceId,
    attempt_id: [u8; 16],
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE pairings SET aborted = 1 WHERE account = ?1 AND device_id = ?2 AND attempt_id = ?3",
        params![account, device.0, attempt_id],
    )?;
    Ok(())
}
