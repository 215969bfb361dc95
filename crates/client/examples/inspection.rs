//! A field-inspection app in miniature, on a real Sealsync server started in this process.
//!
//! The office enrolls as the first device of the account `acme-inspections` and pairs the
//! inspector's tablet. Inspections live in a `fields` collection (one JSON object per
//! finding, merged field by field) with an index on `site`. Both devices run the sync
//! driver: the tablet records findings (`put_json` of the app's `Finding` type), the
//! office sees each one arrive (`subscribe`, `get_json`) and marks one as reviewed
//! (`patch`), and the tablet gets that back, merged with its own fields. Then the office
//! queries the findings by site (`find` on the index) and by day (a key-prefix `scan`).
//!
//! ```sh
//! cargo run -p sealsync-client --example inspection
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use sealsync_client::{
    ChangeFilter, EnrollOptions, Origin, Policy, ReadError, Replica, ScanOptions, SyncHandle,
    SyncOptions,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The collection of findings, keyed `DAY/SITE/NUMBER`.
const INSPECTIONS: &str = "inspections";
/// How long pairing and each wait below may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// One finding, stored as a JSON object (the app's own type, through serde).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Finding {
    site: String,
    item: String,
    severity: String,
    note: String,
    /// Set by the office when it reviews the finding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reviewed_by: Option<String>,
}

fn finding(site: &str, item: &str, severity: &str, note: &str) -> Finding {
    Finding {
        site: site.into(),
        item: item.into(),
        severity: severity.into(),
        note: note.into(),
        status: None,
        reviewed_by: None,
    }
}

/// What the inspector records on the tablet: (key, finding).
fn findings() -> Vec<(&'static str, Finding)> {
    vec![
        (
            "2026-12-02/bridge-14/001",
            finding(
                "bridge-14",
                "expansion joint",
                "minor",
                "sealant cracked on the north side",
            ),
        ),
        (
            "2026-12-03/bridge-14/002",
            finding(
                "bridge-14",
                "bearing pad",
                "major",
                "pad displaced by about 2 cm",
            ),
        ),
        (
            "2026-12-03/tunnel-3/001",
            finding(
                "tunnel-3",
                "emergency lighting",
                "minor",
                "two fixtures out at marker 40",
            ),
        ),
        (
            "2026-12-03/bridge-14/003",
            finding(
                "bridge-14",
                "guard rail",
                "critical",
                "anchor bolts missing, section loose",
            ),
        ),
        (
            "2026-12-03/tunnel-3/002",
            finding("tunnel-3", "drainage", "minor", "gully partly blocked"),
        ),
    ]
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;

    // The server, as its operator would run it (`sealsync server init`, `server run`).
    let data = dir.path().join("server");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://{}", listener.local_addr()?);
    sealsync_server::init(&data, &url)?;
    let server = sealsync_server::Server::from_listener(&data, listener).await?;
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server.run(async move {
        let _ = server_stopped.await;
    }));
    println!("server     listening on {url}");

    // The office: first device of a new account.
    let office = Replica::enroll(
        &dir.path().join("office"),
        &bundle(&data)?,
        EnrollOptions::new("office").new_account(true),
    )
    .await?;
    println!(
        "office     enrolled as {} (trusted; recovery secret shown once: {})",
        short(office.device_id),
        if office.recovery_secret.is_some() {
            "yes"
        } else {
            "no"
        }
    );
    let office = office.replica;

    // The office decides how inspections merge and indexes them by site, then syncs once
    // so that the collection is pinned in the account before the tablet joins.
    office.create_collection(INSPECTIONS, Policy::Fields)?;
    office.create_index(INSPECTIONS, "site")?;
    office.sync().await?;

    // The tablet: enrolled into the same account, pending until the office approves it.
    let tablet = Replica::enroll(
        &dir.path().join("tablet"),
        &bundle(&data)?,
        EnrollOptions::new("inspector-tablet"),
    )
    .await?;
    println!(
        "tablet     enrolled as {} ({})",
        short(tablet.device_id),
        tablet.state
    );
    let tablet = tablet.replica;
    pair(&office, &tablet).await?;
    // The tablet learns the collection (and its `fields` policy) before writing to it.
    tablet.sync().await?;

    // Both devices keep themselves in sync from now on. The interval is only a safety net
    // here: live updates carry each push to the other device at once.
    let options = SyncOptions::new().interval(Duration::from_secs(5));
    let office_sync = office.start_sync(options.clone())?;
    let tablet_sync = tablet.start_sync(options)?;
    wait_connected("office", &office_sync).await?;
    wait_connected("tablet", &tablet_sync).await?;

    // The office follows the inspections as they arrive.
    let mut arriving = office.subscribe(ChangeFilter::all().collection(INSPECTIONS))?;

    // The inspector walks the sites and records findings on the tablet (offline or not:
    // each put is durable at once and the driver pushes it when it can).
    let inspector = {
        let tablet = tablet.clone();
        tokio::spawn(async move {
            for (key, finding) in findings() {
                tokio::time::sleep(Duration::from_millis(150)).await;
                // A blocking SQLite write: keep it off the async worker threads.
                let tablet = tablet.clone();
                tokio::task::spawn_blocking(move || tablet.put_json(INSPECTIONS, key, &finding))
                    .await??;
                println!("tablet     recorded {key}");
            }
            Ok::<(), Error>(())
        })
    };

    let expected = findings().len();
    let mut seen = 0;
    while seen < expected {
        let change = match tokio::time::timeout(TIMEOUT, arriving.next()).await {
            Err(_) => return Err("no new finding reached the office in time".into()),
            Ok(None) => return Err("the office's replica closed".into()),
            Ok(Some(Err(lagged))) => {
                // Fell behind (not here: five findings): re-read what the screen shows.
                println!("office     {lagged}; re-reading the list");
                seen = office.list(INSPECTIONS)?.len();
                continue;
            }
            Ok(Some(Ok(change))) => change,
        };
        let Origin::Remote(author) = change.origin else {
            continue;
        };
        let Some(f) = office.get_json::<Finding>(INSPECTIONS, &change.key)? else {
            continue;
        };
        seen += 1;
        println!(
            "office     new finding from {}: {} [{}] {}: {}",
            short(author),
            change.key,
            f.severity,
            f.item,
            f.note
        );
    }
    inspector.await??;

    // `severity` has no index: `find` says so instead of scanning everything.
    match office.find(INSPECTIONS, "severity", &json!("critical")) {
        Err(ReadError::NoIndex { field, .. }) => {
            println!("office     no index on {field:?}; using the site index and a scan instead")
        }
        other => return Err(format!("expected NoIndex, got {other:?}").into()),
    }
    let reviewed = "2026-12-03/bridge-14/003";
    let mut on_tablet = tablet.subscribe(ChangeFilter::all().collection(INSPECTIONS))?;
    // The office reviews the critical finding: a patch of a `fields` record sets `status`
    // and `reviewed_by` and leaves the tablet's fields as they are.
    office.patch(
        INSPECTIONS,
        reviewed,
        &json!({"status": "repair ordered", "reviewed_by": "office"}),
    )?;
    loop {
        match tokio::time::timeout(TIMEOUT, on_tablet.next()).await {
            Ok(Some(Ok(c))) if c.key == reviewed && matches!(c.origin, Origin::Remote(_)) => break,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Err("the review never reached the tablet".into()),
        }
    }
    let merged = tablet
        .get(INSPECTIONS, reviewed)?
        .ok_or("the reviewed finding is gone")?;
    println!(
        "tablet     {reviewed} is now {}",
        String::from_utf8_lossy(&merged)
    );

    // Queries on the office: by site through the index, by day through a key-prefix scan.
    println!();
    println!("summary");
    for site in ["bridge-14", "tunnel-3"] {
        let at_site = office.find(INSPECTIONS, "site", &json!(site))?;
        let keys: Vec<&str> = at_site.iter().map(|(k, _)| k.as_str()).collect();
        println!(
            "  {site:<10} {} findings: {}",
            at_site.len(),
            keys.join(", ")
        );
    }
    let today = office.scan(INSPECTIONS, ScanOptions::new().prefix("2026-12-03/"))?;
    let mut by_severity: BTreeMap<String, usize> = BTreeMap::new();
    for (_, value) in &today {
        // `scan` returns the stored bytes: the merged JSON object of each finding.
        let finding: Finding = serde_json::from_slice(value)?;
        *by_severity.entry(finding.severity).or_default() += 1;
    }
    let counts: Vec<String> = by_severity
        .iter()
        .map(|(severity, n)| format!("{n} {severity}"))
        .collect();
    println!(
        "  2026-12-03 {} findings: {}",
        today.len(),
        counts.join(", ")
    );
    let open: Vec<String> = office
        .list(INSPECTIONS)?
        .into_iter()
        .filter_map(|(key, value)| {
            let finding: Finding = serde_json::from_slice(&value).ok()?;
            finding.status.is_none().then_some(key)
        })
        .collect();
    println!("  not yet reviewed: {} ({})", open.len(), open.join(", "));
    assert_eq!(office.state_root()?, tablet.state_root()?, "devices differ");
    println!("  both devices hold the same state (equal state roots)");

    // Shut down: stop the drivers (a running sync is cancelled at its next step, losing
    // nothing), close the replicas, stop the server.
    let office_status = office_sync.status().borrow().clone();
    office_sync.stop().await;
    tablet_sync.stop().await;
    println!(
        "office     driver ran {} syncs; stopped",
        office_status.syncs
    );
    drop((office, tablet));
    let _ = stop_server.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// A one-time enrollment bundle for the account (the operator's `sealsync admin enroll`).
