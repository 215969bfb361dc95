//! `sealsync device enroll | approve | join | pending`: joining an account.
//!
//! `approve` prints the one-time code as the first line of standard output (flushed at
//! once) and waits; `join CODE` runs on the new device meanwhile. Both exit 0 once the new
//! device is trusted. The recovery secret is never taken from the command line: it comes
//! from `SEALSYNC_RECOVERY`, a prompt without echo on a terminal, or standard input.

use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use sealsync_client::{EnrollError, EnrollOptions, PairingError, Replica};
use zeroize::Zeroizing;

use crate::device_cmd::open;

/// Environment variable holding the recovery secret for `enroll --recovery`.
const RECOVERY_ENV: &str = "SEALSYNC_RECOVERY";

fn timeout(text: &str) -> anyhow::Result<Duration> {
    let d = sealsync_server::parse_duration(text).map_err(|_| {
        anyhow::anyhow!("bad --timeout {text:?}: write a number and a unit, e.g. 90s or 10m")
    })?;
    if d.is_zero() {
        bail!("bad --timeout {text:?}: it must be longer than 0s");
    }
    Ok(d)
}

/// One secret line: from a prompt without echo when standard input is a terminal, else
/// the first line of standard input (at most 4 KiB). `what` names it in errors; `missing`
/// is the error when the line is empty.
fn read_secret_line(prompt: &str, what: &str, missing: &str) -> anyhow::Result<Zeroizing<String>> {
    if std::io::stdin().is_terminal() {
        let text = rpassword::prompt_password(prompt)
            .with_context(|| format!("cannot read the {what} from the terminal"))?;
        return Ok(Zeroizing::new(text));
    }
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .take(4096)
        .read_line(&mut line)
        .with_context(|| format!("cannot read the {what} from standard input"))?;
    if line.trim().is_empty() {
        bail!("{missing}");
    }
    Ok(line)
}

/// The recovery secret from the environment, a silent prompt, or standard input.
fn read_recovery_secret() -> anyhow::Result<Zeroizing<String>> {
    if let Ok(v) = std::env::var(RECOVERY_ENV) {
        return Ok(Zeroizing::new(v));
    }
    read_secret_line(
        "recovery secret: ",
        "recovery secret",
        &format!("no recovery secret: set {RECOVERY_ENV} or write it on standard input"),
    )
}

/// An enrollment error in CLI terms (the library's messages name no flags).
fn enroll_error(e: EnrollError) -> anyhow::Error {
    match e {
        EnrollError::NoSuchAccount { account } => anyhow::anyhow!(
            "the server says account {account:?} has no devices; if this is the first device of a new account, pass --new-account; otherwise the server may be misbehaving"
        ),
        EnrollError::AccountExists { account } => anyhow::anyhow!(
            "account {account:?} already has devices: enroll without --new-account, then pair with a trusted device (approve there, join here)"
        ),
        other => anyhow::Error::new(other).context("enrollment failed"),
    }
}

pub(crate) fn enroll(
    home: &Path,
    bundle: &str,
    name: String,
    recovery: Option<Option<String>>,
    new_account: bool,
) -> anyhow::Result<()> {
    let recovery = match recovery {
        None => None,
        Some(None) => Some(read_recovery_secret()?),
        Some(Some(_)) => bail!(
            "--recovery takes no value: a secret on the command line shows in ps and shell history; set {RECOVERY_ENV} or type it at the prompt"
        ),
    };
    let rt = crate::runtime()?;
    let enrolled = rt
        .block_on(Replica::enroll(
            home,
            bundle.trim(),
            EnrollOptions::new(name)
                .recovery_opt(recovery.as_ref().map(|s| s.trim().to_string()))
                .new_account(new_account)
                .open(crate::device_cmd::open_options()),
        ))
        .map_err(enroll_error)?;
    println!("device id: {}", enrolled.device_id);
    if let Some(secret) = &enrolled.recovery_secret {
        println!("state: trusted (first device of the account)");
        println!("recovery secret: {}", secret.as_str());
        println!(
            "write the recovery secret down now: it is shown only once and lets a new device join without approval"
        );
    } else if enrolled.state == sealsync_client::DeviceState::Pending {
        println!("state: pending");
        println!(
            "on a trusted device run: sealsync device --home DIR approve {}",
            enrolled.device_id
        );
        println!(
            "then here: sealsync device --home {} join (type the code it prints at the prompt)",
            home.display()
        );
    } else {
        println!("state: trusted");
    }
    Ok(())
}

pub(crate) fn approve(home: &Path, device_id: &str, wait: &str) -> anyhow::Result<()> {
    let wait = timeout(wait)?;
    let device_id: sealsync_client::DeviceId = device_id.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "approval failed: {device_id:?} is not a device id (32 hex digits): give the id that `enroll` printed on the new device, or see `sealsync device --home DIR pending`"
        )
    })?;
    let replica = open(home)?;
    let rt = crate::runtime()?;
    rt.block_on(async {
        let approval = replica
            .begin_approval(device_id, wait)
            .await
            .context("approval failed")?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", approval.code()).context("cannot write to standard output")?;
            out.flush().context("cannot write to standard output")?;
            // A hint only: a reader that took the first line and closed the pipe is fine.
            let _ = writeln!(
                out,
                "on the new device run: sealsync device --home DIR join, and type the code at its prompt (waiting up to {}s)",
                wait.as_secs()
            );
            let _ = out.flush();
        }
        replica
            .finish_approval(approval)
            .await
            .map_err(|e| match e {
                e @ PairingError::Unconfirmed { .. } => anyhow::anyhow!(
                    "approval not confirmed: {e}: run `sealsync device --home DIR sync` on the new device, then check its `status`"
                ),
                e => anyhow::Error::new(e).context("approval failed"),
            })
    })?;
    println!("approved {device_id}: it is trusted");
    Ok(())
}

/// The pairing code from a prompt on a terminal, else the first line of standard input.
fn read_code() -> anyhow::Result<Zeroizing<String>> {
    read_secret_line(
        "pairing code (shown by approve): ",
        "pairing code",
        "no pairing code: give the code approve printed, or write it on standard input",
    )
}

pub(crate) fn join(home: &Path, code: Option<&str>, wait: &str) -> anyhow::Result<()> {
    let wait = timeout(wait)?;
    let replica = open(home)?;
    let code = match code {
        Some(c) if c != "-" => Zeroizing::new(c.to_string()),
        _ => read_code()?,
    };
    let rt = crate::runtime()?;
    rt.block_on(replica.join(code.trim(), wait))
        .context("pairing failed")?;
    println!("paired: this device is trusted");
    Ok(())
}

pub(crate) fn pending(home: &Path) -> anyhow::Result<()> {
    let replica = open(home)?;
    let rt = crate::runtime()?;
    let pending = rt
        .block_on(replica.pending_devices())
        .context("cannot list pending devices")?;
    if pending.is_empty() {
        println!("no devices waiting for approval");
    }
    for device in pending {
        println!("{}\t{}", device.device_id, device.name);
    }
    Ok(())
}
