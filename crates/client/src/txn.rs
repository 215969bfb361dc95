//! Local transactions: [`Transaction`], the one path of every local write.
//!
//! [`Replica::transaction`](crate::Replica::transaction) runs a closure with a
//! [`Transaction`]; its puts, deletes, patches and resolutions, in any number of
//! collections, commit as one SQLite transaction (`BEGIN IMMEDIATE` … `COMMIT`, see
//! `store::write`) when the closure returns `Ok`, and are rolled back when it returns `Err`
//! or panics. A single `put`, `put_many`, `delete`, `resolve`, `put_json` or `patch` is a
//! transaction of its own, through the same code ([`Core::transaction`]): one set of checks,
//! one way to create a collection, one way to stamp and apply a version.
//!
//! # Atomicity
//!
//! - **Locally, all or nothing**, across collections and across a crash: until the commit,
//!   nothing of the transaction is visible to other handles or processes (SQLite's WAL
//!   gives readers the last committed snapshot), and a process killed before the commit
//!   leaves nothing (uncommitted WAL frames are discarded when the database is next
//!   opened). Once [`Replica::transaction`](crate::Replica::transaction) returns `Ok`, the
//!   transaction is durable (`synchronous=FULL`).
//! - **Each operation is atomic too**: an operation that returns `Err` (a key too long, a
//!   value a `fields` collection refuses, a database error) changed nothing, and the
//!   transaction goes on with what it did before, so the closure may handle the error and
//!   continue. If the database itself ended the transaction after an error, every later
//!   operation and the commit fail with [`WriteError::TransactionAborted`](crate::WriteError::TransactionAborted).
//! - **Reads see the transaction's own writes**: [`Transaction::get`] and
//!   [`Transaction::get_json`] read through the transaction.
//!
//! # On the wire
//!
//! Sealing (in a sync) reads unsent versions in a transaction of its own, so it sees a
//! committed transaction whole. It puts all unsent versions of one collection, in commit
//! order, into as few batches as the batch limits allow (at most 4096 mutations and about
//! 1 MiB of plaintext each): the part of a transaction in one collection travels in one
//! batch, possibly together with edits made before it, unless the collection's unsent edits
//! exceed those limits; then they are split into consecutive batches of the device's chain
//! (in order, so a device that pulled them all has the whole transaction, but a device
//! that pulled only the first has part of it until its next pull). Batches are per
//! collection, so a transaction over several collections travels as one batch per
//! collection, pushed and pulled one collection at a time: another device that has pulled
//! one collection but not yet the other sees part of it. Each batch is applied whole by
//! every device. Atomicity across collections is therefore a local guarantee; across
//! devices it holds per batch.
//!
//! # The `fields` policy
//!
//! In a `fields` collection a put (or [`Transaction::put_json`]) writes a JSON object whose
//! top-level fields are merged into the record (per field, the latest write wins by HLC);
//! [`Transaction::patch`] says so explicitly and is refused elsewhere. See
//! [`Transaction::put`] for the exact rules (`null`, nested objects, removing fields).

use sealsync_core::{AccountKeys, Policy, VersionId};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ClientError;
use crate::errors::{ReadError, WriteError};
use crate::store::{CollInfo, WriteTxn};
use crate::{Core, MAX_KEY_BYTES, MAX_VALUE_BYTES};

/// An open local transaction, handed to the closure of
/// [`Replica::transaction`](crate::Replica::transaction): what it writes commits at once
/// when the closure returns `Ok`, and not at all if it returns `Err` or panics (module
/// documentation: `txn`). Its reads see its own writes.
pub struct Transaction<'a> {
    w: WriteTxn<'a>,
    keys: Option<&'a AccountKeys>,
    account: &'a str,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction").finish_non_exhaustive()
    }
}

