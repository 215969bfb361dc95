//! Tamper tests for batch chains and clocks: replay, gap, fork, seq range and HLC bounds
//! (MS-25, MS-26, MS-31, BI-07, CD-08, BI-19). Each refusal asserts the specific
//! `BatchError` or `ChainCheck`.

use sealsync_proto::Sealed;

use super::fixture::{fx, plain, reseal};
use super::{ACCOUNT, Outcome, World, device_key};
use crate::batch::{ChainCheck, ChainState, SealedBatch, check_chain, open_batch, seal_batch};
use crate::error::BatchError;
use crate::hlc::{Hlc, MAX_DRIFT_MS};
use crate::policy::Policy;
use crate::verify::batch_hash;

#[test]
fn replay_gap_and_fork_are_detected() {
    // MS-25 (replay), MS-26 and BI-07 (gap), CD-05 / BI-08 (equivocation).
    let f = fx();
    let b1 = f.seal(1, [0; 32], &[5]);
    let b2 = f.seal(2, b1.hash, &[6]);
    let b3 = f.seal(3, b2.hash, &[7]);
    let v = |s: &SealedBatch| f.verify(&s.sealed).unwrap();
    let s0 = ChainState::default();
    let s1 = s0.advance(&v(&b1));
    let s2 = s1.advance(&v(&b2));
    assert_eq!(check_chain(&s1, &v(&b1), |_| None), ChainCheck::Duplicate);
    assert_eq!(
        check_chain(&s1, &v(&b3), |_| None),
        ChainCheck::Gap {
            expected: 2,
            got: 3
        }
    );
    assert_eq!(
        check_chain(&s0, &v(&b2), |_| None),
        ChainCheck::Gap {
            expected: 1,
            got: 2
        }
    );
    assert_eq!(
        check_chain(&s2, &v(&b1), |s| (s == 1).then_some(b1.hash)),
        ChainCheck::Duplicate
    );
    assert_eq!(
        check_chain(&s2, &v(&b1), |_| None),
        ChainCheck::Fork { seq: 1 },
        "unknown old hash"
    );
    let b2x = f.seal(2, b1.hash, &[6, 8]);
    assert_eq!(
        check_chain(&s2, &v(&b2x), |_| None),
        ChainCheck::Fork { seq: 2 }
    );
    let b2y = f.seal(2, [9; 32], &[6]);
    assert_eq!(
        check_chain(&s1, &v(&b2y), |_| None),
        ChainCheck::Fork { seq: 2 },
        "wrong prev hash"
    );

    // Through the model: held until the gap fills, replay is a no-op, fork refused.
    let mut w = World::new(Policy::Lww, 2, &[]);
    w.write(0, "k", Some(b"one".to_vec()), 1_000);
    w.flush(0);
    w.write(0, "k", None, 2_000);
    w.flush(0);
    w.write(0, "j", Some(b"x".to_vec()), 3_000);
    w.flush(0);
    let pool: Vec<Sealed> = w.pool.iter().map(|(_, s)| s.clone()).collect();
    let mut r = w.observer();
    assert_eq!(r.receive(&pool[2]).unwrap(), Outcome::Held);
    assert_eq!(r.receive(&pool[2]).unwrap(), Outcome::Held);
    assert_eq!(r.held(), 1);
    assert_eq!(r.receive(&pool[0]).unwrap(), Outcome::Applied);
    assert_eq!(r.receive(&pool[1]).unwrap(), Outcome::Applied);
    assert_eq!(
        r.held(),
        0,
        "held batch applied once its predecessor arrived"
    );
    let root = r.root();
    assert_eq!(
        r.receive(&pool[0]).unwrap(),
        Outcome::Duplicate,
        "replay never resurrects"
    );
    assert_eq!(r.root(), root);
    assert_eq!(r.version_count(), 3);
    let equivocation = {
        let dev = &w.devices[0];
        let ck = w.keys.collection_key(ACCOUNT, &w.collection, 1).unwrap();
        // Seq 2 again, on top of batch 1, with other content.
        let mut d = f.draft(2, batch_hash(&pool[0]), &[9_999_999_999]);
        (d.collection, d.device) = (w.collection, dev.id);
        seal_batch(d, &device_key(0), &ck).unwrap()
    };
    let err = r.receive(&equivocation.sealed).unwrap_err();
    assert_eq!(err, BatchError::Chain(ChainCheck::Fork { seq: 2 }));
    assert_eq!(err.check(), "chain");
    assert_eq!(r.root(), root, "state unchanged");
}

