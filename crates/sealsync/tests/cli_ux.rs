//! The `sealsync` binary as a new user meets it (issue 5, defect 7): bounded value reads,
//! exit codes, one clear line per error, `list --json`, `status` with the last sync and its
//! error, refusals of commands that would silently do nothing.

use std::io::Write as _;
use std::process::{Command, Stdio};

use base64::Engine as _;
use prost::Message as _;

use crate::cli_kit::{BIN, fails, ok, start_server};

/// A server and one trusted device ("dev", the account's first); returns the temporary
/// directory, the server process and the device's home.
pub(crate) fn one_device() -> (
    tempfile::TempDir,
    crate::cli_kit::ServerProcess,
    String,
    String,
) {
    let tmp = tempfile::tempdir().expect("tmp");
    let (server, _port) = start_server(tmp.path());
    let data = tmp.path().join("srv").to_str().expect("path").to_string();
    let home = tmp.path().join("dev").to_str().expect("path").to_string();
    let bundle = ok(&["admin", "--data", &data, "enroll", "--account", "ux"]);
    ok(&[
        "device",
        "--home",
        &home,
        "enroll",
        bundle.trim(),
        "--name",
        "dev",
        "--new-account",
    ]);
    (tmp, server, data, home)
}

#[test]
fn values_are_read_only_up_to_the_limit() {
    // CF-17, BI-01: `put --file /dev/zero` and an endless stdin stop at 1 MiB + 1 byte.
    let (tmp, _server, _data, home) = one_device();
    let limit = sealsync_client::MAX_VALUE_BYTES;
    let err = fails(
        &[
            "device",
            "--home",
            &home,
            "put",
            "c",
            "k",
            "--file",
            "/dev/zero",
        ],
        2,
    );
    assert!(err.contains(&limit.to_string()), "{err}");
    let exact = tmp.path().join("exact");
    std::fs::write(&exact, vec![b'x'; limit]).expect("write");
    ok(&[
        "device",
        "--home",
        &home,
        "put",
        "c",
        "exact",
        "--file",
        exact.to_str().expect("path"),
    ]);
    assert_eq!(
        ok(&["device", "--home", &home, "get", "c", "exact"]).len(),
        limit
    );
    let mut child = Command::new(BIN)
        .args(["device", "--home", &home, "put", "c", "piped"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    // More than the limit; the writer stops when the reader closes the pipe.
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'y'; 64 * 1024];
        for _ in 0..64 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).expect("utf8");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(&limit.to_string()), "{err}");
    // Refused input changes nothing.
    fails(&["device", "--home", &home, "get", "c", "piped"], 1);
}

#[test]
fn absent_records_exit_1_and_silent_commands_refuse() {
    let (_tmp, _server, _data, home) = one_device();
    // README: exit 1 when the record asked for does not exist.
    let err = fails(&["device", "--home", &home, "delete", "c", "nothing"], 1);
    assert!(err.contains("nothing"), "{err}");
    ok(&["device", "--home", &home, "put", "c", "k", "v"]);
    ok(&["device", "--home", &home, "delete", "c", "k"]);
    fails(&["device", "--home", &home, "delete", "c", "k"], 1);
    // conflicts and resolve on a collection that never keeps conflicts.
    let err = fails(&["device", "--home", &home, "conflicts", "c"], 2);
    assert!(err.contains("manual"), "{err}");
    ok(&["device", "--home", &home, "put", "c", "k", "v"]);
    let err = fails(&["device", "--home", &home, "resolve", "c", "k", "w"], 2);
    assert!(err.contains("manual"), "{err}");
    assert_eq!(ok(&["device", "--home", &home, "get", "c", "k"]), "v");
}

#[test]
fn list_is_unambiguous() {
    let (_tmp, _server, _data, home) = one_device();
    ok(&[
        "device",
        "--home",
        &home,
        "put",
        "c",
        "tab\tkey",
        "line one\nline two",
    ]);
    ok(&[
        "device",
        "--home",
        &home,
        "put",
        "c",
        "plain",
        "back\\slash",
    ]);
    let bin = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(bin.path(), [0xff, 0x00, b'a', 0xc3]).expect("write");
    ok(&[
        "device",
        "--home",
        &home,
        "put",
        "c",
        "bin",
        "--file",
        bin.path().to_str().expect("p"),
    ]);

    let list: serde_json::Value =
        serde_json::from_str(&ok(&["device", "--home", &home, "list", "c", "--json"]))
            .expect("json");
    let items = list.as_array().expect("one JSON array");
    assert_eq!(items.len(), 3);
    let find = |k: &str| items.iter().find(|i| i["key"] == k).expect(k).clone();
    assert_eq!(find("tab\tkey")["value"], "line one\nline two");
    assert_eq!(find("plain")["value"], "back\\slash");
    let b64 = find("bin")["value_base64"]
        .as_str()
        .expect("value_base64")
        .to_string();
    assert!(find("bin").get("value").is_none());
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&b64)
            .expect("base64"),
        [0xff, 0x00, b'a', 0xc3]
    );

    let plain = ok(&["device", "--home", &home, "list", "c"]);
    let lines: Vec<&str> = plain.lines().collect();
    assert_eq!(lines.len(), 3, "one line per record: {plain:?}");
    assert!(
        lines.contains(&"tab\\tkey\tline one\\nline two"),
        "{plain:?}"
    );
    assert!(lines.contains(&"plain\tback\\\\slash"), "{plain:?}");
    assert!(lines.contains(&"bin\t\\xff\\x00a\\xc3"), "{plain:?}");
    assert!(
        lines.iter().all(|l| l.matches('\t').count() == 1),
        "{plain:?}"
    );
}