impl Core {
    /// Runs `f` in one local write transaction and commits it if `f` returns `Ok`; an `Err`
    /// or a panic rolls everything back. Errors of the store (beginning, committing) are
    /// converted into `E`.
    pub(crate) fn transaction<T, E>(
        &mut self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<ClientError>,
    {
        self.refresh()?;
        let mut tx = Transaction {
            w: self.store.begin_write()?,
            keys: self.secrets.account_keys.as_ref(),
            account: &self.account,
        };
        let out = f(&mut tx)?;
        tx.w.commit()?;
        Ok(out)
    }

    /// Writes `value` as a [`Transaction::put`] of its own.
    pub(crate) fn put(
        &mut self,
        collection: &str,
        key: &str,
        value: &[u8],
    ) -> Result<VersionId, ClientError> {
        self.transaction(|tx| tx.put_inner(collection, key, value))
    }

    /// Writes many records of one collection in one transaction (bulk import); same rules
    /// as [`Transaction::put`]. One refused record writes none.
    pub(crate) fn put_many(
        &mut self,
        collection: &str,
        records: &[(String, Vec<u8>)],
    ) -> Result<Vec<VersionId>, ClientError> {
        self.transaction(|tx| {
            records
                .iter()
                .map(|(k, v)| tx.put_inner(collection, k, v))
                .collect()
        })
    }

    /// Deletes `key` as a [`Transaction::delete`] of its own.
    pub(crate) fn delete(
        &mut self,
        collection: &str,
        key: &str,
    ) -> Result<Option<VersionId>, ClientError> {
        self.transaction(|tx| tx.delete_inner(collection, key))
    }

    /// Writes a resolution as a [`Transaction::resolve`] of its own.
    pub(crate) fn resolve(
        &mut self,
        collection: &str,
        key: &str,
        value: &[u8],
    ) -> Result<VersionId, ClientError> {
        self.transaction(|tx| tx.resolve_inner(collection, key, value))
    }
}

impl Transaction<'_> {
    /// Writes `value` under `key` of `collection`, creating the collection with the `lww`
    /// policy if it does not exist. Keys are 1 to [`MAX_KEY_BYTES`] bytes, values at most
    /// [`MAX_VALUE_BYTES`] ([`WriteError::InvalidInput`](crate::WriteError::InvalidInput) otherwise).
    ///
    /// What a put means depends on the collection's policy:
    /// - `lww`: `value` replaces the record (the latest version by HLC wins).
    /// - `manual`: `value` supersedes the record's current version(s); concurrent puts on
    ///   other devices become conflicts (`Replica::conflicts`, [`Transaction::resolve`]).
    /// - `fields`: `value` must be a JSON object ([`WriteError::InvalidInput`](crate::WriteError::InvalidInput) otherwise),
    ///   and the put is a **patch of the top-level fields it names**, exactly like
    ///   [`Transaction::patch`]: each field given replaces that field's value (across
    ///   devices, per field, the write with the latest HLC wins); fields not given keep
    ///   their values. There is no deep merge: a field whose value is an object or an
    ///   array is replaced whole. A field given as `null` is **stored as `null`**: the
    ///   field stays, with the value `null` (it is not removed). No put removes a field; to
    ///   drop fields, delete the record and put the object again, in one transaction: a
    ///   delete clears every field, and the put after it starts from an empty object. A
    ///   put on an absent or deleted record creates it with just the fields given.
    ///
    /// Returns the new version's id (it changes if a sync later re-stamps an edit made by
    /// a clock that ran fast: `SyncReport::restamped_versions`).
    pub fn put(
        &mut self,
        collection: &str,
        key: &str,
        value: &[u8],
    ) -> Result<VersionId, WriteError> {
        Ok(self.put_inner(collection, key, value)?)
    }

    /// Deletes `key` (a tombstone version) and returns its id; `None`, writing nothing, if
    /// there was no live record (as this transaction sees it): deleting is idempotent. In
    /// a `fields` collection a delete clears every field.
    pub fn delete(&mut self, collection: &str, key: &str) -> Result<Option<VersionId>, WriteError> {
        Ok(self.delete_inner(collection, key)?)
    }

    /// The live value of `key` as this transaction sees it (its own writes included);
    /// `None` if absent or deleted. In a `fields` collection: the merged object.
    pub fn get(&self, collection: &str, key: &str) -> Result<Option<Vec<u8>>, ReadError> {
        Ok(self.get_inner(collection, key)?)
    }

    /// Writes `value` as the resolution of `key` in a `manual` collection: a version
    /// superseding all current heads. [`WriteError::NotFound`](crate::WriteError::NotFound) if the key has no versions;
    /// [`WriteError::InvalidInput`](crate::WriteError::InvalidInput) if the collection's policy is not `manual`.
    pub fn resolve(
        &mut self,
        collection: &str,
        key: &str,
        value: &[u8],
    ) -> Result<VersionId, WriteError> {
        Ok(self.resolve_inner(collection, key, value)?)
    }

