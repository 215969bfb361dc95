//! Roster tests: genesis, member and recovery additions, forged entries (MS-11), substituted
//! genesis (MS-10), forks (MS-12), KDF floor (MS-06).

use sealsync_crypto::KdfParams;

use super::*;
use crate::testkit::{Dev, dev};

fn genesis_with(
    first: &Dev,
    recovery: &SigningKey,
    kdf: KdfParams,
    account: &str,
) -> SignedRosterEntry {
    Roster::make_genesis(GenesisParams {
        account,
        signing: &first.sign,
        kx_pk: &first.kx.public_key(),
        name: "first",
        recovery_pk: &recovery.verifying_key(),
        recovery_salt: &[1; 16],
        recovery_kdf: kdf,
        now_ms: 10,
    })
}

/// A genesis of account "acct" created at `now_ms`.
fn genesis_at(first: &Dev, recovery: &SigningKey, now_ms: u64) -> SignedRosterEntry {
    Roster::make_genesis(GenesisParams {
        account: "acct",
        signing: &first.sign,
        kx_pk: &first.kx.public_key(),
        name: "first",
        recovery_pk: &recovery.verifying_key(),
        recovery_salt: &[1; 16],
        recovery_kdf: KdfParams::FLOOR,
        now_ms,
    })
}

fn genesis(first: &Dev, recovery: &SigningKey) -> SignedRosterEntry {
    genesis_with(first, recovery, KdfParams::FLOOR, "acct")
}

fn add(r: &Roster, signer: &Dev, new: &Dev) -> SignedRosterEntry {
    let kx = new.kx.public_key();
    let vk = new.sign.verifying_key();
    r.make_add(
        &signer.sign,
        signer.id,
        NewMember {
            device_id: new.id,
            sign_pk: &vk,
            kx_pk: &kx,
            name: "new",
        },
        20,
    )
}

fn resign(
    e: &SignedRosterEntry,
    key: &SigningKey,
    edit: impl FnOnce(&mut RosterEntryBody),
) -> SignedRosterEntry {
    let mut b: RosterEntryBody = sealsync_proto::decode(&e.body).unwrap();
    edit(&mut b);
    sign_entry(key, &b)
}

#[test]
fn genesis_and_member_add() {
    let (a, b, rk) = (dev(), dev(), SigningKey::generate());
    let g = genesis(&a, &rk);
    let mut r = Roster::from_genesis(&g, "acct").unwrap();
    assert_eq!(r.len(), 1);
    assert!(!r.is_empty());
    assert_eq!(r.genesis_hash(), roster_entry_hash(&g));
    assert_eq!(r.head_hash(), r.genesis_hash());
    assert_eq!(r.account(), "acct");
    assert_eq!(r.recovery_salt(), &[1; 16]);
    assert_eq!(r.recovery_kdf(), KdfParams::FLOOR);
    assert_eq!(r.recovery_pk(), &rk.verifying_key());
    assert_eq!(r.member(&a.id).unwrap().seq, 0);

    let e = add(&r, &a, &b);
    r.apply(&e).unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r.head_hash(), roster_entry_hash(&e));
    let m = r.member(&b.id).unwrap();
    assert_eq!(
        (m.seq, m.name.as_str(), m.kx_pk.clone()),
        (1, "new", b.kx.public_key())
    );
    assert_eq!(r.members().count(), 2);

    // Re-verifying the stored entries gives the same roster.
    let again = Roster::from_entries(r.entries(), "acct").unwrap();
    assert_eq!(again.head_hash(), r.head_hash());
    assert_eq!(
        again.members().map(|m| m.device_id).collect::<Vec<_>>(),
        r.members().map(|m| m.device_id).collect::<Vec<_>>()
    );
}

#[test]
fn recovery_signed_add_is_accepted_and_only_by_the_recovery_key() {
    let (a, c, rk) = (dev(), dev(), SigningKey::generate());
    let mut r = Roster::from_genesis(&genesis(&a, &rk), "acct").unwrap();
    let kx = c.kx.public_key();
    let vk = c.sign.verifying_key();
    let m = || NewMember {
        device_id: c.id,
        sign_pk: &vk,
        kx_pk: &kx,
        name: "recovered",
    };

    // MS-09: a recovery-style entry signed by anything but the recovery key is refused.
    let forged = r.make_add_by_recovery(&SigningKey::generate(), m(), 5);
    assert_eq!(r.apply(&forged).unwrap_err(), RosterError::Signature);
    assert_eq!(r.len(), 1);

    let e = r.make_add_by_recovery(&rk, m(), 5);
    r.apply(&e).unwrap();
    assert!(r.member(&c.id).is_some());
    assert_eq!(
        r.apply(&add(&r, &a, &c)).unwrap_err(),
        RosterError::AlreadyMember(c.id)
    );
}

