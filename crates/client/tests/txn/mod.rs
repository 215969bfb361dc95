//! Transactions on the wire: a transaction over two collections travels as one batch per
//! collection, and another device pulls all of it.

use sealsync_client::{Policy, WriteError};
use serde::{Deserialize, Serialize};

use super::{TestServer, pair};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Line {
    item: String,
    qty: u32,
    note: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_over_two_collections_pushes_one_batch_per_collection_and_is_pulled_whole() {
    let server = TestServer::start().await;
    let (a, b) = pair(&server).await;
    a.create_collection("lines", Policy::Fields).unwrap();
    a.put("stock", "tea", b"50").unwrap();
    let report = a.sync().await.unwrap();
    assert!(report.errors.is_empty(), "{report}");
    b.sync().await.unwrap();

    a.transaction(|tx| {
        for i in 0..40u32 {
            let line = Line {
                item: format!("tea №{i}"),
                qty: i,
                note: (i % 2 == 0).then(|| "😀 even".to_string()),
            };
            tx.put_json("lines", &format!("o{i:02}"), &line)?;
        }
        tx.patch("lines", "o00", &serde_json::json!({"qty": 99}))?;
        tx.delete("stock", "tea")?;
        tx.put("stock", "coffee", b"7")?;
        Ok::<_, WriteError>(())
    })
    .unwrap();
    let report = a.sync().await.unwrap();
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(
        report.pushed_batches, 2,
        "one batch per collection: {report}"
    );

    let report = b.sync().await.unwrap();
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.pulled_batches, 2, "{report}");
    assert_eq!(report.applied_mutations, 40 + 1 + 2, "{report}");
    assert_eq!(b.get("stock", "tea").unwrap(), None);
    assert_eq!(
        b.get("stock", "coffee").unwrap().as_deref(),
        Some(&b"7"[..])
    );
    assert_eq!(b.list("lines").unwrap().len(), 40);
    let o00: Line = b.get_json("lines", "o00").unwrap().unwrap();
    assert_eq!(
        o00,
        Line {
            item: "tea №0".into(),
            qty: 99,
            note: Some("😀 even".into())
        }
    );
    let o07: Line = b.get_json("lines", "o07").unwrap().unwrap();
    assert_eq!((o07.qty, o07.note), (7, None));
    assert_eq!(a.state_root().unwrap(), b.state_root().unwrap());
    server.stop().await;
}
