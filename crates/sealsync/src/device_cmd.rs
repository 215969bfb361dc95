//! `sealsync device ...`: one device's commands over `sealsync_client::Replica`.
//!
//! Only `enroll`, `approve`, `join`, `pending` and `sync` talk to the server (the first four
//! in `pairing_cmd`); everything else works offline on the local replica.

use std::io::{Read as _, Write as _};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use sealsync_client::{MAX_VALUE_BYTES, OpenError, ReadError, Replica, ScanOptions};
use sealsync_core::Policy;

use crate::Exit;
use crate::cli::{CollectionCommand, DeviceArgs, DeviceCommand};

pub(crate) fn run(args: DeviceArgs) -> anyhow::Result<()> {
    let home = args.home;
    if home.exists() && !home.is_dir() {
        bail!(
            "--home {} is a file, not a directory: point --home at the device's own directory (a new one for enroll, the one given at enrollment otherwise)",
            home.display()
        );
    }
    match args.command {
        DeviceCommand::Enroll {
            bundle,
            name,
            recovery,
            new_account,
        } => crate::pairing_cmd::enroll(&home, &bundle, name, recovery, new_account),
        DeviceCommand::Approve { device_id, timeout } => {
            crate::pairing_cmd::approve(&home, &device_id, &timeout)
        }
        DeviceCommand::Join { code, timeout } => {
            crate::pairing_cmd::join(&home, code.as_deref(), &timeout)
        }
        DeviceCommand::Pending => crate::pairing_cmd::pending(&home),
        DeviceCommand::Put {
            collection,
            key,
            value,
            file,
        } => {
            let bytes = match (value, file) {
                (Some(v), _) => v.into_bytes(),
                (None, Some(path)) => {
                    let f = std::fs::File::open(&path)
                        .with_context(|| format!("cannot read value file {}", path.display()))?;
                    read_value(f, &format!("file {}", path.display()))?
                }
                (None, None) => read_value(std::io::stdin().lock(), "standard input")?,
            };
            let replica = open(&home)?;
            replica
                .put(&collection, &key, &bytes)
                .context("put failed")?;
            Ok(())
        }
        DeviceCommand::Get { collection, key } => {
            let replica = open(&home)?;
            match replica.get(&collection, &key).context("get failed")? {
                Some(value) => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&value).context("cannot write to standard output")?;
                    if !value.ends_with(b"\n") && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                        out.write_all(b"\n").context("cannot write to standard output")?;
                    }
                    Ok(())
                }
                None => Err(Exit::not_found(format!(
                    "no record {} in collection {} (never written here, deleted, or not synced yet)",
                    echo(&key),
                    echo(&collection)
                ))
                .into()),
            }
        }
        DeviceCommand::Delete { collection, key } => {
            let replica = open(&home)?;
            match replica.delete(&collection, &key) {
                Ok(Some(_)) => Ok(()),
                // README: exit 1 when the record asked for does not exist. The library's
                // delete is idempotent; the CLI still tells a script that nothing was there.
                Ok(None) => Err(Exit::not_found(format!(
                    "no record {key:?} in collection {collection:?} (never written here, already deleted, or not synced yet): nothing to delete"
                ))
                .into()),
                Err(e) => Err(anyhow::Error::new(e).context("delete failed")),
            }
        }
        DeviceCommand::List { collection, json } => {
            let replica = open(&home)?;
            let records = replica.list(&collection).context("list failed")?;
            print_records(&records, json)
        }
        DeviceCommand::Scan {
            collection,
            prefix,
            start,
            end,
            limit,
            reverse,
            json,
        } => {
            let mut opts = ScanOptions::new().reverse(reverse);
            if let Some(p) = prefix {
                opts = opts.prefix(p);
            }
            if let Some(k) = start {
                opts = opts.start(k);
            }
            if let Some(k) = end {
                opts = opts.end(k);
            }
            if let Some(n) = limit {
                opts = opts.limit(n);
            }
            let replica = open(&home)?;
            let records = replica.scan(&collection, opts).context("scan failed")?;
            print_records(&records, json)
        }
        DeviceCommand::Find {
            collection,
            field,
            value,
            json,
        } => {
            let value = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
            let replica = open(&home)?;
            let records = replica.find(&collection, &field, &value).map_err(|e| match e {
                e @ ReadError::NoIndex { .. } => anyhow::anyhow!(
                    "find failed: {e}: run `sealsync device --home {} index {collection} {field}`",
                    home.display()
                ),
                e => anyhow::Error::new(e).context("find failed"),
            })?;
            print_records(&records, json)
        }
        DeviceCommand::Index { collection, field } => {
            let replica = open(&home)?;
            replica
                .create_index(&collection, &field)
                .context("cannot create the index")?;
            println!(
                "indexed field {} of collection {}",
                echo(&field),
                echo(&collection)
            );
            Ok(())
        }
        DeviceCommand::History { collection, key } => {
            let replica = open(&home)?;
            let entries = replica
                .history(&collection, &key)
                .context("history failed")?;
            if entries.is_empty() {
                return Err(Exit::not_found(format!(
                    "no versions of {} in collection {}",
                    echo(&key),
                    echo(&collection)
                ))
                .into());
            }
            for entry in entries {
                println!("{entry}");
            }
            Ok(())
        }
        DeviceCommand::Collection(CollectionCommand::Create { name, policy }) => {
            let policy: Policy = policy
                .parse()
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("bad --policy")?;
            let replica = open(&home)?;
            replica
                .create_collection(&name, policy)
                .context("cannot create collection")?;
            println!("created collection {name} with policy {policy}");
            Ok(())
        }
        DeviceCommand::Conflicts { collection } => {
            let replica = open(&home)?;
            for conflict in replica.conflicts(&collection).context("conflicts failed")? {
                println!("{conflict}");
            }
            Ok(())
        }
        DeviceCommand::Resolve {
            collection,
            key,
            value,
        } => {
            let replica = open(&home)?;
            replica
                .resolve(&collection, &key, value.as_bytes())
                .context("resolve failed")?;
            Ok(())
        }
        DeviceCommand::Sync { watch, json, quiet } => {
            crate::sync_cmd::run(&home, crate::sync_cmd::SyncArgs { watch, json, quiet })
        }
        DeviceCommand::Status { json } => {
            let replica = open(&home)?;
            let status = replica.status().context("status failed")?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&status).context("cannot encode status")?
                );
            } else {
                println!("{status}");
            }
            Ok(())
        }
    }
}

