//! The `fields` policy: per-field last-writer-wins over JSON objects, with canonical JSON
//! output and per-version explanations.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Version;
use crate::ids::VersionId;

/// The record as the fold has built it so far.
pub(super) enum FieldState {
    /// Never written, or deleted.
    Absent,
    /// field -> (value, index of the version that set it)
    Object(BTreeMap<String, (Value, usize)>),
    /// index of the version whose non-object value replaced the record
    Opaque(usize),
}

/// Result of folding a record's versions in id order.
pub(super) struct FieldFold {
    /// The final record.
    pub(super) state: FieldState,
    /// For each version: the later version that cleared or replaced what it wrote.
    cleared_by: Vec<Option<usize>>,
}

/// Folds sorted, deduplicated versions: an object put sets its fields, any other put
/// replaces the record, a delete clears it.
pub(super) fn fold_fields(vs: &[&Version]) -> FieldFold {
    let mut state = FieldState::Absent;
    let mut cleared_by = vec![None; vs.len()];
    let mut pending_delete: Option<usize> = None;
    for (i, v) in vs.iter().enumerate() {
        if let Some(d) = pending_delete.take() {
            cleared_by[d] = Some(i);
        }
        let object = if v.deleted {
            None
        } else {
            match serde_json::from_slice::<Value>(&v.value) {
                Ok(Value::Object(m)) => Some(m),
                _ => None,
            }
        };
        match (&mut state, object) {
            (FieldState::Object(map), Some(obj)) => {
                for (k, val) in obj {
                    map.insert(k, (val, i));
                }
            }
            (_, Some(obj)) => {
                if let FieldState::Opaque(j) = state {
                    cleared_by[j] = Some(i);
                }
                state = FieldState::Object(obj.into_iter().map(|(k, val)| (k, (val, i))).collect());
            }
            (_, None) => {
                match &state {
                    FieldState::Object(map) => {
                        for (_, j) in map.values() {
                            cleared_by[*j].get_or_insert(i);
                        }
                    }
                    FieldState::Opaque(j) => cleared_by[*j] = Some(i),
                    FieldState::Absent => {}
                }
                state = if v.deleted {
                    FieldState::Absent
                } else {
                    FieldState::Opaque(i)
                };
                if v.deleted {
                    pending_delete = Some(i);
                }
            }
        }
    }
    FieldFold { state, cleared_by }
}

/// Canonical JSON of an object: keys sorted (byte order), no whitespace, nested objects too.
pub(super) fn object_json(map: &BTreeMap<String, (Value, usize)>) -> String {
    let mut out = String::from("{");
    for (n, (k, (v, _))) in map.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        push_json_string(&mut out, k);
        out.push(':');
        push_canonical(&mut out, v);
    }
    out.push('}');
    out
}

/// Writes `v` as canonical JSON. Object keys are sorted here rather than relying on the map's
/// iteration order, which changes if serde_json's `preserve_order` feature is enabled by any
/// crate in the build.
fn push_canonical(out: &mut String, v: &Value) {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (n, (k, val)) in entries.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                push_json_string(out, k);
                out.push(':');
                push_canonical(out, val);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (n, val) in a.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                push_canonical(out, val);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn push_json_string(out: &mut String, s: &str) {
    out.push_str(&Value::String(s.to_owned()).to_string());
}

/// One explanation per version (same order as `vs`) for the `fields` policy.
pub(super) fn explain_fields(vs: &[&Version]) -> Vec<(VersionId, String)> {
    let fold = fold_fields(vs);
    let mut owned: Vec<Vec<&str>> = vec![Vec::new(); vs.len()];
    if let FieldState::Object(map) = &fold.state {
        for (k, (_, i)) in map {
            owned[*i].push(k);
        }
    }
    vs.iter()
        .enumerate()
        .map(|(i, v)| {
            let cleared = fold.cleared_by[i].map(|j| vs[j].id);
            let text = match (&fold.state, cleared) {
                (FieldState::Absent, None) if v.deleted => "won: deleted (latest)".to_owned(),
                (FieldState::Opaque(j), None) if *j == i => {
                    "won: replaces the record (not a JSON object)".to_owned()
                }
                (_, None) if !owned[i].is_empty() => {
                    format!("merged fields {}", owned[i].join(","))
                }
                (FieldState::Object(_), None) if matches!(json_object_len(&v.value), Some(0)) => {
                    "merged fields (none)".to_owned()
                }
                (_, None) => "fields overwritten by later versions".to_owned(),
                (_, Some(by)) if v.deleted => format!("overridden by {by}"),
                (_, Some(by)) => format!("cleared by {by}"),
            };
            (v.id, text)
        })
        .collect()
}

fn json_object_len(bytes: &[u8]) -> Option<usize> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Some(m.len()),
        _ => None,
    }
}
