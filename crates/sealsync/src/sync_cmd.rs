//! `sealsync device sync`: one sync (with a progress bar on a terminal), or with `--watch`
//! the library's sync driver until interrupted, printing one line (or one JSON object with
//! `--json`) per sync.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sealsync_client::{Replica, SyncOptions, SyncProgress, SyncReport, SyncStatus};

use crate::device_cmd::open;

/// How long a sync runs before its progress bar appears.
const BAR_AFTER: Duration = Duration::from_secs(1);

/// Options of `device sync`.
pub(crate) struct SyncArgs {
    pub(crate) watch: bool,
    pub(crate) json: bool,
    pub(crate) quiet: bool,
}

pub(crate) fn run(home: &std::path::Path, args: SyncArgs) -> anyhow::Result<()> {
    let replica = open(home)?;
    let rt = crate::runtime()?;
    if args.watch {
        return rt.block_on(watch(&replica, args.json));
    }
    let show_bar = !args.quiet && std::io::stderr().is_terminal();
    let report = rt
        .block_on(with_progress(&replica, show_bar))
        .context("sync failed")?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).context("cannot encode the report")?
        );
    } else if !args.quiet {
        println!("{report}");
    }
    check_report(&replica, &report)
}

/// A sync that is not done: pending device, or refused objects.
fn check_report(replica: &Replica, report: &SyncReport) -> anyhow::Result<()> {
    if report.still_pending {
        bail!(
            "this device is pending approval; nothing was synced: run `approve {}` on a trusted device of the account and `join CODE` here",
            replica.device_id()
        );
    }
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

/// Runs one sync; on a terminal, shows a bar once it has run for [`BAR_AFTER`].
async fn with_progress(
    replica: &Replica,
    show_bar: bool,
) -> Result<SyncReport, sealsync_client::SyncError> {
    let sync = replica.sync();
    if !show_bar {
        return sync.await;
    }
    tokio::pin!(sync);
    let mut progress = replica.progress();
    let started = tokio::time::Instant::now();
    let mut bar: Option<ProgressBar> = None;
    let result = loop {
        tokio::select! {
            r = &mut sync => break r,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            Ok(()) = progress.changed() => {}
        }
        if bar.is_none() && started.elapsed() >= BAR_AFTER {
            bar = Some(new_bar());
        }
        if let Some(b) = &bar {
            draw(b, &progress.borrow());
        }
    };
    if let Some(b) = bar {
        draw(&b, &progress.borrow());
        b.finish_and_clear();
    }
    result
}

fn new_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} batches  {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn draw(bar: &ProgressBar, p: &SyncProgress) {
    bar.set_length(p.total.max(p.done));
    bar.set_position(p.done);
    bar.set_message(progress_message(p));
}

/// `↑ 1200/5000 records 1.2 MiB/4.9 MiB  ↓ 300 records 310 KiB` (pull totals are unknown).
pub(crate) fn progress_message(p: &SyncProgress) -> String {
    let up = match (p.pushed.total_records, p.pushed.total_bytes) {
        (Some(r), Some(b)) => format!(
            "up {}/{} records {}/{}",
            p.pushed.records,
            r,
            indicatif::BinaryBytes(p.pushed.bytes),
            indicatif::BinaryBytes(b)
        ),
        _ => format!(
            "up {} records {}",
            p.pushed.records,
            indicatif::BinaryBytes(p.pushed.bytes)
        ),
    };
    format!(
        "{up}  down {} records {}{}",
        p.pulled.records,
        indicatif::BinaryBytes(p.pulled.bytes),
        if p.pulling { " (more to come)" } else { "" }
    )
}

/// Runs the driver until Ctrl-C (or a non-retryable error), one line per sync.
async fn watch(replica: &Replica, json: bool) -> anyhow::Result<()> {
    let driver = replica
        .start_sync(SyncOptions::new())
        .context("cannot start the sync driver")?;
    let mut status = driver.status();
    let mut printed = 0u64;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            _ = &mut interrupted => break,
            changed = status.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
        let s = status.borrow_and_update().clone();
        if s.syncs > printed && !s.syncing {
            printed = s.syncs;
            print_line(&s, json)?;
        }
        if s.stopped {
            let why = s
                .last_error
                .as_ref()
                .map_or_else(|| "stopped".to_string(), |e| e.to_string());
            bail!("sync stopped: {why}");
        }
    }
    driver.stop().await;
    Ok(())
}

fn print_line(s: &SyncStatus, json: bool) -> anyhow::Result<()> {
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let line = match (&s.last_error, &s.last_report) {
        (Some(e), _) => {
            let retry_in = s
                .retry_at
                .and_then(|t| t.duration_since(SystemTime::now()).ok())
                .map(|d| d.as_secs_f32());
            if json {
                serde_json::json!({
                    "at_ms": at,
                    "ok": false,
                    "error": e.to_string(),
                    "retryable": e.is_retryable(),
                    "retry_in_s": retry_in,
                    "pending_batches": s.pending_batches,
                    "pending_edits": s.pending_edits,
                })
                .to_string()
            } else {
                match retry_in {
                    Some(r) => format!("sync failed: {e}; retrying in {r:.1} s"),
                    None => format!("sync failed: {e}"),
                }
            }
        }
        (None, Some(report)) => {
            // A sync that refused objects (failed verification, a refused push) is not ok,
            // though it went on with the rest: say so, as a one-shot `sync` does.
            let ok = report.errors.is_empty();
            if json {
                serde_json::json!({
                    "at_ms": at,
                    "ok": ok,
                    "report": report,
                    "pending_batches": s.pending_batches,
                    "pending_edits": s.pending_edits,
                })
                .to_string()
            } else if let Some(first) = report.errors.first() {
                format!(
                    "sync refused {} object(s), local data unchanged for them; first: {} in {} ({} check); the rest: {report}",
                    report.errors.len(),
                    first.message,
                    first.collection,
                    first.check
                )
            } else {
                format!("synced: {report}; {} records changed", report.changed.len())
            }
        }
        (None, None) => return Ok(()),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").context("cannot write to standard output")?;
    out.flush().context("cannot write to standard output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_message_shows_records_and_bytes_each_way() {
        let mut p = SyncProgress::default();
        p.pushed.records = 1200;
        p.pushed.bytes = 1536;
        p.pushed.total_records = Some(5000);
        p.pushed.total_bytes = Some(4 << 20);
        p.pulled.records = 300;
        p.pulled.bytes = 2048;
        p.pulling = true;
        assert_eq!(
            progress_message(&p),
            "up 1200/5000 records 1.50 KiB/4.00 MiB  down 300 records 2.00 KiB (more to come)"
        );
    }
}
