//! Storage tests on a real SQLite file in a temporary directory.

use sealsync_core::{ChainCheck, CollectionId, DeviceId, verify_batch};
use sealsync_crypto::SigningKey;

use super::*;

const ACCOUNT: &str = "acme";
const CID: CollectionId = CollectionId([7; 16]);

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
    (dir, store)
}

fn now() -> u64 {
    crate::datadir::now_ms()
}

fn device(id: u8) -> NewDevice {
    NewDevice {
        device_id: DeviceId([id; 16]),
        name: format!("dev{id}"),
        sign_pk: [id; 32],
        kx_pk: [id; 32],
        cert_fp: [id; 32],
        enrolled_ms: now(),
        founds_account: false,
    }
}

fn ticket(store: &SqliteStore, byte: u8, account: &str, expires_ms: u64) -> [u8; 32] {
    let hash = [byte; 32];
    store
        .insert_ticket_blocking(&NewTicket {
            hash,
            account: account.into(),
            created_ms: now(),
            expires_ms,
        })
        .unwrap();
    hash
}

/// A device able to seal batches.
struct Author {
    sign: SigningKey,
    id: DeviceId,
    account: String,
}

impl Author {
    fn new(account: &str) -> Self {
        let sign = SigningKey::generate();
        let id = DeviceId(sealsync_crypto::device_id(&sign.verifying_key()));
        Author {
            sign,
            id,
            account: account.into(),
        }
    }

    fn batch(&self, cid: CollectionId, seq: u64, prev: [u8; 32], value: &[u8]) -> PushItem {
        let sealed = sealsync_testkit::seal_one_mutation(
            &self.sign,
            &self.account,
            cid,
            seq,
            prev,
            "k",
            value,
        );
        let vk = self.sign.verifying_key();
        let verified = verify_batch(&sealed.sealed, |_| Some(vk)).unwrap();
        PushItem {
            verified,
            bytes: sealsync_proto::encode(&sealed.sealed),
        }
    }
}

fn hash_of(item: &PushItem) -> [u8; 32] {
    item.verified.hash
}

async fn log(store: &SqliteStore, account: &str, cid: CollectionId) -> Vec<(u64, Vec<u8>)> {
    store
        .pull(account.into(), cid, 0, 1000, usize::MAX)
        .await
        .unwrap()
        .entries
}

#[tokio::test]
async fn ticket_is_single_use() {
    // BI-13
    let (_d, s) = store();
    let t = ticket(&s, 1, ACCOUNT, now() + 60_000);
    assert_eq!(s.enroll(t, now(), device(1)).await.unwrap(), ACCOUNT);
    let again = s.enroll(t, now(), device(2)).await;
    assert!(matches!(again, Err(StoreError::TicketInvalid)), "{again:?}");
    assert!(s.device(DeviceId([2; 16])).await.unwrap().is_none());
    let d1 = s.device(DeviceId([1; 16])).await.unwrap().unwrap();
    assert_eq!(d1.account, ACCOUNT);
    assert_eq!(d1.state, AdmissionState::Active);
    assert_eq!(d1.cert_fp, [1; 32]);
}

#[tokio::test]
async fn ticket_expires_and_unknown_is_refused() {
    // BI-13
    let (_d, s) = store();
    let t0 = now();
    let t = ticket(&s, 1, ACCOUNT, t0 + 1000);
    assert!(matches!(
        s.enroll(t, t0 + 1000, device(1)).await,
        Err(StoreError::TicketInvalid)
    ));
    assert!(matches!(
        s.enroll([9; 32], t0, device(1)).await,
        Err(StoreError::TicketInvalid)
    ));
    // The refused attempt did not consume it: one ms earlier it still works.
    assert_eq!(s.enroll(t, t0 + 999, device(1)).await.unwrap(), ACCOUNT);
}