fn bundle(data: &Path) -> Result<String, Error> {
    Ok(sealsync_server::enroll_ticket(
        data,
        "acme-inspections",
        Duration::from_secs(600),
        None,
    )?)
}

/// Pairs the pending `tablet` with the trusted `office`: the office shows a one-time code,
/// the inspector types it on the tablet, and both sides run at the same time.
async fn pair(office: &Replica, tablet: &Replica) -> Result<(), Error> {
    let waiting = office.pending_devices().await?;
    for d in &waiting {
        println!(
            "office     pending device {} ({})",
            short(d.device_id),
            d.name
        );
    }
    let approval = office.begin_approval(tablet.device_id(), TIMEOUT).await?;
    // In the app the office shows this code and the inspector types it on the tablet.
    let code = approval.code().to_string();
    println!("office     pairing code {code}");
    let (approved, joined) = tokio::join!(
        office.finish_approval(approval),
        tablet.join(&code, TIMEOUT)
    );
    approved?;
    joined?;
    println!("tablet     paired: {}", tablet.status()?.state);
    Ok(())
}

/// Waits until the driver's first sync went through.
async fn wait_connected(who: &str, driver: &SyncHandle) -> Result<(), Error> {
    let mut status = driver.status();
    let s = tokio::time::timeout(
        TIMEOUT,
        status.wait_for(|s| s.stopped || (s.last_synced.is_some() && s.connected)),
    )
    .await??
    .clone();
    if let Some(e) = &s.last_error {
        return Err(format!("{who}: sync failed: {e}").into());
    }
    println!("{who:<10} sync driver running");
    Ok(())
}

/// First 8 hex digits of a device id.
fn short(id: impl std::fmt::Display) -> String {
    id.to_string().chars().take(8).collect()
}
