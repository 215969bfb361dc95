//! Real devices (`sealsync_client::Replica`) against a real server: enrollment, approval,
//! recovery, offline edits, merge policies, convergence, and what the server can see.

use sealsync_client::{DeviceState, EnrollOptions, Replica};
use sealsync_core::Policy;

use crate::kit::{TestServer, approved_pair, files_containing};

async fn sync_round(replicas: &mut [&mut Replica]) {
    for r in replicas.iter_mut() {
        r.sync().await.expect("sync");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_converge_and_server_holds_no_plaintext() {
    // MS-39: canary names, keys and values never reach server storage.
    let server = TestServer::start().await;
    let (mut a, mut b, _) = approved_pair(&server, "acme").await;
    a.put(
        "canary-collection-x7",
        "canary-key-one",
        b"canary-value-alpha",
    )
    .expect("put");
    b.put(
        "canary-collection-x7",
        "canary-key-two",
        b"canary-value-beta",
    )
    .expect("put");
    a.put("canary-collection-x7", "canary-shared", b"canary-from-a")
        .expect("put");
    b.put("canary-collection-x7", "canary-shared", b"canary-from-b")
        .expect("put");
    b.delete("canary-collection-x7", "canary-key-two")
        .expect("delete");
    sync_round(&mut [&mut a, &mut b]).await;
    sync_round(&mut [&mut a, &mut b]).await;

    assert_eq!(
        a.state_root().expect("root"),
        b.state_root().expect("root"),
        "devices diverged"
    );
    assert_eq!(
        b.get("canary-collection-x7", "canary-key-one")
            .expect("get")
            .as_deref(),
        Some(&b"canary-value-alpha"[..])
    );
    assert_eq!(
        a.get("canary-collection-x7", "canary-key-two")
            .expect("get"),
        None,
        "delete did not sync"
    );
    let shared_a = a.get("canary-collection-x7", "canary-shared").expect("get");
    let shared_b = b.get("canary-collection-x7", "canary-shared").expect("get");
    assert_eq!(shared_a, shared_b);
    assert!(matches!(
        shared_a.as_deref(),
        Some(b"canary-from-a") | Some(b"canary-from-b")
    ));

    for needle in [
        "canary-collection-x7",
        "canary-key-one",
        "canary-key-two",
        "canary-shared",
        "canary-value-alpha",
        "canary-value-beta",
        "canary-from-a",
        "canary-from-b",
    ] {
        let hits = files_containing(&server.data_dir(), needle.as_bytes());
        assert!(
            hits.is_empty(),
            "plaintext {needle:?} found in server files {hits:?}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_secret_admits_a_device_without_approval() {
    // MS-09: only the user's recovery secret (not the server) can add a device this way.
    let server = TestServer::start().await;
    let (mut a, mut b, secret) = approved_pair(&server, "acme").await;
    a.put("notes", "hello", b"world").expect("put");
    sync_round(&mut [&mut a, &mut b]).await;
    let c = Replica::enroll(
        &server.home("third"),
        &server.bundle("acme"),
        EnrollOptions::new("third").recovery(secret),
    )
    .await
    .expect("recovery enroll");
    assert_eq!(c.state, DeviceState::Trusted);
    let c = c.replica;
    c.sync().await.expect("sync");
    assert_eq!(
        c.get("notes", "hello").expect("get").as_deref(),
        Some(&b"world"[..])
    );
    assert_eq!(c.state_root().expect("root"), a.state_root().expect("root"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_policies_converge_across_devices() {
    // CF-13, CF-14
    let server = TestServer::start().await;
    let (mut a, mut b, _) = approved_pair(&server, "acme").await;
    a.create_collection("contacts", Policy::Fields)
        .expect("create");
    a.create_collection("tasks", Policy::Manual)
        .expect("create");
    sync_round(&mut [&mut a, &mut b]).await;

    a.put("contacts", "ada", br#"{"phone":"1"}"#).expect("put");
    b.put("contacts", "ada", br#"{"email":"ada@example"}"#)
        .expect("put");
    a.put("tasks", "plan", b"friday").expect("put");
    b.put("tasks", "plan", b"monday").expect("put");
    sync_round(&mut [&mut a, &mut b]).await;
    sync_round(&mut [&mut a, &mut b]).await;

    let merged =
        String::from_utf8(b.get("contacts", "ada").expect("get").expect("present")).expect("utf8");
    let json: serde_json::Value = serde_json::from_str(&merged).expect("json");
    assert_eq!(json["phone"], "1");
    assert_eq!(json["email"], "ada@example");
    assert_eq!(
        a.get("contacts", "ada").expect("get"),
        b.get("contacts", "ada").expect("get")
    );

    let conflicts = a.conflicts("tasks").expect("conflicts");
    assert_eq!(conflicts.len(), 1, "manual policy must keep both versions");
    assert_eq!(b.conflicts("tasks").expect("conflicts").len(), 1);
    b.resolve("tasks", "plan", b"tuesday").expect("resolve");
    sync_round(&mut [&mut b, &mut a]).await;
    assert!(a.conflicts("tasks").expect("conflicts").is_empty());
    assert_eq!(
        a.get("tasks", "plan").expect("get").as_deref(),
        Some(&b"tuesday"[..])
    );
    assert_eq!(a.state_root().expect("root"), b.state_root().expect("root"));
    assert!(
        a.history("tasks", "plan").expect("history").len() >= 3,
        "history must keep every version"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_survive_reopen_and_work_offline() {
    // CF-01: an acknowledged edit is on disk when put returns.
    let mut server = TestServer::start().await;
    let (a, _b, _) = approved_pair(&server, "acme").await;
    let home = server.home("first");
    server.halt().await; // no server from here on
    let a = a;
    a.put("notes", "offline", b"still here")
        .expect("put without a server");
    drop(a);
    let reopened = Replica::open(&home).expect("reopen");
    assert_eq!(
        reopened.get("notes", "offline").expect("get").as_deref(),
        Some(&b"still here"[..])
    );
    let status = reopened.status().expect("status");
    let notes = status
        .collections
        .iter()
        .find(|c| c.name == "notes")
        .expect("notes in status");
    assert_eq!(notes.records, 1);
    assert!(
        notes.pending_batches >= 1,
        "unsent edit must count as pending"
    );
}
