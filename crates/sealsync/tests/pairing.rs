//! Pairing against a real server that misbehaves: its SQLite database (the mailbox, the
//! roster, the envelopes) is rewritten mid-pairing, as a breached server would.

use std::time::Duration;

use sealsync_client::{DeviceState, EnrollError, PairingError, Replica, SyncError};
use sealsync_core::pairing::{Approver, DeviceKeys, Joiner};
use sealsync_core::{
    AccountKeys, DeviceId, GenesisParams, NewMember, Roster, roster_entry_hash, seal_envelope,
};
use sealsync_crypto::{KdfParams, KxPublicKey, KxSecretKey, PairingCode, SigningKey, VerifyingKey};
use sealsync_proto::{Message as _, PairingConfirm, PairingReply, PairingStart};

use crate::kit::{TestServer, first_opts, now_ms, opts, pair};

const TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn db(server: &TestServer) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(server.data_dir().join("sealsync.db")).expect("db");
    c.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    c
}

/// A trusted first device and a pending second one of account "acme".
pub(crate) async fn devices(server: &TestServer) -> (Replica, Replica) {
    let a = Replica::enroll(&server.home("a"), &server.bundle("acme"), first_opts("a"))
        .await
        .expect("enroll a");
    let b = Replica::enroll(&server.home("b"), &server.bundle("acme"), opts("second"))
        .await
        .expect("enroll b");
    assert_eq!(b.state, DeviceState::Pending);
    (a.replica, b.replica)
}

