//! `Replica::scan`, `create_index` and `find` between two real devices: an index declared
//! before its collection exists is filled by pulled records and follows later remote edits
//! and deletes.

use sealsync_client::{ReadError, ScanOptions};
use serde_json::json;

use crate::kit::{TestServer, approved_pair};

fn keys(records: &[(String, Vec<u8>)]) -> Vec<&str> {
    records.iter().map(|(k, _)| k.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_follows_pulled_records() {
    let server = TestServer::start().await;
    let (a, b, _) = approved_pair(&server, "acme").await;
    // Declared on `a` before `a` knows the collection: nothing is created.
    a.create_index("people", "city").expect("index");
    assert!(a.status().expect("status").collections.is_empty());
    for (k, city) in [("alice", "Oslo"), ("bob", "Rome"), ("carol", "Oslo")] {
        b.put("people", k, json!({ "city": city }).to_string().as_bytes())
            .expect("put");
    }
    b.sync().await.expect("sync b");
    a.sync().await.expect("sync a");
    let oslo = a.find("people", "city", &json!("Oslo")).expect("find");
    assert_eq!(keys(&oslo), ["alice", "carol"]);
    assert_eq!(oslo[0].1, br#"{"city":"Oslo"}"#);
    let page = a
        .scan("people", ScanOptions::new().start_after("alice").limit(1))
        .expect("scan");
    assert_eq!(keys(&page), ["bob"]);
    assert_eq!(
        keys(
            &a.scan("people", ScanOptions::new().reverse(true))
                .expect("scan")
        ),
        ["carol", "bob", "alice"]
    );

    b.put("people", "carol", br#"{"city":"Rome"}"#)
        .expect("put");
    b.delete("people", "alice").expect("delete");
    b.sync().await.expect("sync b");
    a.sync().await.expect("sync a");
    assert!(
        a.find("people", "city", &json!("Oslo"))
            .expect("find")
            .is_empty()
    );
    assert_eq!(
        keys(&a.find("people", "city", &json!("Rome")).expect("find")),
        ["bob", "carol"]
    );
    // `b` never made the index: a typed error, not an empty answer.
    assert!(matches!(
        b.find("people", "city", &json!("Rome")),
        Err(ReadError::NoIndex { .. })
    ));
    b.create_index("people", "city")
        .expect("index existing data");
    assert_eq!(
        keys(&b.find("people", "city", &json!("Rome")).expect("find")),
        ["bob", "carol"]
    );
    server.stop().await;
}
