//! The `sealsync` binary as users and operators run it: a server process, the admin command
//! and device commands, checking stdout, stderr and exit codes.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Output, Stdio};

use crate::cli_kit::{BIN, fails, ok, start_server};

#[test]
fn quick_start_over_the_cli() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_server, _port) = start_server(tmp.path());
    let data = tmp.path().join("srv");
    let data = data.to_str().expect("path");
    let laptop = tmp.path().join("laptop");
    let laptop = laptop.to_str().expect("path");
    let phone = tmp.path().join("phone");
    let phone = phone.to_str().expect("path");

    let bundle = ok(&["admin", "--data", data, "enroll", "--account", "alice"]);
    assert_eq!(
        bundle.lines().count(),
        1,
        "enroll must print the bundle alone"
    );
    let out = ok(&[
        "device",
        "--home",
        laptop,
        "enroll",
        bundle.trim(),
        "--name",
        "laptop",
        "--new-account",
    ]);
    assert!(out.contains("recovery secret"), "{out}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("recovery secret: "))
        .expect("recovery secret line")
        .to_string();

    // The used ticket says so (not a bare 401).
    let err = fails(
        &[
            "device",
            "--home",
            phone,
            "enroll",
            bundle.trim(),
            "--name",
            "phone",
        ],
        2,
    );
    assert!(err.contains("already used or has expired"), "{err}");
    assert!(err.contains("operator"), "{err}");

    let bundle = ok(&[
        "admin",
        "--data",
        data,
        "enroll",
        "--account",
        "alice",
        "--ttl",
        "5m",
    ]);
    ok(&[
        "device",
        "--home",
        phone,
        "enroll",
        bundle.trim(),
        "--name",
        "phone",
    ]);
    let status: serde_json::Value =
        serde_json::from_str(&ok(&["device", "--home", phone, "status", "--json"])).expect("json");
    assert_eq!(status["state"], "pending");
    assert_eq!(status["account"], "alice");
    assert_eq!(status["name"], "phone");
    let device_id = status["device_id"].as_str().expect("device_id").to_string();

    let pending = ok(&["device", "--home", laptop, "pending"]);
    assert!(pending.contains(&device_id), "{pending}");
    // Pairing as two people run it: `approve` prints the code first and waits; `join` types
    // it on the new device; both exit 0.
    let mut approve = Command::new(BIN)
        .args([
            "device",
            "--home",
            laptop,
            "approve",
            &device_id,
            "--timeout",
            "60s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn approve");
    let mut approve_out = BufReader::new(approve.stdout.take().expect("stdout"));
    let mut code = String::new();
    approve_out.read_line(&mut code).expect("read code");
    let code = code.trim().to_string();
    assert_eq!(
        code.len(),
        9,
        "first line must be the code XXXX-XXXX: {code:?}"
    );
    // The code on standard input (`join` without CODE): it stays out of `ps`.
    let mut join = Command::new(BIN)
        .args(["device", "--home", phone, "join", "--timeout", "60s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn join");
    writeln!(join.stdin.take().expect("stdin"), "{code}").expect("write code");
    let out = join.wait_with_output().expect("join exits");
    assert!(
        out.status.success(),
        "join failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8(out.stdout).expect("utf8");
    assert!(out.contains("trusted"), "{out}");
    let status = approve.wait().expect("approve exits");
    assert!(status.success(), "approve failed");
    // `approve` exits 0 only once the new device said it is trusted.
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut approve_out, &mut rest).expect("read approve");
    assert!(
        rest.lines()
            .last()
            .is_some_and(|l| l.ends_with("it is trusted")),
        "{rest}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&ok(&["device", "--home", phone, "status", "--json"])).expect("json");
    assert_eq!(status["state"], "trusted");

    // Recovery reads the secret from SEALSYNC_RECOVERY (or a prompt, or stdin), never from
    // the command line: a value after --recovery is a usage error.
    let bundle = ok(&["admin", "--data", data, "enroll", "--account", "alice"]);
    let tablet = tmp.path().join("tablet");
    let tablet = tablet.to_str().expect("path");
    let err = fails(
        &[
            "device",
            "--home",
            tablet,
            "enroll",
            bundle.trim(),
            "--name",
            "tablet",
            "--recovery",
            &secret,
        ],
        2,
    );
    assert!(!err.contains(&secret), "the secret was echoed: {err}");
    let out = Command::new(BIN)
        .args([
            "device",
            "--home",
            tablet,
            "enroll",
            bundle.trim(),
            "--name",
            "tablet",
            "--recovery",
        ])
        .env("SEALSYNC_RECOVERY", &secret)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("state: trusted"));
    let mut child = Command::new(BIN)
        .args(["device", "--home", &format!("{tablet}-2"), "enroll"])
        .args([
            &ok(&["admin", "--data", data, "enroll", "--account", "alice"])
                .trim()
                .to_string(),
        ])
        .args(["--name", "tablet2", "--recovery"])
        .env_remove("SEALSYNC_RECOVERY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    writeln!(child.stdin.take().expect("stdin"), "{secret}").expect("write secret");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    ok(&[
        "device",
        "--home",
        laptop,
        "collection",
        "create",
        "notes",
        "--policy",
        "lww",
    ]);
    // Issue 5 item 7: creating it again with the same policy is a no-op success; another
    // policy is refused in one line, never a switch.
    let create = |policy: &'static str| {
        [
            "device",
            "--home",
            laptop,
            "collection",
            "create",
            "notes",
            "--policy",
            policy,
        ]
    };
    ok(&create("lww"));
    let err = fails(&create("manual"), 2);
    assert!(err.contains("cannot be changed"), "{err}");
    ok(&[
        "device",
        "--home",
        laptop,
        "put",
        "notes",
        "groceries",
        "oat milk",
    ]);
    let value_file = tmp.path().join("value.txt");
    std::fs::write(&value_file, b"from a file").expect("write");
    ok(&[
        "device",
        "--home",
        phone,
        "put",
        "notes",
        "filed",
        "--file",
        value_file.to_str().expect("path"),
    ]);
    let mut child = Command::new(BIN)
        .args(["device", "--home", phone, "put", "notes", "piped"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"from stdin")
        .expect("write");
    assert!(child.wait().expect("wait").success());

    for _ in 0..2 {
        ok(&["device", "--home", laptop, "sync"]);
        ok(&["device", "--home", phone, "sync"]);
    }
    assert_eq!(
        ok(&["device", "--home", phone, "get", "notes", "groceries"]),
        "oat milk"
    );
    assert_eq!(
        ok(&["device", "--home", laptop, "get", "notes", "filed"]),
        "from a file"
    );
    assert_eq!(
        ok(&["device", "--home", laptop, "get", "notes", "piped"]),
        "from stdin"
    );
    let list = ok(&["device", "--home", laptop, "list", "notes"]);
    assert_eq!(list.lines().count(), 3, "{list}");
    let history = ok(&["device", "--home", phone, "history", "notes", "groceries"]);
    assert!(!history.trim().is_empty());

    let a: serde_json::Value =
        serde_json::from_str(&ok(&["device", "--home", laptop, "status", "--json"])).expect("json");
    let b: serde_json::Value =
        serde_json::from_str(&ok(&["device", "--home", phone, "status", "--json"])).expect("json");
    let notes = |s: &serde_json::Value| {
        s["collections"]
            .as_array()
            .expect("collections")
            .iter()
            .find(|c| c["name"] == "notes")
            .cloned()
            .expect("notes")
    };
    assert_eq!(notes(&a)["state_root"], notes(&b)["state_root"]);
    assert_eq!(notes(&a)["policy"], "lww");
    assert_eq!(notes(&a)["records"], 3);
    assert_eq!(notes(&a)["pending_batches"], 0);

    ok(&["device", "--home", laptop, "delete", "notes", "groceries"]);
    let err = fails(
        &["device", "--home", laptop, "get", "notes", "groceries"],
        1,
    );
    assert!(err.contains("groceries"), "{err}");
}

#[test]
fn errors_are_one_line_with_nonzero_exit() {
    let tmp = tempfile::tempdir().expect("tmp");
    let home = tmp.path().join("nobody");
    let home = home.to_str().expect("path");
    fails(&["device", "--home", home, "get", "notes", "x"], 2);
    fails(&["device", "--home", home, "frobnicate"], 2);
    fails(&["server"], 2);
    fails(&["device", "--home", home], 2);
    let err = fails(&["device", "--home", home, "put"], 2);
    assert!(
        err.contains("<COLLECTION>"),
        "the missing arguments must be named: {err}"
    );
    fails(
        &[
            "server",
            "run",
            "--data",
            home,
            "--listen",
            "not-an-address",
        ],
        2,
    );
    fails(
        &["server", "run", "--data", home, "--listen", "127.0.0.1:0"],
        2,
    );
    fails(&["admin", "--data", home, "enroll", "--account", "a"], 2);
    fails(
        &[
            "device",
            "--home",
            home,
            "enroll",
            "not-a-bundle",
            "--name",
            "x",
        ],
        2,
    );
    fails(
        &[
            "device",
            "--home",
            home,
            "collection",
            "create",
            "n",
            "--policy",
            "bogus",
        ],
        2,
    );
}

fn with_passphrase(args: &[&str], passphrase: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("SEALSYNC_PASSPHRASE");
    if let Some(p) = passphrase {
        cmd.env("SEALSYNC_PASSPHRASE", p);
    }
    cmd.output().expect("run sealsync")
}

#[test]
fn passphrase_protects_the_key_store() {
    // CD-09: with a passphrase, the device directory alone opens nothing.
    let tmp = tempfile::tempdir().expect("tmp");
    let (_server, _port) = start_server(tmp.path());
    let data = tmp.path().join("srv");
    let data = data.to_str().expect("path");
    let home = tmp.path().join("dev");
    let home_s = home.to_str().expect("path");
    let pass = Some("correct horse battery staple");

    let bundle = ok(&["admin", "--data", data, "enroll", "--account", "pp"]);
    let out = with_passphrase(
        &[
            "device",
            "--home",
            home_s,
            "enroll",
            bundle.trim(),
            "--name",
            "d",
            "--new-account",
        ],
        pass,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !home.join("keystore.key").exists(),
        "a key file defeats the passphrase"
    );
    let out = with_passphrase(
        &["device", "--home", home_s, "put", "notes", "k", "v"],
        pass,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for wrong in [None, Some("wrong passphrase")] {
        let out = with_passphrase(&["device", "--home", home_s, "get", "notes", "k"], wrong);
        assert_eq!(out.status.code(), Some(2), "opened with {wrong:?}");
        let err = String::from_utf8(out.stderr).expect("utf8");
        assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
        assert!(
            err.to_lowercase().contains("passphrase"),
            "error should name the passphrase: {err}"
        );
        assert!(out.stdout.is_empty());
    }
    let out = with_passphrase(&["device", "--home", home_s, "get", "notes", "k"], pass);
    assert!(out.status.success());
    assert_eq!(out.stdout, b"v");
}

#[test]
fn wrong_pairing_code_fails_both_commands_with_one_line() {
    // MS-10: a mistyped code ends both commands non-zero with one clear line each; the
    // new device stays pending.
    let tmp = tempfile::tempdir().expect("tmp");
    let (_server, _port) = start_server(tmp.path());
    let data = tmp.path().join("srv");
    let data = data.to_str().expect("path");
    let laptop = tmp.path().join("laptop");
    let laptop = laptop.to_str().expect("path");
    let phone = tmp.path().join("phone");
    let phone = phone.to_str().expect("path");
    let bundle = ok(&["admin", "--data", data, "enroll", "--account", "w"]);
    ok(&[
        "device",
        "--home",
        laptop,
        "enroll",
        bundle.trim(),
        "--name",
        "laptop",
        "--new-account",
    ]);
    let bundle = ok(&["admin", "--data", data, "enroll", "--account", "w"]);
    let out = ok(&[
        "device",
        "--home",
        phone,
        "enroll",
        bundle.trim(),
        "--name",
        "phone",
    ]);
    let device_id = out
        .lines()
        .find_map(|l| l.strip_prefix("device id: "))
        .expect("device id")
        .to_string();
    let mut approve = Command::new(BIN)
        .args([
            "device",
            "--home",
            laptop,
            "approve",
            &device_id,
            "--timeout",
            "60s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn approve");
    let mut code = String::new();
    let mut approve_out = BufReader::new(approve.stdout.take().expect("stdout"));
    approve_out.read_line(&mut code).expect("read code");
    let wrong = if code.trim() == "0000-0000" {
        "1111-1111"
    } else {
        "0000-0000"
    };
    let err = fails(&["device", "--home", phone, "join", wrong], 2);
    assert!(err.contains("code does not match"), "{err}");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut approve.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    assert_eq!(approve.wait().expect("approve exits").code(), Some(2));
    drop(approve_out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    assert!(err.contains("code does not match"), "{err}");
    let status: serde_json::Value =
        serde_json::from_str(&ok(&["device", "--home", phone, "status", "--json"])).expect("json");
    assert_eq!(status["state"], "pending");
}
