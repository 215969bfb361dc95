//! `sealsync device sync --watch` and the one-shot sync's output modes.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::cli_kit::{BIN, ok};
use crate::cli_ux::one_device;

/// The `sync --watch --json` child, killed on drop.
struct Watcher(std::process::Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads JSON lines until one satisfies `f` (20 s at most).
fn until(lines: &mpsc::Receiver<String>, what: &str, f: impl Fn(&serde_json::Value) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line showing {what}"));
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("--json printed a line that is not JSON ({e}): {line}"));
        if f(&v) {
            return;
        }
    }
}

#[test]
fn sync_watch_picks_up_a_write_from_another_process() {
    let (_tmp, _server, _data, home) = one_device();
    let mut child = Command::new(BIN)
        .args(["device", "--home", &home, "sync", "--watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sync --watch");
    let stdout = child.stdout.take().expect("stdout");
    let _watcher = Watcher(child);
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    until(&lines, "the first sync", |v| v["ok"] == true);
    // Another process writes on the same home; the watcher pushes it.
    ok(&[
        "device",
        "--home",
        &home,
        "put",
        "notes",
        "k",
        "from another process",
    ]);
    until(&lines, "the write pushed", |v| {
        v["ok"] == true
            && v["report"]["pushed_batches"].as_u64() >= Some(1)
            && v["pending_batches"] == 0
            && v["pending_edits"] == 0
    });
    let status: serde_json::Value =
        serde_json::from_str(&ok(&["device", "--home", &home, "status", "--json"]))
            .expect("status json");
    assert_eq!(status["collections"][0]["pending_batches"], 0, "{status}");
}

#[test]
fn one_shot_sync_prints_json_and_no_bar_when_stderr_is_not_a_terminal() {
    let (_tmp, _server, _data, home) = one_device();
    ok(&["device", "--home", &home, "put", "notes", "k", "v"]);
    let out = Command::new(BIN)
        .args(["device", "--home", &home, "sync", "--json"])
        .output()
        .expect("run sync");
    assert!(out.status.success());
    // stderr is a pipe here: no progress bar, nothing at all.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report json");
    assert_eq!(report["pushed_batches"], 1, "{report}");
    // --quiet prints nothing on success.
    let quiet = ok(&["device", "--home", &home, "sync", "--quiet"]);
    assert!(quiet.is_empty(), "{quiet}");
}
