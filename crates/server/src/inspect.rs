//! Read-only views of what the server stores, for operators and the demo.
//!
//! They show routing metadata and ciphertext sizes only: the server has nothing else.

use std::fmt::Write as _;
use std::path::Path;

use sealsync_proto::{BatchHeader, Sealed};

use crate::ServerError;
use crate::datadir::{self, DataDir};
use crate::store::SqliteStore;

/// Describes the most recently stored batch as the server holds it: account, blinded
/// collection id, author, sequence number, log index, the clear header fields and the
/// ciphertext size with its first bytes. Says so when no batch is stored.
pub fn sample_batch(data_dir: &Path) -> Result<String, ServerError> {
    let dir = DataDir::new(data_dir);
    dir.require_initialised()?;
    let store = SqliteStore::open(&dir.file(datadir::DB))?;
    let Some(b) = store.sample_batch_blocking()? else {
        return Ok("no batch stored yet".to_string());
    };
    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored for that reason.
    let _ = writeln!(out, "account        {}", b.account);
    let _ = writeln!(out, "collection id  {} (blinded)", b.collection);
    let _ = writeln!(out, "device         {}", b.device);
    let _ = writeln!(out, "seq            {}", b.seq);
    let _ = writeln!(out, "log index      {}", b.log_index);
    match sealsync_proto::decode::<Sealed>(&b.sealed) {
        Ok(sealed) => {
            if let Ok(h) = sealsync_proto::decode::<BatchHeader>(&sealed.header) {
                let _ = writeln!(out, "suite          {}", h.suite);
                let _ = writeln!(out, "key epoch      {}", h.key_epoch);
                let _ = writeln!(out, "hlc_max        {}", h.hlc_max);
            }
            let head: String = hex::encode(&sealed.ciphertext[..sealed.ciphertext.len().min(32)]);
            let _ = writeln!(
                out,
                "ciphertext     {} bytes: {head}...",
                sealed.ciphertext.len()
            );
            let _ = write!(out, "signature      {} bytes", sealed.signature.len());
        }
        Err(_) => {
            let _ = write!(out, "stored bytes   {} (undecodable)", b.sealed.len());
        }
    }
    Ok(out)
}
