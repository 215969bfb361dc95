//! JSON field indexes over live records (see `crate::query` for what they store and why).
//!
//! Tables:
//! - `indexes`: one row per index, `(collection name, field)`. By collection *name*, so an
//!   index can be declared before the collection exists on this device (before its first
//!   sync), without creating the collection (which would pin a policy);
//! - `index_terms`: per local collection, `(term, record key)` for every live record whose
//!   value is a JSON object holding an indexed field; `term` is
//!   `sealsync_crypto::index_term` of collection, field and the value's canonical JSON.
//!
//! [`Indexer::update`] is called wherever the store writes or removes a record row (the
//! apply path in `records`), inside that change's transaction. The index definitions are
//! read inside that transaction too, and [`Store::create_index`] adds one and builds it in
//! an IMMEDIATE transaction: so another handle's change (another process on the same home)
//! is either seen by the build or indexes itself, never missed.

use rusqlite::{Connection, OptionalExtension, params};
use sealsync_crypto::SymmetricKey;

use super::records::open_row;
use super::{CollInfo, Store};
use crate::error::ClientError;
use crate::query::canonical_json;

/// Index tables, created like every table of `SCHEMA` (idempotent, so a database made by an
/// earlier version gains them at its next open).
pub(super) const SCHEMA: &str = r"
CREATE TABLE IF NOT EXISTS indexes (
    collection TEXT NOT NULL,
    field TEXT NOT NULL,
    PRIMARY KEY (collection, field)
);
CREATE TABLE IF NOT EXISTS index_terms (
    coll INTEGER NOT NULL,
    term BLOB NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (coll, term, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS index_terms_by_key ON index_terms (coll, key);
";

/// The indexes of one collection, loaded once per change: keeps their terms up to date.
pub(crate) struct Indexer {
    fields: Vec<String>,
    /// The index key; `None` when the collection has no index (then updates do nothing).
    key: Option<SymmetricKey>,
}

impl Indexer {
    /// The indexes of `coll`, read inside the caller's transaction.
    pub(crate) fn load(
        conn: &Connection,
        storage_key: &SymmetricKey,
        coll: &CollInfo,
    ) -> Result<Self, ClientError> {
        let fields = indexed_fields(conn, &coll.name)?;
        let key = (!fields.is_empty()).then(|| sealsync_crypto::local_index_key(storage_key));
        Ok(Self { fields, key })
    }

    /// Replaces the terms of record `rkey` after its row changed: `live` is its value when
    /// live, `None` when deleted or gone.
    pub(super) fn update(
        &self,
        conn: &Connection,
        coll: &CollInfo,
        rkey: &str,
        live: Option<&[u8]>,
    ) -> Result<(), ClientError> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        conn.prepare_cached("DELETE FROM index_terms WHERE coll = ?1 AND key = ?2")?
            .execute(params![coll.id, rkey])?;
        if let Some(value) = live {
            let mut ins = conn.prepare_cached(
                "INSERT OR IGNORE INTO index_terms (coll, term, key) VALUES (?1, ?2, ?3)",
            )?;
            for term in terms(key, &coll.name, &self.fields, value) {
                ins.execute(params![coll.id, term.as_slice(), rkey])?;
            }
        }
        Ok(())
    }
}

/// Fields indexed in collection `name`, in name order.
fn indexed_fields(conn: &Connection, name: &str) -> Result<Vec<String>, ClientError> {
    let mut st =
        conn.prepare_cached("SELECT field FROM indexes WHERE collection = ?1 ORDER BY field")?;
    let rows = st.query_map([name], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The terms of a value: one per indexed field it holds, if it is a JSON object.
fn terms(key: &SymmetricKey, coll: &str, fields: &[String], value: &[u8]) -> Vec<[u8; 32]> {
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(value) else {
        return Vec::new();
    };
    fields
        .iter()
        .filter_map(|f| {
            object
                .get(f)
                .map(|v| sealsync_crypto::index_term(key, coll, f, &canonical_json(v)))
        })
        .collect()
}

/// Live records of a collection: key, winner, merged value, winning version's value.
const LIVE_ROWS: &str = "SELECT r.key, r.winner, r.merged, v.value FROM records r
     LEFT JOIN versions v ON v.coll = r.coll AND v.key = r.key AND v.vid = r.winner";

/// Live records holding term `?2` in collection `?1`, in key order: led by the
/// `index_terms` primary key (coll, term, key), which also gives the order.
pub(super) const FIND_SQL: &str = "SELECT r.key, r.winner, r.merged, v.value FROM index_terms t
     JOIN records r ON r.coll = t.coll AND r.key = t.key
     LEFT JOIN versions v ON v.coll = r.coll AND v.key = r.key AND v.vid = r.winner
     WHERE t.coll = ?1 AND t.term = ?2 AND r.deleted = 0 ORDER BY t.key";

impl Store {
    /// Creates the index on `field` of collection `name` (which need not exist yet) and
    /// builds it from the existing live records, in one transaction. Returns whether it
    /// was new: an existing index is left as it is.
    pub(crate) fn create_index(&mut self, name: &str, field: &str) -> Result<bool, ClientError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx
            .prepare_cached("INSERT OR IGNORE INTO indexes (collection, field) VALUES (?1, ?2)")?
            .execute(params![name, field])?;
        if n == 0 {
            return Ok(false);
        }
        let coll = tx
            .prepare_cached(
                "SELECT id, name, policy, cid, pinned, cursor, created_hlc FROM collections WHERE name = ?1",
            )?
            .query_row([name], super::row_to_coll)
            .optional()?
            .transpose()?;
        if let Some(coll) = coll {
            // Rebuilds every indexed field of the collection: simple, and the same terms.
            let indexer = Indexer::load(&tx, &self.storage_key, &coll)?;
            let mut st = tx.prepare_cached(&format!(
                "{LIVE_ROWS} WHERE r.coll = ?1 AND r.deleted = 0 ORDER BY r.key"
            ))?;
            let mut rows = st.query([coll.id])?;
            while let Some(r) = rows.next()? {
                let (k, value) = open_row(&self.storage_key, &coll, r)?;
                indexer.update(&tx, &coll, &k, Some(&value))?;
            }
        }
        tx.commit()?;
        Ok(true)
    }

    /// Whether collection `name` has an index on `field`.
    pub(crate) fn has_index(&self, name: &str, field: &str) -> Result<bool, ClientError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM indexes WHERE collection = ?1 AND field = ?2")?
            .query_row(params![name, field], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Live records of `coll` whose JSON `field` equals `value`, in key order, through the
    /// index on `field` ([`ClientError::NoIndex`] if there is none). Decrypts only the
    /// records the index names, and returns only those whose field really holds `value`.
    pub(crate) fn find(
        &self,
        name: &str,
        field: &str,
        value: &serde_json::Value,
    ) -> Result<Vec<(String, Vec<u8>)>, ClientError> {
        if !self.has_index(name, field)? {
            return Err(ClientError::NoIndex {
                collection: name.to_string(),
                field: field.to_string(),
            });
        }
        let Some(coll) = self.collection(name)? else {
            return Ok(Vec::new());
        };
        let key = sealsync_crypto::local_index_key(&self.storage_key);
        let term = sealsync_crypto::index_term(&key, name, field, &canonical_json(value));
        let mut st = self.conn.prepare_cached(FIND_SQL)?;
        let mut rows = st.query(params![coll.id, term.as_slice()])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let (k, plain) = open_row(&self.storage_key, &coll, r)?;
            let holds = matches!(
                serde_json::from_slice::<serde_json::Value>(&plain),
                Ok(serde_json::Value::Object(o)) if o.get(field) == Some(value)
            );
            if holds {
                out.push((k, plain));
            }
        }
        Ok(out)
    }
}