#[test]
fn forged_entry_by_non_member_is_refused() {
    // MS-11: the server (or any outsider) adds a device to the account.
    let (a, evil, victim_like, rk) = (dev(), dev(), dev(), SigningKey::generate());
    let mut r = Roster::from_genesis(&genesis(&a, &rk), "acct").unwrap();
    let before = r.head_hash();

    let e = add(&r, &evil, &victim_like);
    assert_eq!(r.apply(&e).unwrap_err(), RosterError::NotMember(evil.id));

    // Claiming a member as signer but signing with another key.
    let e = resign(&add(&r, &a, &victim_like), &evil.sign, |_| {});
    assert_eq!(r.apply(&e).unwrap_err(), RosterError::Signature);

    // A valid entry whose body is altered after signing.
    let mut e = add(&r, &a, &victim_like);
    let last = e.body.len() - 1;
    e.body[last] ^= 1; // the created_ms varint: still decodes
    assert_eq!(r.apply(&e).unwrap_err(), RosterError::Signature);

    // Subject id not derived from its key (CD-07).
    let e = resign(&add(&r, &a, &victim_like), &a.sign, |b| {
        b.subject_device_id = evil.id.0.to_vec()
    });
    assert_eq!(r.apply(&e).unwrap_err(), RosterError::DeviceIdMismatch);

    // A weak subject key (BI-06).
    let e = resign(&add(&r, &a, &victim_like), &a.sign, |b| {
        b.subject_sign_pk = vec![0; 32]
    });
    assert_eq!(r.apply(&e).unwrap_err(), RosterError::BadKey);

    assert_eq!(r.head_hash(), before);
    assert_eq!(r.len(), 1);
}

#[test]
fn chain_rules() {
    // MS-12 / BI-03: gaps, unchained entries, a second genesis, other accounts, unknown
    // suites, smuggled genesis fields and garbage are all refused.
    let (a, b, c, rk) = (dev(), dev(), dev(), SigningKey::generate());
    let mut r = Roster::from_genesis(&genesis(&a, &rk), "acct").unwrap();
    let e1 = add(&r, &a, &b);

    let gap = resign(&e1, &a.sign, |b| b.seq = 2);
    assert_eq!(
        r.apply(&gap).unwrap_err(),
        RosterError::Seq {
            expected: 1,
            got: 2
        }
    );
    let unchained = resign(&e1, &a.sign, |b| b.prev_hash = vec![7; 32]);
    assert_eq!(
        r.apply(&unchained).unwrap_err(),
        RosterError::PrevHash { seq: 1 }
    );
    let second_genesis = resign(&e1, &a.sign, |b| b.op = RosterOp::Genesis as i32);
    assert_eq!(
        r.apply(&second_genesis).unwrap_err(),
        RosterError::Op(RosterOp::Genesis as i32)
    );
    let other_account = resign(&e1, &a.sign, |b| b.account = "bcct".into());
    assert_eq!(
        r.apply(&other_account).unwrap_err(),
        RosterError::WrongAccount
    );
    let suite = resign(&e1, &a.sign, |b| b.suite = 2);
    assert_eq!(r.apply(&suite).unwrap_err(), RosterError::Suite(2));
    let smuggled = resign(&e1, &a.sign, |b| {
        b.recovery_pk = rk.verifying_key().to_bytes().to_vec()
    });
    assert!(matches!(r.apply(&smuggled), Err(RosterError::Malformed(_))));
    let garbage = SignedRosterEntry {
        body: vec![0xff, 0xff, 0xff],
        signature: vec![],
    };
    assert!(matches!(r.apply(&garbage), Err(RosterError::Malformed(_))));

    r.apply(&e1).unwrap();
    // The new member can now sign.
    r.apply(&add(&r, &b, &c)).unwrap();
    assert_eq!(r.len(), 3);
}