#[test]
fn status_shows_the_last_sync_and_its_error() {
    let (tmp, server, _data, home) = one_device();
    let status = |home: &str| -> serde_json::Value {
        serde_json::from_str(&ok(&["device", "--home", home, "status", "--json"])).expect("json")
    };
    let s = status(&home);
    assert!(s["last_sync"].is_null(), "{s}");
    assert!(s["last_error"].is_null(), "{s}");
    ok(&["device", "--home", &home, "put", "c", "k", "v"]);
    ok(&["device", "--home", &home, "sync"]);
    let s = status(&home);
    let at = s["last_sync"].as_u64().expect("last_sync after a sync");
    assert!(s["last_error"].is_null(), "{s}");
    assert!(ok(&["device", "--home", &home, "status"]).contains("last sync"));

    // The server goes away: the failure shows, with its time; last_sync stays.
    drop(server);
    fails(&["device", "--home", &home, "sync"], 2);
    let s = status(&home);
    assert_eq!(s["last_sync"].as_u64(), Some(at));
    let e = &s["last_error"];
    assert!(e["at"].as_u64().expect("at") >= at, "{s}");
    assert!(!e["message"].as_str().expect("message").is_empty(), "{s}");
    assert!(ok(&["device", "--home", &home, "status"]).contains("last error"));

    // Back up: a clean sync clears the error.
    let (_server, _) = crate::cli_kit::restart_server(tmp.path());
    ok(&["device", "--home", &home, "sync"]);
    assert!(status(&home)["last_error"].is_null());
}

#[test]
fn a_pending_device_says_so_when_it_syncs() {
    let (tmp, _server, data, _home) = one_device();
    let phone = tmp.path().join("phone").to_str().expect("path").to_string();
    let bundle = ok(&["admin", "--data", &data, "enroll", "--account", "ux"]);
    ok(&[
        "device",
        "--home",
        &phone,
        "enroll",
        bundle.trim(),
        "--name",
        "phone",
    ]);
    let err = fails(&["device", "--home", &phone, "sync"], 2);
    assert!(err.contains("pending approval"), "{err}");
}

#[test]
fn errors_say_what_is_wrong_and_what_to_do() {
    let (tmp, _server, data, home) = one_device();
    // A huge collection name is not echoed whole.
    let name = "n".repeat(10_000);
    let err = fails(&["device", "--home", &home, "put", &name, "k", "v"], 2);
    assert!(err.len() < 400, "{} bytes: {}", err.len(), &err[..200]);
    assert!(err.contains("10000 bytes"), "{err}");
    // JSON nested far too deep for a fields collection: said so, and no stack overflow.
    ok(&[
        "device",
        "--home",
        &home,
        "collection",
        "create",
        "f",
        "--policy",
        "fields",
    ]);
    let deep = tmp.path().join("deep.json");
    std::fs::write(
        &deep,
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
    )
    .expect("write");
    let deep = deep.to_str().expect("p");
    let err = fails(
        &["device", "--home", &home, "put", "f", "k", "--file", deep],
        2,
    );
    assert!(err.contains("deeper than 128"), "{err}");
    // --home pointing at a file.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").expect("write");
    let err = fails(
        &["device", "--home", file.to_str().expect("p"), "list", "c"],
        2,
    );
    assert!(err.contains("is a file"), "{err}");
    let bundle = ok(&["admin", "--data", &data, "enroll", "--account", "ux"]);
    let err = fails(
        &[
            "device",
            "--home",
            file.to_str().expect("p"),
            "enroll",
            bundle.trim(),
            "--name",
            "x",
        ],
        2,
    );
    assert!(err.contains("is a file"), "{err}");
    // Usage errors point at the subcommand's help.
    let err = fails(&["device", "--home", &home, "put"], 2);
    assert!(err.contains("sealsync device put --help"), "{err}");
    let err = fails(&["device", "--home", &home, "list", "c", "--bogus"], 2);
    assert!(err.contains("sealsync device list --help"), "{err}");
    // A garbled CA pin in the bundle: the message names the pin and the fix.
    let bundle = ok(&["admin", "--data", &data, "enroll", "--account", "ux"]);
    let b64 = bundle
        .trim()
        .strip_prefix("sealsync-enroll:")
        .expect("prefix");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .expect("base64");
    let mut b = sealsync_proto::EnrollmentBundle::decode(raw.as_slice()).expect("bundle");
    b.ca_pin[0] ^= 0xff;
    let garbled = format!(
        "sealsync-enroll:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b.encode_to_vec())
    );
    let other = tmp.path().join("other").to_str().expect("p").to_string();
    let err = fails(
        &[
            "device", "--home", &other, "enroll", &garbled, "--name", "x",
        ],
        2,
    );
    assert!(err.contains("CA pin"), "{err}");
    assert!(err.contains("new bundle"), "{err}");
}

