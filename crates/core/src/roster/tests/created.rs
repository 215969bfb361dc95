//! Creation times of roster entries, the genesis included (BI-19).

use super::*;

#[test]
fn genesis_created_ms_is_checked() {
    // BI-19: a genesis stamped zero or absurdly far ahead is refused. Accepted, it would
    // freeze the roster for good: every later entry may be at most a day older than the
    // one before, so no device could ever be added or collection pinned.
    let (a, b, rk) = (dev(), dev(), SigningKey::generate());
    for created_ms in [0, MAX_ROSTER_CREATED_MS + 1, u64::MAX] {
        assert_eq!(
            Roster::from_genesis(&genesis_at(&a, &rk, created_ms), "acct").err(),
            Some(RosterError::CreatedAt(created_ms)),
            "created_ms {created_ms}"
        );
    }
    // At the ceiling it is accepted, and a later ADD at an earlier (real) time is then
    // refused: the reason the ceiling matters.
    let mut r = Roster::from_genesis(&genesis_at(&a, &rk, MAX_ROSTER_CREATED_MS), "acct").unwrap();
    let late = add(&r, &a, &b);
    assert!(matches!(r.apply(&late), Err(RosterError::CreatedAt(_))));
}

#[test]
fn add_epoch_and_created_ms_are_checked() {
    // BI-19 and issue 5 defect 6: an ADD signed by a member still needs the roster's epoch
    // and a creation time that can be right; the roster is unchanged on refusal.
    let (a, b, rk) = (dev(), dev(), SigningKey::generate());
    let r = Roster::from_genesis(&genesis(&a, &rk), "acct").unwrap();
    assert_eq!(r.epoch(), 1);
    let good = add(&r, &a, &b);
    let cases: [(&str, Box<Edit>, RosterError); 5] = [
        (
            "epoch 2",
            Box::new(|b| b.epoch = 2),
            RosterError::Epoch {
                expected: 1,
                got: 2,
            },
        ),
        (
            "epoch 0",
            Box::new(|b| b.epoch = 0),
            RosterError::Epoch {
                expected: 1,
                got: 0,
            },
        ),
        (
            "zero time",
            Box::new(|b| b.created_ms = 0),
            RosterError::CreatedAt(0),
        ),
        (
            "absurd time",
            Box::new(|b| b.created_ms = MAX_ROSTER_CREATED_MS + 1),
            RosterError::CreatedAt(MAX_ROSTER_CREATED_MS + 1),
        ),
        (
            "u64::MAX",
            Box::new(|b| b.created_ms = u64::MAX),
            RosterError::CreatedAt(u64::MAX),
        ),
    ];
    for (what, edit, want) in cases {
        let mut work = r.clone();
        let e = resign(&good, &a.sign, |b| edit(b));
        assert_eq!(work.apply(&e).unwrap_err(), want, "{what}");
        assert_eq!(work.len(), 1, "{what}");
    }
    // More than the tolerance before the previous entry (the genesis, at 10 ms + 2 days):
    let late = Roster::from_genesis(
        &Roster::make_genesis(GenesisParams {
            account: "acct",
            signing: &a.sign,
            kx_pk: &a.kx.public_key(),
            name: "first",
            recovery_pk: &rk.verifying_key(),
            recovery_salt: &[1; 16],
            recovery_kdf: KdfParams::FLOOR,
            now_ms: 2 * ROSTER_CLOCK_TOLERANCE_MS,
        }),
        "acct",
    )
    .unwrap();
    let mut work = late.clone();
    let e = resign(&add(&late, &a, &b), &a.sign, |b| {
        b.created_ms = ROSTER_CLOCK_TOLERANCE_MS - 1;
    });
    assert_eq!(
        work.apply(&e).unwrap_err(),
        RosterError::CreatedAt(ROSTER_CLOCK_TOLERANCE_MS - 1)
    );
    // Exactly at the tolerance is accepted (clocks differ).
    let e = resign(&add(&late, &a, &b), &a.sign, |b| {
        b.created_ms = ROSTER_CLOCK_TOLERANCE_MS;
    });
    work.apply(&e).unwrap();
    assert_eq!(work.last_created_ms(), ROSTER_CLOCK_TOLERANCE_MS);
    let mut ok = r;
    ok.apply(&good).unwrap();
    assert!(ok.member(&b.id).is_some());
}