#[test]
fn extend_skips_applied_and_detects_fork() {
    // MS-12: a roster fork (e.g. a hidden entry) is detected, never merged silently.
    let (a, b, c, d, rk) = (dev(), dev(), dev(), dev(), SigningKey::generate());
    let g = genesis(&a, &rk);
    let mut r = Roster::from_genesis(&g, "acct").unwrap();
    let e1 = add(&r, &a, &b);
    r.apply(&e1).unwrap();
    let mut full = r.clone();
    let e2 = add(&full, &a, &c);
    full.apply(&e2).unwrap();

    // Everything from seq 0: genesis and e1 skipped, e2 applied.
    assert_eq!(r.extend(&[g.clone(), e1.clone(), e2.clone()]).unwrap(), 1);
    assert_eq!(r.head_hash(), full.head_hash());
    assert_eq!(r.extend(&[e1.clone(), e2.clone()]).unwrap(), 0);

    // Another history at seq 1 (same signer, different subject).
    let base = Roster::from_genesis(&g, "acct").unwrap();
    let fork1 = add(&base, &a, &d);
    assert_eq!(
        r.extend(std::slice::from_ref(&fork1)).unwrap_err(),
        RosterError::Fork { seq: 1 }
    );
    assert_eq!(r.head_hash(), full.head_hash(), "unchanged after a fork");

    // All or nothing: a valid entry followed by a bad one leaves the roster as it was.
    let mut short = Roster::from_genesis(&g, "acct").unwrap();
    let bad = resign(&e2, &d.sign, |_| {});
    assert_eq!(
        short.extend(&[e1, bad]).unwrap_err(),
        RosterError::Signature
    );
    assert_eq!(short.len(), 1);
    // A gap is refused.
    assert_eq!(
        short.extend(&[e2]).unwrap_err(),
        RosterError::Seq {
            expected: 1,
            got: 2
        }
    );
}

#[test]
fn substituted_genesis_is_detected() {
    // MS-10: the server shows a genesis of its own making for the same account.
    let (a, evil, rk) = (dev(), dev(), SigningKey::generate());
    let g = genesis(&a, &rk);
    let fake = genesis(&evil, &SigningKey::generate());
    let mut r = Roster::from_genesis(&g, "acct").unwrap();
    let fake_roster = Roster::from_genesis(&fake, "acct").unwrap();
    assert_ne!(fake_roster.genesis_hash(), r.genesis_hash());
    assert_eq!(r.extend(&[fake]).unwrap_err(), RosterError::Fork { seq: 0 });

    // The genesis a new device may trust comes from the pairing confirmation (MAC_A), not
    // from the server: see `crate::pairing`.
}

#[test]
fn invalid_genesis_is_refused() {
    let (a, other, rk) = (dev(), dev(), SigningKey::generate());
    let g = genesis(&a, &rk);
    assert_eq!(
        Roster::from_genesis(&g, "bcct").unwrap_err(),
        RosterError::WrongAccount
    );

    // MS-06: recovery KDF parameters below the floor.
    let weak = KdfParams {
        m_kib: 8 * 1024,
        ..KdfParams::DEFAULT
    };
    let e = genesis_with(&a, &rk, weak, "acct");
    assert_eq!(
        Roster::from_genesis(&e, "acct").unwrap_err(),
        RosterError::KdfParams
    );
    let weak_t = KdfParams {
        t_cost: 1,
        ..KdfParams::DEFAULT
    };
    assert_eq!(
        Roster::from_genesis(&genesis_with(&a, &rk, weak_t, "acct"), "acct").unwrap_err(),
        RosterError::KdfParams
    );
    let no_kdf = resign(&g, &a.sign, |b| b.recovery_kdf = None);
    assert_eq!(
        Roster::from_genesis(&no_kdf, "acct").unwrap_err(),
        RosterError::KdfParams
    );
    let short_salt = resign(&g, &a.sign, |b| b.recovery_salt = vec![1; 4]);
    assert_eq!(
        Roster::from_genesis(&short_salt, "acct").unwrap_err(),
        RosterError::KdfParams
    );

    let not_self = resign(&g, &other.sign, |_| {});
    assert_eq!(
        Roster::from_genesis(&not_self, "acct").unwrap_err(),
        RosterError::Signature
    );
    let other_signer = resign(&g, &a.sign, |b| b.signer_device_id = other.id.0.to_vec());
    assert!(matches!(
        Roster::from_genesis(&other_signer, "acct"),
        Err(RosterError::NotGenesis(_))
    ));
    let seq1 = resign(&g, &a.sign, |b| b.seq = 1);
    assert!(matches!(
        Roster::from_genesis(&seq1, "acct"),
        Err(RosterError::NotGenesis(_))
    ));
    let op = resign(&g, &a.sign, |b| b.op = RosterOp::Add as i32);
    assert!(matches!(
        Roster::from_genesis(&op, "acct"),
        Err(RosterError::NotGenesis(_))
    ));
    let prev = resign(&g, &a.sign, |b| b.prev_hash = vec![1; 32]);
    assert!(matches!(
        Roster::from_genesis(&prev, "acct"),
        Err(RosterError::NotGenesis(_))
    ));
    let bad_rk = resign(&g, &a.sign, |b| b.recovery_pk = vec![0; 32]);
    assert_eq!(
        Roster::from_genesis(&bad_rk, "acct").unwrap_err(),
        RosterError::BadKey
    );
    assert!(matches!(
        Roster::from_entries(&[], "acct"),
        Err(RosterError::NotGenesis(_))
    ));
}

