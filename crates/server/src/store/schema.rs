//! SQLite schema and migrations.
//!
//! `schema_version` holds one row with the applied version; each migration runs in its own
//! transaction together with the version bump, so a crash mid-migration leaves the previous
//! version intact (CF-18). A database newer than [`MIGRATIONS`] is refused.

use rusqlite::{Connection, OptionalExtension as _};

use super::StoreError;

/// Ordered migrations; entry `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "
    CREATE TABLE tickets (
        hash       BLOB PRIMARY KEY,
        account    TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        used_ms    INTEGER,
        used_by    BLOB
    );
    CREATE TABLE devices (
        device_id   BLOB PRIMARY KEY,
        account     TEXT NOT NULL,
        name        TEXT NOT NULL,
        sign_pk     BLOB NOT NULL,
        kx_pk       BLOB NOT NULL,
        cert_fp     BLOB NOT NULL,
        state       TEXT NOT NULL,
        enrolled_ms INTEGER NOT NULL
    );
    CREATE INDEX devices_by_account ON devices(account, enrolled_ms);
    CREATE TABLE roster (
        account TEXT NOT NULL,
        seq     INTEGER NOT NULL,
        subject BLOB NOT NULL,
        hash    BLOB NOT NULL,
        entry   BLOB NOT NULL,
        PRIMARY KEY (account, seq)
    );
    CREATE INDEX roster_by_subject ON roster(account, subject);
    CREATE TABLE envelopes (
        id         INTEGER PRIMARY KEY,
        account    TEXT NOT NULL,
        recipient  BLOB NOT NULL,
        sender     BLOB NOT NULL,
        hash       BLOB NOT NULL,
        sealed     BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        UNIQUE (account, recipient, hash)
    );
    CREATE TABLE recovery (
        account    TEXT PRIMARY KEY,
        blob       BLOB NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE collections (
        account    TEXT NOT NULL,
        cid        BLOB NOT NULL,
        device_id  BLOB NOT NULL,
        hash       BLOB NOT NULL,
        descriptor BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (account, cid, device_id)
    );
    CREATE TABLE batches (
        id         INTEGER PRIMARY KEY,
        account    TEXT NOT NULL,
        cid        BLOB NOT NULL,
        log_index  INTEGER NOT NULL,
        device_id  BLOB NOT NULL,
        seq        INTEGER NOT NULL,
        hash       BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        bytes      BLOB NOT NULL,
        UNIQUE (account, cid, log_index),
        UNIQUE (account, cid, device_id, seq)
    );
    CREATE TABLE chains (
        account   TEXT NOT NULL,
        cid       BLOB NOT NULL,
        device_id BLOB NOT NULL,
        last_seq  INTEGER NOT NULL,
        last_hash BLOB NOT NULL,
        last_hlc  INTEGER NOT NULL,
        PRIMARY KEY (account, cid, device_id)
    );
    ",
    // 2: pairing mailboxes, one open attempt per (account, new device).
    "
    CREATE TABLE pairings (
        account    TEXT NOT NULL,
        device_id  BLOB NOT NULL,
        attempt_id BLOB NOT NULL,
        approver   BLOB NOT NULL,
        start      BLOB NOT NULL,
        reply      BLOB,
        confirm    BLOB,
        aborted    INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        PRIMARY KEY (account, device_id)
    );
    ",
    // 3: the new device's PairingDone, once it is trusted.
    "
    ALTER TABLE pairings ADD COLUMN done BLOB;
    ",
];

/// The schema version this binary writes.
pub(crate) const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`CURRENT_VERSION`].
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        if version > CURRENT_VERSION {
            return Err(StoreError::SchemaTooNew(version));
        }
        if version == CURRENT_VERSION {
            tx.commit()?;
            return Ok(());
        }
        let migration = usize::try_from(version)
            .ok()
            .and_then(|i| MIGRATIONS.get(i))
            .ok_or(StoreError::Corrupt("negative schema version"))?;
        tx.execute_batch(migration)?;
        tx.execute("DELETE FROM schema_version", [])?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [version + 1],
        )?;
        tx.commit()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrate_is_idempotent_and_refuses_newer() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, CURRENT_VERSION);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
        conn.execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::SchemaTooNew(99))
        ));
    }
}