/// The keys the server holds for a device.
pub(crate) fn enrolled_keys(server: &TestServer, id: DeviceId) -> DeviceKeys {
    let (sign, kx): (Vec<u8>, Vec<u8>) = db(server)
        .query_row(
            "SELECT sign_pk, kx_pk FROM devices WHERE device_id = ?1",
            [id.0.to_vec()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("device row");
    DeviceKeys::new(
        VerifyingKey::from_bytes(&sign).expect("sign_pk"),
        KxPublicKey::from_bytes(&kx).expect("kx_pk"),
    )
}

/// `(start, reply, confirm, aborted)` of the device's mailbox row.
pub(crate) type Row = (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>, bool);

pub(crate) fn mailbox(server: &TestServer, device: DeviceId) -> Row {
    db(server)
        .query_row(
            "SELECT start, reply, confirm, aborted FROM pairings WHERE device_id = ?1",
            [device.0.to_vec()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? != 0)),
        )
        .expect("mailbox row")
}

pub(crate) fn set_mailbox(server: &TestServer, device: DeviceId, column: &str, bytes: &[u8]) {
    let sql = format!("UPDATE pairings SET {column} = ?1 WHERE device_id = ?2");
    let n = db(server)
        .execute(&sql, rusqlite::params![bytes, device.0.to_vec()])
        .expect("rewrite mailbox");
    assert_eq!(n, 1);
}

/// Waits (bounded) until the new device's reply is in the mailbox.
pub(crate) async fn reply_arrives(server: &TestServer, device: DeviceId) -> PairingReply {
    for _ in 0..600 {
        if let (_, Some(reply), _, _) = mailbox(server, device) {
            return sealsync_proto::decode(&reply).expect("reply");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the new device never replied");
}

/// Asserts that nothing was sealed or signed for `device`: no envelope, no roster entry.
fn nothing_sealed_for(server: &TestServer, device: DeviceId) {
    let c = db(server);
    let envelopes: i64 = c
        .query_row(
            "SELECT count(*) FROM envelopes WHERE recipient = ?1",
            [device.0.to_vec()],
            |r| r.get(0),
        )
        .expect("count");
    let entries: i64 = c
        .query_row(
            "SELECT count(*) FROM roster WHERE subject = ?1",
            [device.0.to_vec()],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(
        (envelopes, entries),
        (0, 0),
        "something was sealed for {device}"
    );
}

fn assert_still_pending(home: &std::path::Path) {
    let reopened = Replica::open(home).expect("reopen");
    assert_eq!(
        reopened.status().expect("status").state,
        DeviceState::Pending
    );
}

fn another_code(code: &str) -> String {
    loop {
        let c = PairingCode::generate().display().to_string();
        if c != code {
            return c;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_makes_the_new_device_trusted_with_the_approvers_genesis() {
    // MS-10, MS-11: the honest path; the new device ends with the approver's roster.
    let server = TestServer::start().await;
    let (mut a, mut b) = devices(&server).await;
    let started = std::time::Instant::now();
    let (approved, joined) = pair(&mut a, &mut b).await;
    let took = started.elapsed();
    approved.expect("approve");
    joined.expect("join");
    eprintln!("one pairing (approve + join, loopback) took {took:?}");
    assert_eq!(b.status().expect("status").state, DeviceState::Trusted);
    a.put("notes", "k", b"v").expect("put");
    a.sync().await.expect("sync a");
    b.sync().await.expect("sync b");
    assert_eq!(
        b.get("notes", "k").expect("get").as_deref(),
        Some(&b"v"[..])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_spends_the_attempt() {
    // MS-10: one online guess per attempt. A mistyped code is refused on both sides, nothing
    // is sealed, and the real code no longer works either.
    let server = TestServer::start().await;
    let (a, b) = devices(&server).await;
    let b_id = b.device_id();
    let approval = a.begin_approval(b_id, TIMEOUT).await.expect("begin");
    let code = approval.code().to_string();
    let wrong = another_code(&code);
    let (approved, joined) = tokio::join!(a.finish_approval(approval), b.join(&wrong, TIMEOUT));
    assert!(
        matches!(approved, Err(PairingError::WrongCode)),
        "{approved:?}"
    );
    assert!(matches!(joined, Err(PairingError::WrongCode)), "{joined:?}");
    nothing_sealed_for(&server, b_id);
    assert!(
        mailbox(&server, b_id).3,
        "the attempt is not marked aborted"
    );
    // The right code, typed now, finds no open attempt: it was spent with the wrong one.
    let again = b.join(&code, Duration::from_secs(1)).await;
    assert!(matches!(again, Err(PairingError::Aborted(_))), "{again:?}");
    assert_still_pending(&server.home("b"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_substituting_the_new_devices_keys_is_refused() {
    // MS-10, MS-15: the server answers the approver itself, with the new device's real
    // signing key (so the id matches) but its own kx key, and a guessed code. The approver's
    // MAC check refuses it before anything is sealed.
    let server = TestServer::start().await;
    let (a, b) = devices(&server).await;
    let b_id = b.device_id();
    let approval = a.begin_approval(b_id, TIMEOUT).await.expect("begin");
    let start: PairingStart = sealsync_proto::decode(&mailbox(&server, b_id).0).expect("start");
    let evil = DeviceKeys {
        kx_pk: KxSecretKey::generate().public_key(),
        ..enrolled_keys(&server, b_id)
    };
    let guess = PairingCode::parse(&another_code(approval.code())).expect("code");
    let (_, forged) =
        Joiner::on_start(&guess, "acme", &evil, "second", &start, &[7; 32]).expect("forged reply");
    set_mailbox(&server, b_id, "reply", &forged.encode_to_vec());
    let err = a.finish_approval(approval).await;
    assert!(matches!(err, Err(PairingError::WrongCode)), "{err:?}");
    nothing_sealed_for(&server, b_id);
    assert!(
        mailbox(&server, b_id).3,
        "the attempt is not marked aborted"
    );
    server.stop().await;
}

/// The server shows the new device a start of its own (its own approver keys and SPAKE2
/// message with a guessed code), then a confirmation of its making; with `forge_reply` it
/// also answers the approver with its own reply: a man in the middle on both sides.
async fn server_in_the_middle(forge_reply: bool) {
    let server = TestServer::start().await;
    let (a, b) = devices(&server).await;
    let b_id = b.device_id();
    let approval = a.begin_approval(b_id, TIMEOUT).await.expect("begin");
    let code = approval.code().to_string();
    let guess = PairingCode::parse(&another_code(&code)).expect("code");
    let real: PairingStart = sealsync_proto::decode(&mailbox(&server, b_id).0).expect("start");
    let attempt: [u8; 16] = real.attempt_id.as_slice().try_into().expect("attempt id");
    let evil_sign = SigningKey::generate();
    let evil_keys = DeviceKeys::new(
        evil_sign.verifying_key(),
        KxSecretKey::generate().public_key(),
    );
    let (_, evil_start) =
        Approver::start(&guess, "acme", attempt, evil_keys, b_id, 60_000, &[9; 32]);
    set_mailbox(&server, b_id, "start", &evil_start.encode_to_vec());

    let b_keys = enrolled_keys(&server, b_id);
    let attack = async {
        let reply = reply_arrives(&server, b_id).await;
        // The reply answers the server's start; the server cannot make a confirmation that
        // passes MAC_A without the code, so it sends one under a shadow genesis and head.
        let forged = PairingConfirm {
            attempt_id: reply.attempt_id,
            genesis_hash: vec![0x66; 32],
            roster_head: vec![0x77; 32],
            mac: vec![0x55; 32],
            device_id: b_id.0.to_vec(),
        };
        if forge_reply {
            let evil_b = DeviceKeys {
                kx_pk: KxSecretKey::generate().public_key(),
                ..b_keys.clone()
            };
            let (_, forged_reply) =
                Joiner::on_start(&guess, "acme", &evil_b, "second", &real, &[8; 32])
                    .expect("forged reply");
            set_mailbox(&server, b_id, "reply", &forged_reply.encode_to_vec());
        }
        set_mailbox(&server, b_id, "confirm", &forged.encode_to_vec());
    };
    let (joined, ()) = tokio::join!(b.join(&code, TIMEOUT), attack);
    assert!(matches!(joined, Err(PairingError::WrongCode)), "{joined:?}");
    assert_still_pending(&server.home("b"));
    // The approver sees either the device's reply to the server's start or the server's own
    // reply: MAC_B fails either way, and nothing is sealed (even when the server hides the
    // device's abort from it).
    db(&server)
        .execute("UPDATE pairings SET aborted = 0, confirm = NULL", [])
        .expect("reset");
    let approved = a.finish_approval(approval).await;
    assert!(
        matches!(approved, Err(PairingError::WrongCode)),
        "{approved:?}"
    );
    nothing_sealed_for(&server, b_id);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_substituting_the_approvers_keys_is_refused() {
    // MS-10, MS-15
    server_in_the_middle(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_substituting_keys_on_both_sides_at_once_is_refused() {
    // MS-10, MS-15
    server_in_the_middle(true).await;
}

/// `(seq, subject, hash, entry)` of a server roster row.
type RosterRow = (u64, Vec<u8>, [u8; 32], Vec<u8>);

/// A shadow account history for "acme" made by the server: its own genesis, an ADD of the
/// new device (real keys) signed by its own device, and an envelope from that device with
/// account keys it knows. Returns the roster rows and the envelope.
fn shadow(b: &DeviceKeys) -> (Vec<RosterRow>, Vec<u8>, DeviceId) {
    let sign = SigningKey::generate();
    let kx = KxSecretKey::generate();
    let id = DeviceId(sealsync_crypto::device_id(&sign.verifying_key()));
    let genesis = Roster::make_genesis(GenesisParams {
        account: "acme",
        signing: &sign,
        kx_pk: &kx.public_key(),
        name: "shadow",
        recovery_pk: &SigningKey::generate().verifying_key(),
        recovery_salt: &[3; 16],
        recovery_kdf: KdfParams::DEFAULT,
        now_ms: now_ms(),
    });
    let mut roster = Roster::from_genesis(&genesis, "acme").expect("shadow genesis");
    let add = roster.make_add(
        &sign,
        id,
        NewMember {
            device_id: b.device_id,
            sign_pk: &b.sign_pk,
            kx_pk: &b.kx_pk,
            name: "second",
        },
        now_ms(),
    );
    roster.apply(&add).expect("shadow add");
    let member = roster.member(&b.device_id).expect("member");
    let envelope = seal_envelope(
        &sign,
        id,
        member,
        "acme",
        roster.head_hash(),
        &AccountKeys::generate(),
    )
    .expect("shadow envelope");
    let rows = [(0, id, &genesis), (1, b.device_id, &add)]
        .into_iter()
        .map(|(seq, subject, e)| {
            (
                seq,
                subject.0.to_vec(),
                roster_entry_hash(e),
                e.encode_to_vec(),
            )
        })
        .collect();
    (rows, envelope.encode_to_vec(), id)
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SQL that replaces acme's roster and envelopes by the shadow ones.
fn shadow_sql(rows: &[RosterRow], envelope: &[u8], b: DeviceId, e: DeviceId) -> String {
    let mut sql = String::from(
        "DELETE FROM roster WHERE account = 'acme'; DELETE FROM envelopes WHERE account = 'acme';",
    );
    for (seq, subject, hash, entry) in rows {
        sql.push_str(&format!(
            " INSERT INTO roster (account, seq, subject, hash, entry) VALUES ('acme', {seq}, X'{}', X'{}', X'{}');",
            hex(subject),
            hex(hash),
            hex(entry)
        ));
    }
    sql.push_str(&format!(
        " INSERT INTO envelopes (account, recipient, sender, hash, sealed, created_ms) VALUES ('acme', X'{}', X'{}', X'{}', X'{}', 0);",
        hex(&b.0),
        hex(&e.0),
        hex(&sealsync_crypto::sha256(envelope)),
        hex(envelope)
    ));
    sql
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_genesis_never_makes_a_pending_device_trusted() {
    // MS-10, MS-11: the server shows the new device a shadow account (its own genesis, an
    // ADD of the device, an envelope of keys it knows). Syncing never trusts it; and when
    // the server swaps in the shadow right after a real pairing is confirmed, the device
    // refuses it because the confirmed genesis differs.
    let server = TestServer::start().await;
    let (mut a, mut b) = devices(&server).await;
    let b_id = b.device_id();
    let (rows, envelope, evil) = shadow(&enrolled_keys(&server, b_id));

    // 1. Without pairing: the shadow roster and envelope are served at sync.
    let real: Vec<RosterRow> = {
        let c = db(&server);
        let mut st = c
            .prepare(
                "SELECT seq, subject, hash, entry FROM roster WHERE account = 'acme' ORDER BY seq",
            )
            .expect("prepare");
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    db(&server)
        .execute_batch(&shadow_sql(&rows, &envelope, b_id, evil))
        .expect("install shadow");
    let report = b.sync().await.expect("a pending sync");
    assert!(!report.became_trusted);
    assert_eq!(b.status().expect("status").state, DeviceState::Pending);
    b.put("notes", "k", b"v")
        .expect("a pending device edits offline");
    assert_still_pending(&server.home("b"));

    // 2. Restore the real roster, then let the server swap in the shadow the moment the
    //    approver's confirmation lands (a trigger in the server's database).
    {
        let c = db(&server);
        c.execute_batch("DELETE FROM roster WHERE account = 'acme'; DELETE FROM envelopes;")
            .expect("clear");
        for (seq, subject, hash, entry) in &real {
            c.execute(
                "INSERT INTO roster (account, seq, subject, hash, entry) VALUES ('acme', ?1, ?2, ?3, ?4)",
                rusqlite::params![seq, subject, hash, entry],
            )
            .expect("restore");
        }
        let trigger = format!(
            "CREATE TRIGGER shadow_after_confirm AFTER UPDATE OF confirm ON pairings WHEN NEW.confirm IS NOT NULL BEGIN {} END;",
            shadow_sql(&rows, &envelope, b_id, evil).replace("; ", ";\n")
        );
        c.execute_batch(&trigger).expect("trigger");
    }
    let (approved, joined) = pair(&mut a, &mut b).await;
    assert!(matches!(joined, Err(PairingError::Roster(_))), "{joined:?}");
    // The approver does not report a pairing that the new device refused.
    assert!(
        matches!(approved, Err(PairingError::Aborted(_))),
        "{approved:?}"
    );
    assert_eq!(b.status().expect("status").state, DeviceState::Pending);
    // A later sync keeps refusing the shadow: the confirmed genesis is the only one trusted.
    assert!(matches!(b.sync().await, Err(SyncError::Roster(_))));
    assert_still_pending(&server.home("b"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_silent_new_account() {
    // MS-09: an account with no devices is founded only when asked for, and a request to
    // found an account that has devices is refused; both before the ticket is spent.
    let server = TestServer::start().await;
    let bundle = server.bundle("acme");
    let err = Replica::enroll(&server.home("x"), &bundle, opts("x"))
        .await
        .expect_err("joined an empty account");
    assert!(
        matches!(&err, EnrollError::NoSuchAccount { account } if account == "acme"),
        "{err:?}"
    );
    let unused: i64 = db(&server)
        .query_row(
            "SELECT count(*) FROM tickets WHERE used_ms IS NULL",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(unused, 1, "the refused enrollment spent the ticket");
    let a = Replica::enroll(&server.home("a"), &bundle, first_opts("a"))
        .await
        .expect("the same bundle founds the account when asked to");
    assert_eq!(a.state, DeviceState::Trusted);
    let err = Replica::enroll(&server.home("y"), &server.bundle("acme"), first_opts("y"))
        .await
        .expect_err("founded an account that has devices");
    assert!(matches!(&err, EnrollError::AccountExists { .. }), "{err:?}");
    // A server that says "no devices" (its roster deleted) cannot turn a second device
    // into the genesis of a new account.
    db(&server)
        .execute("DELETE FROM roster WHERE account = 'acme'", [])
        .expect("delete roster");
    let err = Replica::enroll(&server.home("z"), &server.bundle("acme"), opts("z"))
        .await
        .expect_err("a second device founded a new account");
    assert!(matches!(&err, EnrollError::NoSuchAccount { .. }), "{err:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_recovery_secret_is_refused() {
    // MS-09: a wrong secret is found before the ticket is spent: no device is left pending
    // on the server, nothing is written locally, and the bundle still works.
    let server = TestServer::start().await;
    let first = Replica::enroll(&server.home("a"), &server.bundle("acme"), first_opts("a"))
        .await
        .expect("first");
    let secret = first.recovery_secret.as_ref().expect("secret").to_string();
    let bundle = server.bundle("acme");
    let wrong = sealsync_crypto::RecoverySecret::generate()
        .display()
        .to_string();
    let with = |s: &str| opts("intruder").recovery(s);
    let err = Replica::enroll(&server.home("intruder"), &bundle, with(&wrong))
        .await
        .expect_err("a wrong recovery secret admitted a device");
    assert!(matches!(err, EnrollError::WrongRecoverySecret), "{err:?}");
    let (devices, unused): (i64, i64) = {
        let c = db(&server);
        (
            c.query_row("SELECT count(*) FROM devices", [], |r| r.get(0))
                .expect("count"),
            c.query_row(
                "SELECT count(*) FROM tickets WHERE used_ms IS NULL",
                [],
                |r| r.get(0),
            )
            .expect("count"),
        )
    };
    assert_eq!(devices, 1, "a device was left on the server");
    assert_eq!(unused, 1, "the ticket was spent");
    assert!(!server.home("intruder").join("replica.db").exists());
    let c = Replica::enroll(&server.home("intruder"), &bundle, with(&secret))
        .await
        .expect("the same bundle with the right secret");
    assert_eq!(c.state, DeviceState::Trusted);
    server.stop().await;
}