#[test]
fn batch_roster_head_must_be_an_entry_of_the_verified_roster() {
    // MS-12: the server hides an ADD from one device. The author, who saw it, seals the
    // entry's hash into its batch header; the device whose roster lacks it refuses the batch
    // with check "roster". Heads of any verified entry (genesis included) are accepted.
    use crate::batch::{BatchDraft, seal_batch};
    use crate::error::BatchError;
    use crate::keys::AccountKeys;
    use crate::verify::verify_batch;

    let (a, b, c, rk) = (dev(), dev(), dev(), SigningKey::generate());
    let g = genesis(&a, &rk);
    let mut shared = Roster::from_genesis(&g, "acct").unwrap();
    shared.apply(&add(&shared, &a, &b)).unwrap();
    // The author's view has one more entry (seq 2) that the other device never gets.
    let mut authors = shared.clone();
    authors.apply(&add(&authors, &a, &c)).unwrap();
    let hidden = authors.head_hash();
    assert!(authors.contains_head(&hidden));
    assert!(!shared.contains_head(&hidden));
    for r in [&shared, &authors] {
        assert!(r.contains_head(&r.genesis_hash()));
        assert!(r.contains_head(&roster_entry_hash(&r.entries()[1])));
        assert!(!r.contains_head(&[0; 32]));
    }

    let keys = AccountKeys::generate();
    let cid = keys.collection_id("acct", "notes");
    let ck = keys.collection_key("acct", &cid, 1).unwrap();
    let seal = |head: [u8; 32]| {
        let draft = BatchDraft {
            account: "acct".into(),
            collection: cid,
            device: a.id,
            seq: 1,
            prev_hash: [0; 32],
            epoch: 1,
            roster_head: head,
            mutations: vec![sealsync_proto::Mutation {
                key: "k".into(),
                hlc: 5,
                deleted: false,
                value: b"v".to_vec(),
                supersedes: vec![],
            }],
        };
        seal_batch(draft, &a.sign, &ck).unwrap()
    };
    let verified = |head: [u8; 32], r: &Roster| {
        let sb = seal(head);
        verify_batch(&sb.sealed, |d| r.member(d).map(|m| m.sign_pk)).unwrap()
    };

    // Known heads: the newest, an older entry, the genesis.
    for head in [hidden, shared.head_hash(), roster_entry_hash(&g)] {
        verified(head, &authors)
            .check_roster_head(&authors)
            .unwrap();
    }
    verified(shared.head_hash(), &shared)
        .check_roster_head(&shared)
        .unwrap();

    // The hidden entry's head, and a head that is no entry at all, are refused.
    for head in [hidden, [0; 32], [7; 32]] {
        let err = verified(head, &shared)
            .check_roster_head(&shared)
            .unwrap_err();
        assert_eq!(err, BatchError::UnknownRosterHead(head));
        assert_eq!(err.check(), "roster");
    }
}

/// An edit of an entry body.
type Edit = dyn Fn(&mut RosterEntryBody);

