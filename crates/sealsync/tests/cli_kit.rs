//! Running the `sealsync` binary in CLI tests: a command and its checked output, and a
//! `server run` child process on a port chosen before `server init`.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_sealsync");

fn sealsync(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run sealsync")
}

pub(crate) fn ok(args: &[&str]) -> String {
    let out = sealsync(args);
    assert!(
        out.status.success(),
        "sealsync {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8 stdout")
}

/// Asserts a failure with the given exit code and exactly one line on stderr.
pub(crate) fn fails(args: &[&str], code: i32) -> String {
    let out = sealsync(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "sealsync {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8(out.stderr).expect("utf8 stderr");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "stderr must be one line, got {err:?}"
    );
    assert!(
        err.starts_with("error: "),
        "stderr must start with 'error: ', got {err:?}"
    );
    err
}

/// `sealsync server run` as a child process; killed on drop.
pub(crate) struct ServerProcess(pub(crate) Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port for a `server run` child that must be chosen before the child starts (the URL
/// given to `server init` names it).
///
/// A port the kernel hands out for `127.0.0.1:0` is in its ephemeral range, where the
/// outgoing connections of other tests in this process (the flood test opens over a
/// thousand) can take it before the child binds it. So the port comes from below that
/// range (Linux default 32768-60999), one per call, and is checked free when chosen.
pub(crate) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    // Test binaries run one after another, but two checkouts may test at once: start
    // each process at its own offset.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = (std::process::id() % u32::from(SPAN)) as u16;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + (base.wrapping_add(n.wrapping_mul(7))) % SPAN;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range")
}

pub(crate) fn start_server(dir: &Path) -> (ServerProcess, u16) {
    let port = free_port();
    let data = dir.join("srv");
    let data = data.to_str().expect("path");
    let url = format!("https://127.0.0.1:{port}");
    let out = ok(&["server", "init", "--data", data, "--url", &url]);
    assert!(out.contains("initialised"), "{out}");
    // A second init of the same directory is refused.
    fails(&["server", "init", "--data", data, "--url", &url], 2);
    std::fs::write(dir.join("srv-port"), port.to_string()).expect("write port");
    run_server(data, port)
}

/// Runs the server of `dir` (made by [`start_server`]) again on its port.
pub(crate) fn restart_server(dir: &Path) -> (ServerProcess, u16) {
    let port: u16 = std::fs::read_to_string(dir.join("srv-port"))
        .expect("port")
        .parse()
        .expect("port");
    run_server(dir.join("srv").to_str().expect("path"), port)
}

fn run_server(data: &str, port: u16) -> (ServerProcess, u16) {
    let log = format!("{data}.log");
    let mut child = Command::new(BIN)
        .args([
            "server",
            "run",
            "--data",
            data,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("server log"))
        .spawn()
        .expect("spawn server");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read");
    assert_eq!(
        line.trim(),
        format!("listening on https://127.0.0.1:{port}"),
        "server log: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    (ServerProcess(child), port)
}
