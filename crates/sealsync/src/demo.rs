//! `sealsync demo`: the whole story on one machine with embedded defaults.
//!
//! A real server (TLS 1.3, mutual TLS, SQLite) on a free loopback port in a temporary
//! directory; three devices of one account enrolled and approved; offline edits in three
//! collections (one per merge policy) including conflicts; sync until quiet. It prints each
//! device's state root and what the server stored, and fails if anything diverges or the
//! server's files contain any plaintext.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use sealsync_client::{EnrollOptions, Replica};
use sealsync_core::Policy;

/// Words written by the demo that must never appear in the server's files.
const SECRETS: &[&str] = &[
    "groceries",
    "oat milk",
    "milk and eggs",
    "ada-lovelace",
    "analytical engine",
    "notes-demo",
    "contacts-demo",
    "tasks-demo",
    "launch plan",
    "ship it friday",
    "ship it monday",
];

pub(crate) fn run() -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("sealsync-demo")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let rt = crate::runtime()?;
    rt.block_on(story(tmp.path()))
}

async fn story(root: &Path) -> anyhow::Result<()> {
    let server_dir = root.join("server");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind a loopback port")?;
    let addr = listener.local_addr()?;
    let url = format!("https://{addr}");
    sealsync_server::init(&server_dir, &url).context("server init failed")?;
    let server = sealsync_server::Server::from_listener(&server_dir, listener)
        .await
        .context("server start failed")?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(server.run(async move {
        let _ = stop_rx.await;
    }));
    println!(
        "== server listening on {url} (data in {})",
        server_dir.display()
    );

    let result = devices(root, &server_dir).await;
    let _ = stop_tx.send(());
    let _ = server_task.await;
    result?;
    scan_server_files(&server_dir)?;
    println!("== demo passed: all devices converged and the server holds only ciphertext");
    Ok(())
}

/// Pairs the pending `joiner` with the trusted `approver` as two people would: the approver
/// shows a code, the joiner types it, both run at once. Returns the code.
pub(crate) async fn pair(approver: &mut Replica, joiner: &mut Replica) -> anyhow::Result<String> {
    let timeout = Duration::from_secs(60);
    let approval = approver
        .begin_approval(joiner.device_id(), timeout)
        .await
        .context("approve")?;
    let code = approval.code().to_string();
    let (approved, joined) = tokio::join!(
        approver.finish_approval(approval),
        joiner.join(&code, timeout)
    );
    approved.context("approve")?;
    joined.context("join")?;
    Ok(code)
}

