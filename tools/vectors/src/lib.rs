//! Conformance test vectors for Sealsync protocol version 1, generated from the workspace's
//! own code (`sealsync-crypto`, `sealsync-core`, `sealsync-proto`).
//!
//! One module per family; each returns a [`Family`] that becomes `docs/vectors/<name>.json`.
//! Every vector has `inputs`, `intermediate` values and `outputs`, byte strings in lowercase
//! hex. Where `docs/protocol.md` gives a formula, the generator also builds the intermediate
//! bytes from that formula itself and asserts that the code's output matches, so a vector
//! file can only be written when the specification and the code agree.
//!
//! Where the code draws randomness (salts, the HPKE ephemeral key, SPAKE2 scalars), the
//! vectors use the code's explicit entry points with fixed values. To add a family, add a
//! module with a `family()` function and list it in [`families`]; then run
//! `cargo run -p vectors` and commit the new file.

use serde_json::{Value, json};

pub mod derivations;
pub mod encoding;
pub mod envelope;
pub mod pairing;
pub mod roster;
pub mod sealed;
pub mod signatures;
pub mod state;
pub mod watch;

/// One vector file.
#[derive(Debug)]
pub struct Family {
    /// File stem under `docs/vectors/`.
    pub name: &'static str,
    /// What the file covers and where the rules are specified.
    pub description: &'static str,
    /// The vectors.
    pub vectors: Vec<Value>,
}

impl Family {
    /// The file contents: pretty-printed JSON (keys sorted) and a final newline.
    pub fn render(&self) -> String {
        let doc = json!({
            "family": self.name,
            "description": self.description,
            "protocol": "sealsync v1 (docs/protocol.md)",
            "vectors": self.vectors,
        });
        let mut s = serde_json::to_string_pretty(&doc).expect("JSON values always serialise");
        s.push('\n');
        s
    }
}

/// Every family, in file-name order.
pub fn families() -> Vec<Family> {
    vec![
        derivations::family(),
        encoding::family(),
        envelope::family(),
        pairing::family(),
        roster::family(),
        sealed::family(),
        signatures::family(),
        state::family(),
        watch::family(),
    ]
}

/// Lowercase hex.
pub fn h(bytes: impl AsRef<[u8]>) -> String {
    hex::encode(bytes)
}

/// `n` bytes `start, start+1, ...` (wrapping): readable fixed inputs.
pub fn counting<const N: usize>(start: u8) -> [u8; N] {
    core::array::from_fn(|i| start.wrapping_add(i as u8))
}

/// `u32be(len(x)) || x`.
pub fn lp(x: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + x.len());
    sealsync_crypto::lp(&mut out, x);
    out
}

/// One vector object.
pub fn vector(name: &str, inputs: Value, intermediate: Value, outputs: Value) -> Value {
    json!({
        "name": name,
        "inputs": inputs,
        "intermediate": intermediate,
        "outputs": outputs,
    })
}
