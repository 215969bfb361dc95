//! Queries over a collection's live records: key scans ([`ScanOptions`],
//! [`crate::Replica::scan`]) and JSON field indexes ([`crate::Replica::create_index`],
//! [`crate::Replica::find`]).
//!
//! # What the local database holds, and why scans run in SQL
//!
//! Record keys and collection names are stored in clear in the local database (the
//! threat model lists this as a known gap of CD-09: only values and key material are
//! encrypted at rest). A scan therefore adds nothing to what the database holds: prefix,
//! range, order and limit are pushed into SQLite over the `records (coll, key)` primary key,
//! and only the rows the scan returns are read and decrypted. Keys compare as their UTF-8
//! bytes, the order of [`crate::Replica::list`] (and of Rust's `str`). Should record keys
//! ever be encrypted at rest, scans would need a sorted key index in a protected form
//! instead; the API does not depend on how the order is found.
//!
//! # Field indexes
//!
//! Values are encrypted at rest, and an index must not undo that: a field index stores, per
//! live record whose value is a JSON object holding the field, only a *term*
//! `HMAC-SHA256(index key, lp(collection) || lp(field) || lp(canonical JSON of the value))`
//! and the record's key. The index key is derived from the local storage key with the
//! crypto crate's HKDF (`sealsync_crypto::local_index_key`), so a copied database file alone
//! shows no field value. It does show which records share a value of an indexed field
//! (equal terms), and how many: the price of an equality index. Field names of indexes are
//! stored in clear, like collection names.
//!
//! The canonical JSON of a value is its compact encoding with object members sorted by
//! name; `find` matches what `serde_json::Value` equality matches (so `1` and `1.0` are
//! different values, as are `"1"` and `1`). Only top-level fields of JSON objects are
//! indexed; an array is one value (its elements are not indexed one by one).
//!
//! Terms are written in the same SQLite transaction as every change of a live record:
//! local puts, deletes and resolutions, pulled and adopted batches, re-stamping and policy
//! changes all go through the store's one apply path. `find` decrypts the records the index
//! names and returns only those whose field really holds the value (a term written into the
//! database by someone without the key cannot add a record to the answer).

use std::ops::Bound;

/// What [`crate::Replica::scan`] returns: live records whose key has [`prefix`], lies in
/// [`start`]..[`end`], at most [`limit`] of them, in key order (descending if [`reverse`]).
/// The default scans the whole collection in key order, like [`crate::Replica::list`].
///
/// ```
/// # use sealsync_client::ScanOptions;
/// let opts = ScanOptions::new().prefix("user/").start("user/m").limit(10).reverse(true);
/// assert_eq!(opts.limit, Some(10));
/// ```
///
/// [`prefix`]: ScanOptions::prefix
/// [`start`]: ScanOptions::start
/// [`end`]: ScanOptions::end
/// [`limit`]: ScanOptions::limit
/// [`reverse`]: ScanOptions::reverse
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanOptions {
    /// Only keys starting with this string (`None`: any key).
    pub prefix: Option<String>,
    /// Lower bound of the keys (`Unbounded`: from the first key).
    pub start: Bound<String>,
    /// Upper bound of the keys (`Unbounded`: to the last key).
    pub end: Bound<String>,
    /// At most this many records (`None`: all). With [`ScanOptions::reverse`], the last ones.
    pub limit: Option<usize>,
    /// Descending key order: the scan starts at the upper end.
    pub reverse: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            prefix: None,
            start: Bound::Unbounded,
            end: Bound::Unbounded,
            limit: None,
            reverse: false,
        }
    }
}

impl ScanOptions {
    /// The whole collection in key order (same as `ScanOptions::default()`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Only keys starting with `prefix`.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Keys from `key` on, `key` included.
    #[must_use]
    pub fn start(mut self, key: impl Into<String>) -> Self {
        self.start = Bound::Included(key.into());
        self
    }

    /// Keys after `key`, `key` excluded (for the next page after a page that ended at
    /// `key`).
    #[must_use]
    pub fn start_after(mut self, key: impl Into<String>) -> Self {
        self.start = Bound::Excluded(key.into());
        self
    }