#[tokio::test]
async fn duplicate_device_keeps_the_ticket_unused() {
    let (_d, s) = store();
    let t1 = ticket(&s, 1, ACCOUNT, now() + 60_000);
    let t2 = ticket(&s, 2, "other", now() + 60_000);
    s.enroll(t1, now(), device(1)).await.unwrap();
    assert!(matches!(
        s.enroll(t2, now(), device(1)).await,
        Err(StoreError::DeviceExists)
    ));
    assert_eq!(
        s.device(DeviceId([1; 16])).await.unwrap().unwrap().account,
        ACCOUNT
    );
    assert_eq!(s.enroll(t2, now(), device(3)).await.unwrap(), "other");
    let devs = s.account_devices(ACCOUNT.into()).await.unwrap();
    assert_eq!(devs.len(), 1);
}

#[tokio::test]
async fn two_founders_of_one_account_cannot_both_enroll() {
    // MS-09: the check is in the transaction that spends the ticket, so two `--new-account`
    // enrollments that both passed the handler's early check cannot both succeed.
    let (_d, s) = store();
    let t1 = ticket(&s, 1, ACCOUNT, now() + 60_000);
    let t2 = ticket(&s, 2, ACCOUNT, now() + 60_000);
    let founder = |id| NewDevice {
        founds_account: true,
        ..device(id)
    };
    s.enroll(t1, now(), founder(1)).await.unwrap();
    assert!(matches!(
        s.enroll(t2, now(), founder(2)).await,
        Err(StoreError::Conflict(_))
    ));
    // Nothing changed: the ticket is unspent and the second device is unknown.
    assert!(s.device(DeviceId([2; 16])).await.unwrap().is_none());
    assert_eq!(s.ticket_account(t2, now()).await.unwrap(), ACCOUNT);
    // A device that joins (not founding) is not refused by this check.
    s.enroll(t2, now(), device(2)).await.unwrap();
    // Another account can still be founded.
    let t3 = ticket(&s, 3, "other", now() + 60_000);
    s.enroll(t3, now(), founder(3)).await.unwrap();
}

#[tokio::test]
async fn push_appends_in_order_and_duplicates_are_idempotent() {
    // NA-08, CF-05
    let (_d, s) = store();
    let a = Author::new(ACCOUNT);
    let b1 = a.batch(CID, 1, [0; 32], b"one");
    let b2 = a.batch(CID, 2, hash_of(&b1), b"two");
    let out = s
        .push(ACCOUNT.into(), vec![b1.clone(), b2.clone()], now())
        .await
        .unwrap();
    assert_eq!(
        out.iter()
            .map(|o| (o.seq, o.log_index, o.duplicate))
            .collect::<Vec<_>>(),
        [(1, 1, false), (2, 2, false)]
    );
    // The same batch again: acknowledged with its original index, stored once.
    let out = s
        .push(ACCOUNT.into(), vec![b1.clone()], now())
        .await
        .unwrap();
    assert_eq!((out[0].log_index, out[0].duplicate), (1, true));
    let out = s
        .push(ACCOUNT.into(), vec![b1.clone(), b2.clone()], now())
        .await
        .unwrap();
    assert!(out.iter().all(|o| o.duplicate));
    let entries = log(&s, ACCOUNT, CID).await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0], (1, b1.bytes));
    assert_eq!(entries[1], (2, b2.bytes));
}