async fn devices(root: &Path, server_dir: &Path) -> anyhow::Result<()> {
    let ttl = Duration::from_secs(15 * 60);
    let ticket = |_: ()| sealsync_server::enroll_ticket(server_dir, "demo", ttl, None);

    println!("== enrolling alice (first device of account \"demo\")");
    let alice = Replica::enroll(
        &root.join("alice"),
        &ticket(())?,
        EnrollOptions::new("alice-laptop").new_account(true),
    )
    .await
    .context("alice enroll")?;
    let secret = alice
        .recovery_secret
        .as_ref()
        .context("the first device must receive a recovery secret")?;
    println!(
        "   alice {} trusted; recovery secret {}",
        alice.device_id,
        secret.as_str()
    );
    let mut alice = alice.replica;

    let mut others = Vec::new();
    for name in ["bob-phone", "carol-tablet"] {
        println!("== enrolling {name}");
        let dev = Replica::enroll(&root.join(name), &ticket(())?, EnrollOptions::new(name))
            .await
            .with_context(|| format!("{name} enroll"))?;
        println!("   {name} {} pending", dev.device_id);
        let mut replica = dev.replica;
        let code = pair(&mut alice, &mut replica)
            .await
            .with_context(|| format!("pair {name}"))?;
        println!("   alice showed the code {code}, {name} typed it: SPAKE2 through the server");
        replica
            .sync()
            .await
            .with_context(|| format!("{name} first sync"))?;
        ensure!(
            replica.status()?.state == sealsync_client::DeviceState::Trusted,
            "{name} is not trusted after approval"
        );
        println!("   {name} is trusted");
        others.push(replica);
    }
    let mut carol = others.pop().context("carol")?;
    let mut bob = others.pop().context("bob")?;

    println!("== collections: notes-demo (lww), contacts-demo (fields), tasks-demo (manual)");
    alice.create_collection("notes-demo", Policy::Lww)?;
    alice.create_collection("contacts-demo", Policy::Fields)?;
    alice.create_collection("tasks-demo", Policy::Manual)?;
    sync_all(&mut [&mut alice, &mut bob, &mut carol]).await?;

    println!("== offline edits (no sync in between)");
    alice.put("notes-demo", "groceries", b"oat milk")?;
    bob.put("notes-demo", "groceries", b"milk and eggs")?;
    carol.put("notes-demo", "todo", b"call ada-lovelace")?;
    alice.put(
        "contacts-demo",
        "ada-lovelace",
        br#"{"phone":"+44 20 0000"}"#,
    )?;
    bob.put(
        "contacts-demo",
        "ada-lovelace",
        br#"{"email":"ada@analytical engine"}"#,
    )?;
    alice.put("tasks-demo", "launch plan", b"ship it friday")?;
    carol.put("tasks-demo", "launch plan", b"ship it monday")?;
    carol.delete("notes-demo", "todo")?;

    println!("== sync");
    sync_all(&mut [&mut alice, &mut bob, &mut carol]).await?;
    sync_all(&mut [&mut alice, &mut bob, &mut carol]).await?;

    let groceries = String::from_utf8_lossy(
        &alice
            .get("notes-demo", "groceries")?
            .context("groceries missing")?,
    )
    .into_owned();
    println!("   notes-demo/groceries (lww) = {groceries:?}");
    for entry in alice.history("notes-demo", "groceries")? {
        println!("     {entry}");
    }
    let contact = String::from_utf8_lossy(
        &bob.get("contacts-demo", "ada-lovelace")?
            .context("contact missing")?,
    )
    .into_owned();
    println!("   contacts-demo/ada-lovelace (fields) = {contact}");
    ensure!(
        contact.contains("phone") && contact.contains("email"),
        "fields policy lost a field: {contact}"
    );
    let conflicts = carol.conflicts("tasks-demo")?;
    ensure!(
        conflicts.len() == 1,
        "expected one manual conflict, found {}",
        conflicts.len()
    );
    println!("   tasks-demo conflict: {}", conflicts[0]);
    carol.resolve("tasks-demo", "launch plan", b"ship it friday")?;
    println!("   carol resolved it");
    sync_all(&mut [&mut alice, &mut bob, &mut carol]).await?;
    sync_all(&mut [&mut alice, &mut bob, &mut carol]).await?;
    ensure!(
        alice.conflicts("tasks-demo")?.is_empty(),
        "conflict still open on alice after the resolution synced"
    );

    println!("== state roots");
    let mut roots = Vec::new();
    for (name, replica) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
        let root = hex::encode(replica.state_root()?);
        println!("   {name:<6} {root}");
        roots.push(root);
    }
    if roots.iter().any(|r| r != &roots[0]) {
        bail!("devices diverged: state roots differ");
    }
    print_stored_sample(server_dir)?;
    Ok(())
}

async fn sync_all(replicas: &mut [&mut Replica]) -> anyhow::Result<()> {
    for replica in replicas.iter_mut() {
        replica.sync().await.context("sync failed")?;
    }
    Ok(())
}

/// Prints one batch as the server stored it: routing metadata and ciphertext only.
fn print_stored_sample(server_dir: &Path) -> anyhow::Result<()> {
    let sample = sealsync_server::inspect::sample_batch(server_dir)
        .context("cannot read the server store")?;
    println!("== what the server stored for one record's batch");
    println!("{sample}");
    Ok(())
}

/// Searches every file of the server for the demo's plaintext words.
fn scan_server_files(dir: &Path) -> anyhow::Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in
            std::fs::read_dir(&path).with_context(|| format!("cannot list {}", path.display()))?
        {
            let entry = entry?;
            let p = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(p);
                continue;
            }
            let bytes =
                std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
            for word in SECRETS {
                if bytes.windows(word.len()).any(|w| w == word.as_bytes()) {
                    bail!("plaintext {word:?} found in server file {}", p.display());
                }
            }
        }
    }
    println!(
        "== searched the server's files for {} plaintext strings: none found",
        SECRETS.len()
    );
    Ok(())
}