#[test]
fn collection_pin_first_wins_for_good() {
    // CD-12 / MS-22 (issue 5 defect 4): the first COLLECTION entry of a collection fixes it;
    // a second one, by any member, is refused, and the pin survives re-verification.
    let (a, b, mut r, keys) = two_members();
    let cid = keys.collection_id("acct", "notes");
    let first = descriptor(&a, &keys, "notes", crate::Policy::Manual);
    r.apply(&r.make_collection_pin(&a.sign, a.id, &first, 30).unwrap())
        .unwrap();
    let pin = r.collection_pin(&cid).unwrap();
    assert_eq!((pin.seq, pin.author), (2, a.id));
    assert_eq!(pin.descriptor, first);
    for (who, policy) in [(&a, crate::Policy::Lww), (&b, crate::Policy::Fields)] {
        let other = descriptor(who, &keys, "notes", policy);
        let e = r
            .make_collection_pin(&who.sign, who.id, &other, 31)
            .unwrap();
        assert_eq!(
            r.clone().apply(&e).unwrap_err(),
            RosterError::AlreadyPinned(cid)
        );
    }
    // Another collection pins independently.
    let other = descriptor(&b, &keys, "todo", crate::Policy::Lww);
    r.apply(&r.make_collection_pin(&b.sign, b.id, &other, 32).unwrap())
        .unwrap();
    let again = Roster::from_entries(r.entries(), "acct").unwrap();
    assert_eq!(again.collection_pins().count(), 2);
    assert_eq!(again.collection_pin(&cid).unwrap().descriptor, first);
}

#[test]
fn collection_pin_forgeries_are_refused() {
    // MS-11, MS-23, CD-07: a pin needs a member signer who also signed the descriptor, of
    // this account and of the named collection; the recovery key cannot pin.
    let (a, b, r, keys) = two_members();
    let d = descriptor(&a, &keys, "notes", crate::Policy::Lww);
    let good = r.make_collection_pin(&a.sign, a.id, &d, 30).unwrap();
    let outsider = dev();
    let forged = r
        .make_collection_pin(&outsider.sign, outsider.id, &d, 30)
        .unwrap();
    assert_eq!(
        r.clone().apply(&forged).unwrap_err(),
        RosterError::NotMember(outsider.id)
    );
    // b pins a's descriptor: the descriptor is not the signer's.
    let e = r.make_collection_pin(&b.sign, b.id, &d, 30).unwrap();
    assert!(matches!(
        r.clone().apply(&e).unwrap_err(),
        RosterError::Descriptor(CollectionError::NotMember(_))
    ));
    let rk_signed = resign(&good, &a.sign, |b| b.signer_device_id.clear());
    assert_eq!(
        r.clone().apply(&rk_signed).unwrap_err(),
        RosterError::Op(RosterOp::Collection as i32)
    );
    let edits: [(&str, Box<Edit>); 5] = [
        (
            "other collection id",
            Box::new(|b| b.collection_id = vec![9; 16]),
        ),
        (
            "short collection id",
            Box::new(|b| b.collection_id = vec![9; 15]),
        ),
        (
            "garbage descriptor",
            Box::new(|b| b.descriptor = vec![0xff; 9]),
        ),
        ("subject set", Box::new(|b| b.subject_name = "x".into())),
        ("wrong epoch", Box::new(|b| b.epoch = 3)),
    ];
    for (what, edit) in edits {
        let e = resign(&good, &a.sign, |b| edit(b));
        assert!(r.clone().apply(&e).is_err(), "{what}");
    }
    // A descriptor with a tampered ciphertext no longer verifies.
    let mut bad = d;
    bad.ciphertext[0] ^= 1;
    let e = resign(&good, &a.sign, |b| {
        b.descriptor = sealsync_proto::encode(&bad)
    });
    assert_eq!(
        r.clone().apply(&e).unwrap_err(),
        RosterError::Descriptor(CollectionError::Signature)
    );
    // A collection field in an ADD is refused too.
    let e = resign(&add(&r, &a, &dev()), &a.sign, |b| {
        b.collection_id = vec![1; 16]
    });
    assert!(matches!(
        r.clone().apply(&e).unwrap_err(),
        RosterError::Malformed(_)
    ));
    let mut ok = r;
    ok.apply(&good).unwrap();
}

/// A roster with `a` (genesis) and `b` (added), and the account keys.
fn two_members() -> (Dev, Dev, Roster, crate::keys::AccountKeys) {
    let (a, b, rk) = (dev(), dev(), SigningKey::generate());
    let mut r = Roster::from_genesis(&genesis(&a, &rk), "acct").unwrap();
    r.apply(&add(&r, &a, &b)).unwrap();
    (a, b, r, crate::keys::AccountKeys::generate())
}

fn descriptor(d: &Dev, keys: &crate::keys::AccountKeys, name: &str, p: crate::Policy) -> Sealed {
    crate::seal_descriptor(&d.sign, d.id, "acct", keys, name, p, crate::Hlc(5))
        .unwrap()
        .1
}

mod created;