/// User input in a message: quoted, and cut to 64 bytes with its length when longer.
fn echo(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return format!("{s:?}");
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &s[..end], s.len())
}

/// Reads a value from `src` (a file or standard input), at most [`MAX_VALUE_BYTES`] + 1
/// bytes: a longer value is refused without reading the rest (`/dev/zero` never ends).
fn read_value(src: impl std::io::Read, what: &str) -> anyhow::Result<Vec<u8>> {
    let limit = MAX_VALUE_BYTES as u64;
    let mut buf = Vec::new();
    src.take(limit + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read the value from {what}"))?;
    if buf.len() as u64 > limit {
        bail!(
            "the value in {what} is larger than the limit of {MAX_VALUE_BYTES} bytes (1 MiB); split large data into several records"
        );
    }
    Ok(buf)
}

/// Prints records as `list` does: one `key<TAB>value` line each (escaped, see [`escape`]),
/// or with `json` one JSON array of [`list_json`] objects.
fn print_records(records: &[(String, Vec<u8>)], json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let items: Vec<serde_json::Value> = records
            .iter()
            .map(|(key, value)| list_json(key, value))
            .collect();
        serde_json::to_writer(&mut out, &items).context("cannot encode the list")?;
        writeln!(out).context("cannot write to standard output")?;
    } else {
        for (key, value) in records {
            writeln!(out, "{}\t{}", escape(key.as_bytes()), escape(value))
                .context("cannot write to standard output")?;
        }
    }
    Ok(())
}

/// One record of `list --json`: `{"key": K, "value": V}` for a UTF-8 value, else
/// `{"key": K, "value_base64": B}` (standard base64 with padding).
fn list_json(key: &str, value: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(value) {
        Ok(text) => serde_json::json!({ "key": key, "value": text }),
        Err(_) => serde_json::json!({
            "key": key,
            "value_base64": base64::engine::general_purpose::STANDARD.encode(value),
        }),
    }
}

/// The plain `list` format of a key or value: UTF-8 text with `\` as `\\`, TAB as `\t`,
/// newline as `\n`, carriage return as `\r`, and each byte of every other control character
/// and every byte that is not part of valid UTF-8 as `\xNN`. So one record is always one line and the
/// first TAB always ends the key.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let mut utf8 = [0; 4];
                    for b in c.encode_utf8(&mut utf8).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

pub(crate) fn open(home: &std::path::Path) -> anyhow::Result<Replica> {
    if !home.exists() {
        bail!(
            "no device in {}: enroll first with `sealsync device --home {} enroll BUNDLE --name NAME`",
            home.display(),
            home.display()
        );
    }
    let replica = Replica::open_with(home, open_options()).map_err(|e| {
        let hint = match e {
            OpenError::PassphraseRequired => format!(": set {PASSPHRASE_ENV} to it"),
            OpenError::WrongPassphrase(_) => format!(": check {PASSPHRASE_ENV}"),
            _ => String::new(),
        };
        anyhow::anyhow!("cannot open the device in {}: {e}{hint}", home.display())
    })?;
    if cfg!(debug_assertions)
        && let Some(skew) = std::env::var(CLOCK_SKEW_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
    {
        replica.set_clock_skew_for_tests(skew);
    }
    Ok(replica)
}

/// Environment variable holding the key store's passphrase: read at enrollment (the key
/// store is then protected by it) and at every open.
pub(crate) const PASSPHRASE_ENV: &str = "SEALSYNC_PASSPHRASE";

/// Test hook, not for users: when set to a number of ms (may be negative), every reading of
/// the system clock by the device opened by this process is moved by it, as `faketime`
/// would (so the CLI's tests need no extra package). Read only by debug builds (those
/// `cargo test` makes); a release build ignores it.
pub(crate) const CLOCK_SKEW_ENV: &str = "SEALSYNC_TEST_CLOCK_SKEW_MS";

/// The library's open options, with the passphrase from [`PASSPHRASE_ENV`].
pub(crate) fn open_options() -> sealsync_client::OpenOptions {
    let mut opts = sealsync_client::OpenOptions::new();
    if let Some(p) = std::env::var_os(PASSPHRASE_ENV)
        && !p.is_empty()
    {
        opts = opts.passphrase(p.to_string_lossy().into_owned());
    }
    opts
}