    /// Serializes `value` to JSON and writes it as a [`Transaction::put`] (same rules: in a
    /// `fields` collection it must serialize to an object and is a patch of the fields it
    /// names). Serialization errors are [`WriteError::Json`](crate::WriteError::Json).
    ///
    /// With serde's defaults an `Option` field that is `None` serializes as `null`, so in
    /// a `fields` collection it **sets that field to `null`**; mark it
    /// `#[serde(skip_serializing_if = "Option::is_none")]` to leave the stored field
    /// unchanged instead.
    pub fn put_json<T: Serialize + ?Sized>(
        &mut self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<VersionId, WriteError> {
        Ok(self.put_json_inner(collection, key, value)?)
    }

    /// The live value of `key` (as this transaction sees it) deserialized from JSON;
    /// `None` if absent or deleted. [`WriteError::Json`](crate::WriteError::Json) if the stored value is not JSON
    /// of type `T`.
    pub fn get_json<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<T>, ReadError> {
        Ok(self.get_json_inner(collection, key)?)
    }

    /// Sets the top-level fields given in `fields` (a `serde_json::Map`, a
    /// `serde_json::Value::Object`, or any value that serializes to a JSON object, such as
    /// a struct) on record `key` of a `fields` collection, keeping the fields not given.
    /// Same semantics as a [`Transaction::put`] into a `fields` collection: fields are
    /// replaced whole (no deep merge); `null` is stored as `null`, not removed; a patch of
    /// an absent or deleted record creates it with just these fields; an empty object
    /// writes a version that changes no field.
    ///
    /// Errors: [`WriteError::NotFieldsCollection`](crate::WriteError::NotFieldsCollection) if the collection does not exist or
    /// uses another policy (`patch` never creates a collection: create it first with
    /// `Policy::Fields`); [`WriteError::Json`](crate::WriteError::Json) if `fields` does not serialize;
    /// [`WriteError::InvalidInput`](crate::WriteError::InvalidInput) if it serializes to something other than an object.
    pub fn patch<P: Serialize + ?Sized>(
        &mut self,
        collection: &str,
        key: &str,
        fields: &P,
    ) -> Result<VersionId, WriteError> {
        Ok(self.patch_inner(collection, key, fields)?)
    }
}

impl Transaction<'_> {
    pub(crate) fn put_inner(
        &mut self,
        collection: &str,
        key: &str,
        value: &[u8],
    ) -> Result<VersionId, ClientError> {
        validate_key(key)?;
        validate_size(value)?;
        let existing = self.w.collection(collection)?;
        if let Some(c) = &existing {
            check_fields(c, value)?;
        }
        let cid = match &existing {
            Some(_) => None,
            None => self.keys.map(|k| k.collection_id(self.account, collection)),
        };
        self.w.atomically(|w| {
            let coll = match existing {
                Some(c) => c,
                None => w.create_collection(collection, Policy::Lww, cid, false)?,
            };
            w.write(&coll, key, false, value, coll.policy == Policy::Manual)
        })
    }

    pub(crate) fn delete_inner(
        &mut self,
        collection: &str,
        key: &str,
    ) -> Result<Option<VersionId>, ClientError> {
        validate_key(key)?;
        let Some(coll) = self.w.collection(collection)? else {
            return Ok(None);
        };
        match self.w.record(&coll, key)? {
            Some(r) if !r.deleted => {}
            _ => return Ok(None),
        }
        let manual = coll.policy == Policy::Manual;
        self.w
            .atomically(|w| w.write(&coll, key, true, &[], manual))
            .map(Some)
    }

    pub(crate) fn get_inner(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        match self.w.collection(collection)? {
            Some(c) => self.w.get(&c, key),
            None => Ok(None),
        }
    }

    pub(crate) fn resolve_inner(
        &mut self,
        collection: &str,
        key: &str,
        value: &[u8],
    ) -> Result<VersionId, ClientError> {
        let not_found = || ClientError::NotFound {
            collection: collection.to_string(),
            key: key.to_string(),
        };
        validate_key(key)?;
        let coll = self.w.collection(collection)?.ok_or_else(not_found)?;
        crate::replica::require_manual(&coll)?;
        if self.w.record(&coll, key)?.is_none() {
            return Err(not_found());
        }
        validate_size(value)?;
        self.w
            .atomically(|w| w.write(&coll, key, false, value, true))
    }

