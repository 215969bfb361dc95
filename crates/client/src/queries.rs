//! The engine's queries: key scans and JSON field indexes (see `crate::query` for what the
//! local database holds for them).

use crate::Core;
use crate::error::ClientError;
use crate::query::{ScanOptions, validate_field};
use crate::store::validate_collection_name;

impl Core {
    /// Live records of `collection` selected by `opts` (see [`ScanOptions`]); empty for a
    /// collection this device does not know. Decrypts only the records it returns.
    pub(crate) fn scan(
        &self,
        collection: &str,
        opts: &ScanOptions,
    ) -> Result<Vec<(String, Vec<u8>)>, ClientError> {
        match self.store.collection(collection)? {
            Some(c) => self.store.scan(&c, opts),
            None => Ok(Vec::new()),
        }
    }

    /// Creates the index on JSON `field` of `collection` and builds it from the live
    /// records, in one transaction; does nothing if it exists. The collection need not
    /// exist yet (it is not created).
    pub(crate) fn create_index(
        &mut self,
        collection: &str,
        field: &str,
    ) -> Result<(), ClientError> {
        self.refresh()?;
        validate_collection_name(collection)?;
        validate_field(field)?;
        self.store.create_index(collection, field)?;
        Ok(())
    }

    /// Live records of `collection` whose JSON `field` equals `value`, in key order;
    /// [`ClientError::NoIndex`] if the field has no index.
    pub(crate) fn find(
        &self,
        collection: &str,
        field: &str,
        value: &serde_json::Value,
    ) -> Result<Vec<(String, Vec<u8>)>, ClientError> {
        self.store.find(collection, field, value)
    }
}