#[test]
fn a_put_under_a_fast_clock_does_not_wedge_the_cli() {
    // NA-10, CD-08: `faketime -f '+1h' sealsync device ... put c k v`, then `sync` with the
    // clock right: the sync re-stamps the edit and pushes it; status shows no error. The
    // clock is moved by the test hook the library reads (no faketime needed).
    let (_tmp, _server, _data, home) = one_device();
    ok(&["device", "--home", &home, "sync"]);
    let out = Command::new(BIN)
        .args(["device", "--home", &home, "put", "c", "k", "v"])
        .env("SEALSYNC_TEST_CLOCK_SKEW_MS", "3600000")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sync = ok(&["device", "--home", &home, "sync"]);
    assert!(sync.contains("re-stamped 1"), "{sync}");
    ok(&["device", "--home", &home, "put", "c", "k2", "v2"]);
    let sync = ok(&["device", "--home", &home, "sync"]);
    assert!(
        !sync.contains("re-stamped"),
        "a new edit inherited the future stamp: {sync}"
    );
    let s: serde_json::Value =
        serde_json::from_str(&ok(&["device", "--home", &home, "status", "--json"])).expect("json");
    assert!(s["last_error"].is_null(), "{s}");
    let c = &s["collections"][0];
    assert_eq!(c["pending_batches"], 0, "{s}");
    assert_eq!(c["records"], 2, "{s}");
}

#[test]
fn a_clock_days_behind_gets_a_hint_to_check_the_clock() {
    // NA-10: with the device's clock really moved two days back (libfaketime), the server's
    // certificate is not valid yet; the one error line says to check the clock.
    if Command::new("faketime").arg("--version").output().is_err() {
        // .ci/run installs faketime; a machine without it cannot move a process's clock.
        eprintln!("skipped: faketime is not installed (apt-get install faketime)");
        return;
    }
    let (_tmp, _server, _data, home) = one_device();
    ok(&["device", "--home", &home, "sync"]);
    let out = Command::new("faketime")
        .args(["-f", "-2d", BIN, "device", "--home", &home, "sync"])
        .output()
        .expect("run sealsync under faketime");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8(out.stderr).expect("utf8");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("not valid yet"), "{err}");
    assert!(
        err.contains("check this device's date, time and time zone"),
        "{err}"
    );
    // The clock put right, the same command works.
    ok(&["device", "--home", &home, "sync"]);
}

#[test]
fn the_recovery_secret_is_read_from_a_terminal_prompt_without_echo() {
    // MS-06: `enroll --recovery` on a terminal prompts for the secret and does not echo
    // it. util-linux `script` gives the command a pseudo-terminal; what the test writes to
    // script's stdin is typed at that terminal.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux script is not installed");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let (_server, _port) = start_server(tmp.path());
    let data = tmp.path().join("srv").to_str().expect("path").to_string();
    let first = tmp.path().join("first").to_str().expect("path").to_string();
    let bundle = ok(&["admin", "--data", &data, "enroll", "--account", "tty"]);
    let out = ok(&[
        "device",
        "--home",
        &first,
        "enroll",
        bundle.trim(),
        "--name",
        "first",
        "--new-account",
    ]);
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("recovery secret: "))
        .expect("the recovery secret line")
        .to_string();
    let second = tmp
        .path()
        .join("second")
        .to_str()
        .expect("path")
        .to_string();
    let bundle = ok(&["admin", "--data", &data, "enroll", "--account", "tty"]);
    let command = format!(
        "{BIN} device --home {second} enroll {} --name second --recovery",
        bundle.trim()
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("SEALSYNC_RECOVERY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn script");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    // A stuck child must fail the test, not hang it.
    let pid = child.id();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(60));
        let _ = Command::new("kill").arg(pid.to_string()).status();
    });
    // Type once the prompt is up (input sent before echo is turned off may be dropped).
    let mut shown = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&shown).contains("recovery secret: ") {
        let n = std::io::Read::read(&mut stdout, &mut byte).expect("read the terminal");
        assert_eq!(n, 1, "no prompt: {}", String::from_utf8_lossy(&shown));
        shown.push(byte[0]);
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    writeln!(stdin, "{secret}").expect("type the secret");
    std::io::Read::read_to_end(&mut stdout, &mut shown).expect("read the terminal");
    let status = child.wait().expect("wait");
    drop(stdin);
    let shown = String::from_utf8_lossy(&shown).into_owned();
    assert!(status.success(), "{shown}");
    assert!(shown.contains("recovery secret: "), "no prompt: {shown}");
    assert!(shown.contains("state: trusted"), "{shown}");
    assert!(!shown.contains(&secret), "the secret was echoed: {shown}");
}