    pub(crate) fn put_json_inner<T: Serialize + ?Sized>(
        &mut self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<VersionId, ClientError> {
        let bytes = to_json(collection, key, value)?;
        self.put_inner(collection, key, &bytes)
    }

    pub(crate) fn get_json_inner<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<T>, ClientError> {
        json_of(collection, key, self.get_inner(collection, key)?)
    }

    pub(crate) fn patch_inner<P: Serialize + ?Sized>(
        &mut self,
        collection: &str,
        key: &str,
        fields: &P,
    ) -> Result<VersionId, ClientError> {
        match self.w.collection(collection)? {
            Some(c) if c.policy == Policy::Fields => {}
            other => {
                return Err(ClientError::NotFieldsCollection {
                    collection: collection.to_string(),
                    policy: other.map(|c| c.policy.as_str().to_string()),
                });
            }
        }
        let value = serde_json::to_value(fields).map_err(|e| json_error(collection, key, &e))?;
        if !value.is_object() {
            return Err(ClientError::InvalidInput(format!(
                "patch takes a JSON object of the fields to set, like {{\"field\": \"value\"}} (got {})",
                json_kind(&value)
            )));
        }
        let bytes = to_json(collection, key, &value)?;
        self.put_inner(collection, key, &bytes)
    }
}

impl Core {
    /// [`Transaction::put_json`] as a transaction of its own.
    pub(crate) fn put_json<T: Serialize + ?Sized>(
        &mut self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<VersionId, ClientError> {
        self.transaction(|tx| tx.put_json_inner(collection, key, value))
    }

    /// [`Transaction::get_json`] outside a transaction.
    pub(crate) fn get_json<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<T>, ClientError> {
        json_of(collection, key, self.get(collection, key)?)
    }

    /// [`Transaction::patch`] as a transaction of its own.
    pub(crate) fn patch<P: Serialize + ?Sized>(
        &mut self,
        collection: &str,
        key: &str,
        fields: &P,
    ) -> Result<VersionId, ClientError> {
        self.transaction(|tx| tx.patch_inner(collection, key, fields))
    }
}

fn to_json<T: Serialize + ?Sized>(
    collection: &str,
    key: &str,
    value: &T,
) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(value).map_err(|e| json_error(collection, key, &e))
}

/// A stored value, if any, deserialized from JSON.
fn json_of<T: DeserializeOwned>(
    collection: &str,
    key: &str,
    bytes: Option<Vec<u8>>,
) -> Result<Option<T>, ClientError> {
    bytes
        .map(|b| serde_json::from_slice(&b).map_err(|e| json_error(collection, key, &e)))
        .transpose()
}

/// serde_json's message, with the record it was about (serde_json's type stays out of the
/// public API).
fn json_error(collection: &str, key: &str, e: &serde_json::Error) -> ClientError {
    ClientError::Json(format!(
        "record {} in collection {}: {e}",
        crate::types::echo(key),
        crate::types::echo(collection)
    ))
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Record keys: 1 to [`MAX_KEY_BYTES`] bytes.
fn validate_key(key: &str) -> Result<(), ClientError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(ClientError::InvalidInput(format!(
            "record keys must be 1 to {MAX_KEY_BYTES} bytes (got {})",
            key.len()
        )));
    }
    Ok(())
}

/// Values: at most [`MAX_VALUE_BYTES`].
fn validate_size(value: &[u8]) -> Result<(), ClientError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(ClientError::InvalidInput(format!(
            "values are limited to {MAX_VALUE_BYTES} bytes (got {}); split large data into several records",
            value.len()
        )));
    }
    Ok(())
}

/// A `fields` collection takes JSON objects only.
fn check_fields(coll: &CollInfo, value: &[u8]) -> Result<(), ClientError> {
    if coll.policy != Policy::Fields {
        return Ok(());
    }
    let refuse = |what: &str| {
        ClientError::InvalidInput(format!(
            "collection {} uses the fields policy: {what}",
            crate::types::echo(&coll.name)
        ))
    };
    match serde_json::from_slice::<serde_json::Value>(value) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        // serde_json stops at 128 levels instead of overflowing the stack (BI-04).
        Err(e) if e.to_string().contains("recursion limit") => Err(refuse(
            "the value nests JSON deeper than 128 levels; flatten it",
        )),
        Err(e) if e.is_syntax() || e.is_eof() => Err(refuse(&format!(
            "the value is not valid JSON ({e}); write an object like {{\"field\": \"value\"}}"
        ))),
        _ => Err(refuse(
            "values must be JSON objects like {\"field\": \"value\"}",
        )),
    }
}