    /// Keys before `key`, `key` excluded.
    #[must_use]
    pub fn end(mut self, key: impl Into<String>) -> Self {
        self.end = Bound::Excluded(key.into());
        self
    }

    /// Keys up to `key`, `key` included.
    #[must_use]
    pub fn end_inclusive(mut self, key: impl Into<String>) -> Self {
        self.end = Bound::Included(key.into());
        self
    }

    /// Both bounds at once.
    #[must_use]
    pub fn range(mut self, start: Bound<String>, end: Bound<String>) -> Self {
        self.start = start;
        self.end = end;
        self
    }

    /// At most `n` records.
    #[must_use]
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Descending key order when `reverse` is true.
    #[must_use]
    pub fn reverse(mut self, reverse: bool) -> Self {
        self.reverse = reverse;
        self
    }

    /// Whether `key` is selected by the prefix and the bounds (the limit aside).
    pub fn matches(&self, key: &str) -> bool {
        let prefix = self.prefix.as_deref().is_none_or(|p| key.starts_with(p));
        let start = match &self.start {
            Bound::Included(s) => key >= s.as_str(),
            Bound::Excluded(s) => key > s.as_str(),
            Bound::Unbounded => true,
        };
        let end = match &self.end {
            Bound::Included(e) => key <= e.as_str(),
            Bound::Excluded(e) => key < e.as_str(),
            Bound::Unbounded => true,
        };
        prefix && start && end
    }
}

/// The smallest string above every string that starts with `prefix`, if any: `prefix` with
/// its last character replaced by the next one (dropping trailing `char::MAX`es first).
/// UTF-8 byte order is code point order, so this is also the bound in SQLite's order.
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{d7ff}' => Some('\u{e000}'),
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Longest JSON field name an index accepts, in bytes.
pub(crate) const MAX_FIELD_BYTES: usize = 256;

/// Field names of indexes: 1 to [`MAX_FIELD_BYTES`] bytes without control characters.
pub(crate) fn validate_field(field: &str) -> Result<(), crate::error::ClientError> {
    if field.is_empty() || field.len() > MAX_FIELD_BYTES || field.chars().any(char::is_control) {
        return Err(crate::error::ClientError::InvalidInput(format!(
            "invalid field name {}: use 1 to {MAX_FIELD_BYTES} bytes without control characters",
            crate::types::echo(field)
        )));
    }
    Ok(())
}

/// The canonical JSON of an indexed value: compact, object members sorted by name (what
/// `serde_json::Value` holds without its `preserve_order` feature), and `-0.0` as `0.0`
/// (they are equal values).
pub(crate) fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    fn normalize(v: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::Number(n) if n.as_f64() == Some(0.0) && n.is_f64() => Value::from(0.0),
            Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
            Value::Object(o) => {
                let mut sorted: Vec<(&String, &Value)> = o.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    sorted
                        .into_iter()
                        .map(|(k, v)| (k.clone(), normalize(v)))
                        .collect(),
                )
            }
            other => other.clone(),
        }
    }
    // Invariant: serialising a `Value` to memory cannot fail (its keys are strings).
    serde_json::to_vec(&normalize(value)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_string() {
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_end("a\u{d7ff}").as_deref(), Some("a\u{e000}"));
        assert_eq!(prefix_end("a\u{10ffff}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{10ffff}"), None);
        assert_eq!(prefix_end(""), None);
    }

    #[test]
    fn matches_follows_prefix_and_bounds() {
        let o = ScanOptions::new().prefix("a").start("ab").end("ad");
        assert!(!o.matches("aa"));
        assert!(o.matches("ab"));
        assert!(o.matches("acz"));
        assert!(!o.matches("ad"));
        assert!(!o.matches("b"));
        let o = ScanOptions::new().start_after("b").end_inclusive("c");
        assert!(!o.matches("b") && o.matches("b0") && o.matches("c") && !o.matches("c0"));
    }

    #[test]
    fn canonical_json_sorts_members_and_zero() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":[-0.0,{"y":1,"x":2}]}"#).unwrap();
        assert_eq!(canonical_json(&v), br#"{"a":[0.0,{"x":2,"y":1}],"b":1}"#);
    }
}