#[test]
fn seq_zero_and_max_are_refused_without_overflow() {
    // BI-07, MS-31: only signed, chained numbers count; u64::MAX cannot lock a log.
    let f = fx();
    for bad in [0, u64::MAX] {
        assert_eq!(
            seal_batch(f.draft(bad, [0; 32], &[5]), &f.a, &f.ck).unwrap_err(),
            BatchError::Seq(bad)
        );
        let mut h = f.seal(1, [0; 32], &[5]).header;
        h.seq = bad;
        let s = reseal(&h, &plain(&[5]), &f.ck, &f.a);
        assert_eq!(f.verify(&s).unwrap_err(), BatchError::Seq(bad));
    }
    let sb = f.seal(1, [0; 32], &[5]);
    let mut v = f.verify(&sb.sealed).unwrap();
    v.header.seq = u64::MAX;
    assert_eq!(
        check_chain(&ChainState::default(), &v, |_| None),
        ChainCheck::Gap {
            expected: 1,
            got: u64::MAX
        }
    );
    v.header.seq = 0;
    assert_eq!(
        check_chain(&ChainState::default(), &v, |_| None),
        ChainCheck::Gap {
            expected: 1,
            got: 0
        }
    );
    let full = ChainState {
        last_seq: u64::MAX,
        ..ChainState::default()
    };
    v.header.seq = 5;
    assert_eq!(
        check_chain(&full, &v, |_| None),
        ChainCheck::Fork { seq: 5 }
    );
    v.header.seq = u64::MAX;
    assert_eq!(
        check_chain(&full, &v, |_| None),
        ChainCheck::Fork { seq: u64::MAX }
    );
}

#[test]
fn clocks_beyond_hlc_max_or_out_of_order_are_refused() {
    // CD-08: a mutation later than the signed hlc_max.
    let f = fx();
    let mut h = f.seal(1, [0; 32], &[10, 20]).header;
    h.hlc_max = 15;
    let s = reseal(&h, &plain(&[10, 20]), &f.ck, &f.a);
    assert_eq!(
        f.verify_open(&s).unwrap_err(),
        BatchError::ClockAhead {
            hlc: Hlc(20),
            limit: Hlc(15)
        }
    );
    assert_eq!(
        BatchError::ClockAhead {
            hlc: Hlc(1),
            limit: Hlc(0)
        }
        .check(),
        "clock"
    );

    // hlc_max itself beyond the drift bound (the server's check on push).
    let now = 1_700_000_000_000;
    let mut h = f.seal(1, [0; 32], &[10]).header;
    h.hlc_max = Hlc::from_parts(now + MAX_DRIFT_MS + 1, 0).0;
    let v = f.verify(&reseal(&h, &plain(&[10]), &f.ck, &f.a)).unwrap();
    assert!(matches!(
        v.check_clock(now),
        Err(BatchError::ClockAhead { .. })
    ));
    h.hlc_max = Hlc::from_parts(now + MAX_DRIFT_MS, 0).0;
    let v = f.verify(&reseal(&h, &plain(&[10]), &f.ck, &f.a)).unwrap();
    v.check_clock(now).unwrap();

    // BI-19: non-increasing clocks inside a batch, or not after the previous batch.
    let mut h = f.seal(1, [0; 32], &[10]).header;
    h.hlc_max = 30;
    let s = reseal(&h, &plain(&[20, 20]), &f.ck, &f.a);
    assert_eq!(
        f.verify_open(&s).unwrap_err(),
        BatchError::ClockOrder {
            hlc: Hlc(20),
            after: Hlc(20)
        }
    );
    let sb = f.seal(1, [0; 32], &[10, 20]);
    let v = f.verify(&sb.sealed).unwrap();
    let chain = ChainState {
        last_hlc: Hlc(10),
        ..ChainState::default()
    };
    assert_eq!(
        open_batch(&v, &sb.sealed, &f.ck, &chain).unwrap_err(),
        BatchError::ClockOrder {
            hlc: Hlc(10),
            after: Hlc(10)
        }
    );
    assert_eq!(
        seal_batch(f.draft(1, [0; 32], &[7, 3]), &f.a, &f.ck).unwrap_err(),
        BatchError::ClockOrder {
            hlc: Hlc(3),
            after: Hlc(7)
        }
    );
}
