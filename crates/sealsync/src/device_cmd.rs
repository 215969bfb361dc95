//! `sealsync device ...`: one device's commands over `sealsync_client::Replica`.
//!
//! Only `enroll`, `approve`, `join`, `pending` and `sync` talk to the server (the first four
//! in `pairing_cmd`); everything else works offline on the local replica.

use std::io::{Read as _, Write as _};

use anyhow::{Context as _, bail};
use sealsync_client::Replica;
use sealsync_core::Policy;

use crate::Exit;
use crate::cli::{CollectionCommand, DeviceArgs, DeviceCommand};

pub(crate) fn run(args: DeviceArgs) -> anyhow::Result<()> {
    let home = args.home;
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
        DeviceCommand::Join { code, timeout } => crate::pairing_cmd::join(&home, &code, &timeout),
        DeviceCommand::Pending => crate::pairing_cmd::pending(&home),
        DeviceCommand::Put {
            collection,
            key,
            value,
            file,
        } => {
            let bytes = match (value, file) {
                (Some(v), _) => v.into_bytes(),
                (None, Some(path)) => std::fs::read(&path)
                    .with_context(|| format!("cannot read value file {}", path.display()))?,
                (None, None) => {
                    let mut buf = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut buf)
                        .context("cannot read the value from standard input")?;
                    buf
                }
            };
            let mut replica = open(&home)?;
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
                    "no record {key:?} in collection {collection:?} (never written here, deleted, or not synced yet)"
                ))
                .into()),
            }
        }
        DeviceCommand::Delete { collection, key } => {
            let mut replica = open(&home)?;
            replica.delete(&collection, &key).context("delete failed")?;
            Ok(())
        }
        DeviceCommand::List { collection } => {
            let replica = open(&home)?;
            let mut out = std::io::stdout().lock();
            for (key, value) in replica.list(&collection).context("list failed")? {
                writeln!(out, "{key}\t{}", String::from_utf8_lossy(&value))
                    .context("cannot write to standard output")?;
            }
            Ok(())
        }
        DeviceCommand::History { collection, key } => {
            let replica = open(&home)?;
            let entries = replica
                .history(&collection, &key)
                .context("history failed")?;
            if entries.is_empty() {
                return Err(Exit::not_found(format!(
                    "no versions of {key:?} in collection {collection:?}"
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
            let mut replica = open(&home)?;
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
            let mut replica = open(&home)?;
            replica
                .resolve(&collection, &key, value.as_bytes())
                .context("resolve failed")?;
            Ok(())
        }
        DeviceCommand::Sync => {
            let mut replica = open(&home)?;
            let rt = crate::runtime()?;
            let report = rt.block_on(replica.sync()).context("sync failed")?;
            println!("{report}");
            if let Some(first) = report.errors.first() {
                bail!(
                    "sync refused {} object(s) that failed verification, local data unchanged for them; first: {} in {} ({} check)",
                    report.errors.len(),
                    first.message,
                    first.collection,
                    first.check
                );
            }
            Ok(())
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

pub(crate) fn open(home: &std::path::Path) -> anyhow::Result<Replica> {
    if !home.exists() {
        bail!(
            "no device in {}: enroll first with `sealsync device --home {} enroll BUNDLE --name NAME`",
            home.display(),
            home.display()
        );
    }
    Replica::open(home).with_context(|| format!("cannot open the device in {}", home.display()))
}