#[tokio::test]
async fn chain_head_is_the_authors_own_last_batch() {
    // CF-10: a device reads back the head its next push is checked against.
    let (_d, s) = store();
    let a = Author::new(ACCOUNT);
    let b = Author::new(ACCOUNT);
    assert_eq!(s.chain_head(ACCOUNT.into(), CID, a.id).await.unwrap(), None);
    let b1 = a.batch(CID, 1, [0; 32], b"one");
    let b2 = a.batch(CID, 2, hash_of(&b1), b"two");
    s.push(ACCOUNT.into(), vec![b1, b2.clone()], now())
        .await
        .unwrap();
    assert_eq!(
        s.chain_head(ACCOUNT.into(), CID, a.id).await.unwrap(),
        Some((2, hash_of(&b2)))
    );
    // Per author, collection and account.
    assert_eq!(s.chain_head(ACCOUNT.into(), CID, b.id).await.unwrap(), None);
    assert_eq!(
        s.chain_head(ACCOUNT.into(), CollectionId([8; 16]), a.id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.chain_head("other".into(), CID, a.id).await.unwrap(), None);
}

#[tokio::test]
async fn gap_is_refused_and_the_whole_request_rolls_back() {
    // BI-07, MS-26
    let (_d, s) = store();
    let a = Author::new(ACCOUNT);
    let b1 = a.batch(CID, 1, [0; 32], b"one");
    let b3 = a.batch(CID, 3, [5; 32], b"three");
    let r = s.push(ACCOUNT.into(), vec![b3.clone()], now()).await;
    assert!(
        matches!(
            r,
            Err(StoreError::Chain {
                index: 0,
                check: ChainCheck::Gap {
                    expected: 1,
                    got: 3
                }
            })
        ),
        "{r:?}"
    );
    let r = s.push(ACCOUNT.into(), vec![b1.clone(), b3], now()).await;
    assert!(
        matches!(r, Err(StoreError::Chain { index: 1, .. })),
        "{r:?}"
    );
    assert!(
        log(&s, ACCOUNT, CID).await.is_empty(),
        "part of a refused request was stored"
    );
    // Seq 1 is still the next one.
    let out = s.push(ACCOUNT.into(), vec![b1], now()).await.unwrap();
    assert_eq!((out[0].log_index, out[0].duplicate), (1, false));
}

#[tokio::test]
async fn equivocation_is_refused_with_no_change() {
    // BI-08, CD-05
    let (_d, s) = store();
    let a = Author::new(ACCOUNT);
    let b1 = a.batch(CID, 1, [0; 32], b"one");
    let b2 = a.batch(CID, 2, hash_of(&b1), b"two");
    s.push(ACCOUNT.into(), vec![b1.clone(), b2.clone()], now())
        .await
        .unwrap();
    // Another batch for stored seq 1 (and for the head seq 2), and a wrong prev hash for 3.
    let other1 = a.batch(CID, 1, [0; 32], b"evil");
    let other2 = a.batch(CID, 2, hash_of(&b1), b"evil");
    let bad_prev = a.batch(CID, 3, [1; 32], b"three");
    for (item, seq) in [(other1, 1), (other2, 2), (bad_prev, 3)] {
        let r = s.push(ACCOUNT.into(), vec![item], now()).await;
        assert!(
            matches!(r, Err(StoreError::Chain { check: ChainCheck::Fork { seq: s }, .. }) if s == seq),
            "{r:?}"
        );
    }
    let entries = log(&s, ACCOUNT, CID).await;
    assert_eq!(entries, vec![(1, b1.bytes), (2, b2.bytes.clone())]);
    // The chain head is unchanged: the real seq 3 is accepted at index 3.
    let b3 = a.batch(CID, 3, hash_of(&b2), b"three");
    assert_eq!(
        s.push(ACCOUNT.into(), vec![b3], now()).await.unwrap()[0].log_index,
        3
    );
}

#[tokio::test]
async fn logs_are_per_account_and_collection_and_interleave_authors() {
    // BI-16
    let (_d, s) = store();
    let a = Author::new(ACCOUNT);
    let b = Author::new(ACCOUNT);
    let x = Author::new("other");
    let a1 = a.batch(CID, 1, [0; 32], b"a1");
    let b1 = b.batch(CID, 1, [0; 32], b"b1");
    let a2 = a.batch(CID, 2, hash_of(&a1), b"a2");
    let other_cid = CollectionId([8; 16]);
    let a_other = a.batch(other_cid, 1, [0; 32], b"elsewhere");
    s.push(ACCOUNT.into(), vec![a1], now()).await.unwrap();
    s.push(ACCOUNT.into(), vec![b1, a_other], now())
        .await
        .unwrap();
    let out = s.push(ACCOUNT.into(), vec![a2], now()).await.unwrap();
    assert_eq!(out[0].log_index, 3);
    let x1 = x.batch(CID, 1, [0; 32], b"x1");
    assert_eq!(
        s.push("other".into(), vec![x1], now()).await.unwrap()[0].log_index,
        1
    );
    let idx: Vec<u64> = log(&s, ACCOUNT, CID)
        .await
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert_eq!(idx, [1, 2, 3]);
    assert_eq!(log(&s, ACCOUNT, other_cid).await.len(), 1);
    assert_eq!(log(&s, "other", CID).await.len(), 1);
    assert!(log(&s, "nobody", CID).await.is_empty());
    // Log heads (what a watch compares with): per account, 0 for a log that is not there.
    let unknown = CollectionId([9; 16]);
    let heads = s.log_heads(ACCOUNT.into(), vec![CID, other_cid, unknown]);
    assert_eq!(heads.await.unwrap(), [3, 1, 0]);
    assert_eq!(s.log_heads("other".into(), vec![CID]).await.unwrap(), [1]);
    assert_eq!(s.log_heads("nobody".into(), vec![CID]).await.unwrap(), [0]);
}

#[tokio::test]
async fn pull_pages_by_count_bytes_and_cursor() {
    // BI-17
    let (_d, s) = store();
    let a = Author::new(ACCOUNT);
    let mut prev = [0; 32];
    let mut items = Vec::new();
    for seq in 1..=5 {
        let item = a.batch(CID, seq, prev, &[seq as u8; 100]);
        prev = hash_of(&item);
        items.push(item);
    }
    let size = items[0].bytes.len();
    s.push(ACCOUNT.into(), items, now()).await.unwrap();
    let page = s.pull(ACCOUNT.into(), CID, 0, 2, usize::MAX).await.unwrap();
    assert_eq!(page.entries.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2]);
    assert!(page.more);
    let page = s
        .pull(ACCOUNT.into(), CID, 2, 10, usize::MAX)
        .await
        .unwrap();
    assert_eq!(
        page.entries.iter().map(|e| e.0).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    assert!(!page.more);
    // Byte cap: two entries fit, the third would not.
    let page = s
        .pull(ACCOUNT.into(), CID, 0, 10, 2 * size + size / 2)
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 2);
    assert!(page.more);
    // The first entry is always served, whatever its size.
    let page = s.pull(ACCOUNT.into(), CID, 0, 10, 1).await.unwrap();
    assert_eq!(page.entries.len(), 1);
    assert!(page.more);
    let page = s
        .pull(ACCOUNT.into(), CID, 5, 10, usize::MAX)
        .await
        .unwrap();
    assert!(page.entries.is_empty() && !page.more);
    let page = s
        .pull(ACCOUNT.into(), CID, u64::MAX, 10, usize::MAX)
        .await
        .unwrap();
    assert!(page.entries.is_empty() && !page.more);
}

