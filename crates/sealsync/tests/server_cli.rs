//! `sealsync server init` and `server run` as an operator runs them: the hint printed by
//! `init` is the command that works, and `run` without `--listen` serves on the URL's port.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sealsync");

use crate::cli_kit::ServerProcess;

#[test]
fn run_without_listen_serves_on_the_port_of_the_init_url_as_the_hint_says() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("srv");
    let data = data.to_str().expect("path");
    let port = crate::cli_kit::free_port();
    let url = format!("https://127.0.0.1:{port}");
    let out = Command::new(BIN)
        .args(["server", "init", "--data", data, "--url", &url])
        .output()
        .expect("run init");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    let hint = stdout
        .lines()
        .find(|l| l.starts_with("next: "))
        .expect("a next-step hint");
    assert!(
        hint.starts_with(&format!("next: sealsync server run --data {data} ")),
        "{hint}"
    );
    assert!(
        hint.contains(&format!("listens on 127.0.0.1:{port}")),
        "{hint}"
    );
    assert!(hint.contains("foreground"), "{hint}");

    // Exactly the command of the hint.
    let mut child = Command::new(BIN)
        .args(["server", "run", "--data", data])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let stdout = child.stdout.take().expect("stdout");
    let _server = ServerProcess(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read");
    assert_eq!(line.trim(), format!("listening on {url}"));
    // And it really is there.
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the served port");
}