#[tokio::test]
async fn roster_appends_only_the_next_entry() {
    let (_d, s) = store();
    let row = |seq: u64, b: u8| RosterRow {
        seq,
        subject: DeviceId([b; 16]),
        hash: [b; 32],
        entry: vec![b],
    };
    assert!(matches!(
        s.append_roster(ACCOUNT.into(), row(1, 1)).await,
        Err(StoreError::Conflict(_))
    ));
    s.append_roster(ACCOUNT.into(), row(0, 1)).await.unwrap();
    assert!(matches!(
        s.append_roster(ACCOUNT.into(), row(0, 2)).await,
        Err(StoreError::Conflict(_))
    ));
    s.append_roster(ACCOUNT.into(), row(1, 2)).await.unwrap();
    s.append_roster("other".into(), row(0, 3)).await.unwrap();
    assert_eq!(
        s.roster(ACCOUNT.into(), 0).await.unwrap(),
        vec![row(0, 1), row(1, 2)]
    );
    assert_eq!(s.roster(ACCOUNT.into(), 1).await.unwrap(), vec![row(1, 2)]);
    assert!(s.roster(ACCOUNT.into(), u64::MAX).await.unwrap().is_empty());
    assert!(
        s.is_roster_member(ACCOUNT.into(), DeviceId([2; 16]))
            .await
            .unwrap()
    );
    assert!(
        !s.is_roster_member(ACCOUNT.into(), DeviceId([3; 16]))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn recovery_collections_and_envelopes_are_idempotent_and_refuse_changes() {
    let (_d, s) = store();
    assert_eq!(
        s.put_recovery(ACCOUNT.into(), vec![1, 2], now())
            .await
            .unwrap(),
        Written::Created
    );
    assert_eq!(
        s.put_recovery(ACCOUNT.into(), vec![1, 2], now())
            .await
            .unwrap(),
        Written::Unchanged
    );
    assert!(matches!(
        s.put_recovery(ACCOUNT.into(), vec![3], now()).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.recovery(ACCOUNT.into()).await.unwrap(), Some(vec![1, 2]));
    assert_eq!(s.recovery("other".into()).await.unwrap(), None);

    let coll = |dev: u8, bytes: &[u8]| NewCollection {
        account: ACCOUNT.into(),
        collection: CID,
        device: DeviceId([dev; 16]),
        hash: crate::pki::sha256(bytes),
        sealed: bytes.to_vec(),
        created_ms: now(),
    };
    assert_eq!(
        s.put_collection(coll(1, b"d1")).await.unwrap(),
        Written::Created
    );
    assert_eq!(
        s.put_collection(coll(1, b"d1")).await.unwrap(),
        Written::Unchanged
    );
    assert!(matches!(
        s.put_collection(coll(1, b"d1-other")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.put_collection(coll(2, b"d2")).await.unwrap(),
        Written::Created
    );
    assert_eq!(
        s.collections(ACCOUNT.into()).await.unwrap(),
        vec![b"d1".to_vec(), b"d2".to_vec()]
    );
    assert!(s.collections("other".into()).await.unwrap().is_empty());

    let env = |to: u8, bytes: &[u8]| NewEnvelope {
        account: ACCOUNT.into(),
        sender: DeviceId([1; 16]),
        recipient: DeviceId([to; 16]),
        hash: crate::pki::sha256(bytes),
        sealed: bytes.to_vec(),
        created_ms: now(),
    };
    assert_eq!(
        s.put_envelope(env(2, b"e1")).await.unwrap(),
        Written::Created
    );
    assert_eq!(
        s.put_envelope(env(2, b"e1")).await.unwrap(),
        Written::Unchanged
    );
    assert_eq!(
        s.put_envelope(env(2, b"e2")).await.unwrap(),
        Written::Created
    );
    assert_eq!(
        s.put_envelope(env(3, b"e3")).await.unwrap(),
        Written::Created
    );
    assert_eq!(
        s.envelopes_for(ACCOUNT.into(), DeviceId([2; 16]))
            .await
            .unwrap(),
        vec![b"e1".to_vec(), b"e2".to_vec()]
    );
    assert!(
        s.envelopes_for("other".into(), DeviceId([2; 16]))
            .await
            .unwrap()
            .is_empty()
    );
}

#[test]
fn database_is_wal_with_full_sync_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        ticket(&s, 1, ACCOUNT, 5);
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let n: i64 = conn
        .query_row("SELECT count(*) FROM tickets", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    drop(conn);
    // Reopening migrates nothing and keeps the data.
    let s = SqliteStore::open(&path).unwrap();
    let sync: i64 = s
        .inner
        .writer
        .lock()
        .unwrap()
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2, "synchronous must be FULL");
    assert!(s.sample_batch_blocking().unwrap().is_none());
}

#[tokio::test]
async fn ticket_account_checks_without_spending() {
    let (_d, s) = store();
    let hash = ticket(&s, 4, ACCOUNT, now() + 60_000);
    assert_eq!(s.ticket_account(hash, now()).await.unwrap(), ACCOUNT);
    assert_eq!(s.ticket_account(hash, now()).await.unwrap(), ACCOUNT);
    s.enroll(hash, now(), device(1)).await.unwrap();
    assert!(matches!(
        s.ticket_account(hash, now()).await,
        Err(StoreError::TicketInvalid)
    ));
    let expired = ticket(&s, 5, ACCOUNT, now());
    assert!(s.ticket_account(expired, now()).await.is_err());
    assert!(s.ticket_account([6; 32], now()).await.is_err());
}

mod pairing;
