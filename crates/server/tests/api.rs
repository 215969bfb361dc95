//! The device API over real mutual TLS: roster, pending devices, envelopes, recovery,
//! collections, push and pull, admission on every request, limits and generic errors.

use sealsync_core::{AccountKeys, CollectionId, Policy, Roster, seal_envelope, seal_recovery_blob};
use sealsync_crypto::SigContext;
use sealsync_proto::{PushRequest, PushResponse, SealedList};

use crate::kit::{
    Device, H2, TLS13, TestServer, add_entry, assert_ok, client_config, connect_enroll,
    generic_error, genesis, key_der, recovery_keys,
};

#[tokio::test]
async fn roster_pending_envelopes_and_recovery() {
    let server = TestServer::start().await;
    let mut a = Device::enroll(&server, "acme", "first").await;
    assert!(a.enrolled.roster.is_empty());
    let rk = recovery_keys();
    let keys = AccountKeys::generate();
    let g = genesis(&a, &rk);
    let mut roster = Roster::from_genesis(&g, "acme").unwrap();

    // Recovery before the device is in the roster: refused.
    let blob = seal_recovery_blob(&keys, &rk, "acme", roster.genesis_hash());
    assert_eq!(a.send("PUT", "/v1/recovery", &blob).await.0, 403);

    // A genesis is posted once (only by its subject: `roster::check_append`'s unit tests;
    // no other device can enroll in the account before it).
    assert_eq!(a.send("POST", "/v1/roster", &g).await.0, 200);
    assert_eq!(
        a.send("POST", "/v1/roster", &g).await.0,
        200,
        "an identical retry is acknowledged"
    );
    let mut b = Device::enroll(&server, "acme", "second").await;
    let b_genesis = genesis(&b, &rk);
    let (status, body) = b.send("POST", "/v1/roster", &b_genesis).await;
    assert_eq!(status, 409, "a second genesis was accepted");
    assert_eq!(generic_error(&body).code, "conflict");
    let (_, body) = b.get("/v1/roster?after=0").await;
    let listed: sealsync_proto::RosterResponse = sealsync_proto::decode(&body).unwrap();
    assert_eq!(listed.entries, vec![g.clone()]);
    let (_, body) = b.get("/v1/roster?after=1").await;
    assert!(
        sealsync_proto::decode::<sealsync_proto::RosterResponse>(&body)
            .unwrap()
            .entries
            .is_empty()
    );

    // A later device receives the roster at enrollment.
    let mut c = Device::enroll(&server, "acme", "third").await;
    assert_eq!(c.enrolled.roster, vec![g.clone()]);

    let (status, body) = a.get("/v1/devices/pending").await;
    assert_eq!(status, 200);
    let pending: sealsync_proto::PendingDevicesResponse = sealsync_proto::decode(&body).unwrap();
    let ids: Vec<Vec<u8>> = pending
        .devices
        .iter()
        .map(|d| d.device_id.clone())
        .collect();
    assert_eq!(ids, vec![b.id.0.to_vec(), c.id.0.to_vec()]);
    assert_eq!(
        pending.devices[0].sign_pk,
        b.sign.verifying_key().to_bytes().to_vec()
    );
    assert_eq!(
        pending.devices[0].kx_pk,
        b.kx.public_key().to_bytes().to_vec()
    );
    assert_eq!(pending.devices[0].name, "second");

    // MS-10 (server side): an ADD whose keys differ from the enrolled ones is refused.
    let impostor = Device::enroll(&server, "globex", "impostor").await;
    let mut swapped = add_entry(&roster, &a, &impostor);
    let mut body_msg: sealsync_proto::RosterEntryBody =
        sealsync_proto::decode(&swapped.body).unwrap();
    body_msg.subject_device_id = c.id.0.to_vec();
    swapped.body = sealsync_proto::encode(&body_msg);
    swapped.signature = a.sign.sign(SigContext::Roster, &swapped.body, &[]).to_vec();
    assert_eq!(a.send("POST", "/v1/roster", &swapped).await.0, 409);

    // An ADD signed by A but posted by B is refused; posted by A it is appended.
    let add_b = add_entry(&roster, &a, &b);
    assert_eq!(b.send("POST", "/v1/roster", &add_b).await.0, 403);
    let (status, body) = a.send("POST", "/v1/roster", &add_b).await;
    assert_ok(status, &body, "ADD posted by its signer");
    roster.apply(&add_b).unwrap();
    // An entry that does not extend the stored chain (stale prev hash) is refused.
    let stale = add_entry(&Roster::from_genesis(&g, "acme").unwrap(), &a, &c);
    assert_eq!(a.send("POST", "/v1/roster", &stale).await.0, 409);
    let (_, body) = a.get("/v1/devices/pending").await;
    let pending: sealsync_proto::PendingDevicesResponse = sealsync_proto::decode(&body).unwrap();
    assert_eq!(pending.devices.len(), 1);
    assert_eq!(pending.devices[0].device_id, c.id.0.to_vec());

    // Envelopes: from a member, to a device of the account, read only by the recipient.
    let member_b = roster.member(&b.id).unwrap().clone();
    let env = seal_envelope(&a.sign, a.id, &member_b, "acme", roster.head_hash(), &keys).unwrap();
    assert_eq!(a.send("POST", "/v1/envelopes", &env).await.0, 200);
    assert_eq!(a.send("POST", "/v1/envelopes", &env).await.0, 200);
    let (_, body) = b.get("/v1/envelopes").await;
    assert_eq!(
        sealsync_proto::decode::<SealedList>(&body).unwrap().items,
        vec![env.clone()]
    );
    let (_, body) = c.get("/v1/envelopes").await;
    assert!(
        sealsync_proto::decode::<SealedList>(&body)
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        c.send("POST", "/v1/envelopes", &env).await.0,
        403,
        "a pending device sent an envelope"
    );
    // CD-07: B (a member now) cannot post an envelope naming A as sender.
    assert_eq!(b.send("POST", "/v1/envelopes", &env).await.0, 403);

    // Recovery blob: bound to this genesis, stored once.
    let wrong = seal_recovery_blob(&keys, &rk, "acme", [9; 32]);
    assert_eq!(a.send("PUT", "/v1/recovery", &wrong).await.0, 409);
    assert_eq!(c.get("/v1/recovery").await.0, 404);
    assert_eq!(a.send("PUT", "/v1/recovery", &blob).await.0, 200);
    assert_eq!(
        a.send("PUT", "/v1/recovery", &blob).await.0,
        200,
        "an identical retry is acknowledged"
    );
    let other = seal_recovery_blob(&AccountKeys::generate(), &rk, "acme", roster.genesis_hash());
    let (status, body) = b.send("PUT", "/v1/recovery", &other).await;
    assert_eq!(status, 409, "the recovery blob was replaced");
    generic_error(&body);
    let (status, body) = c.get("/v1/recovery").await;
    assert_eq!(status, 200);
    assert_eq!(
        sealsync_proto::decode::<sealsync_proto::RecoveryBlob>(&body).unwrap(),
        blob
    );
    server.stop().await;
}

#[tokio::test]
async fn collection_pins_are_appended_once_per_collection() {
    // CD-12, MS-22 (issue 5 defects 4 and 6): the server accepts a member's COLLECTION entry
    // through the shared roster check, refuses a second pin of the same collection, a pin
    // posted by another device than its signer, and an entry created beyond its clock.
    let server = TestServer::start().await;
    let mut a = Device::enroll(&server, "acme", "a").await;
    let mut roster = a.post_genesis().await;
    let mut b = Device::enroll(&server, "acme", "b").await;
    a.add_member(&mut roster, &b).await;
    let keys = AccountKeys::generate();
    let first = a.notes_descriptor(&keys, Policy::Manual, 0);
    let now = crate::kit::now_ms();
    let pin = roster
        .make_collection_pin(&a.sign, a.id, &first, now)
        .unwrap();
    // Posted by b, which did not sign it.
    assert_eq!(b.send("POST", "/v1/roster", &pin).await.0, 403);
    let future = roster
        .make_collection_pin(&a.sign, a.id, &first, now + 3_600_000)
        .unwrap();
    let (status, body) = a.send("POST", "/v1/roster", &future).await;
    assert_eq!(status, 409);
    generic_error(&body);
    assert_eq!(a.send("POST", "/v1/roster", &pin).await.0, 200);
    assert_eq!(
        a.send("POST", "/v1/roster", &pin).await.0,
        200,
        "idempotent"
    );
    roster.apply(&pin).unwrap();
    // b's descriptor of the same collection, backdated, with another policy: refused.
    let (_, backdated) = sealsync_core::seal_descriptor(
        &b.sign,
        b.id,
        "acme",
        &keys,
        "notes",
        Policy::Lww,
        sealsync_core::Hlc(1),
    )
    .unwrap();
    let second = roster
        .make_collection_pin(&b.sign, b.id, &backdated, now)
        .unwrap();
    assert_eq!(b.send("POST", "/v1/roster", &second).await.0, 409);
    let (_, body) = b.get("/v1/roster?after=0").await;
    let entries = sealsync_proto::decode::<sealsync_proto::RosterResponse>(&body)
        .unwrap()
        .entries;
    let stored = Roster::from_entries(&entries, "acme").unwrap();
    let cid = keys.collection_id("acme", "notes");
    assert_eq!(stored.collection_pin(&cid).unwrap().descriptor, first);
    // A pin grants no membership: b is still the only other member.
    assert_eq!(stored.members().count(), 2);
    server.stop().await;
}

#[tokio::test]
async fn descriptor_without_salt_is_refused() {
    // Issue 5 defect 3: the server's descriptor check (the shared verification path)
    // refuses a header without a salt even when the caller signed it.
    let server = TestServer::start().await;
    let mut a = Device::enroll(&server, "acme", "a").await;
    a.post_genesis().await;
    let keys = AccountKeys::generate();
    let sealed = a.notes_descriptor(&keys, Policy::Lww, 0);
    let mut h: sealsync_proto::CollectionHeader = sealsync_proto::decode(&sealed.header).unwrap();
    h.salt.clear();
    let header = sealsync_proto::encode(&h);
    let signature = a
        .sign
        .sign(SigContext::Collection, &header, &sealed.ciphertext)
        .to_vec();
    let bad = sealsync_proto::Sealed {
        header,
        ciphertext: sealed.ciphertext.clone(),
        signature,
    };
    let (status, body) = a.send("POST", "/v1/collections", &bad).await;
    assert_eq!(status, 400);
    generic_error(&body);
    assert_eq!(a.send("POST", "/v1/collections", &sealed).await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn collection_descriptors_are_verified_and_idempotent() {
    let server = TestServer::start().await;
    let mut a = Device::enroll(&server, "acme", "a").await;
    // All three are roster members, so the refusals below are for the reasons they name.
    let mut roster = a.post_genesis().await;
    let mut b = Device::enroll(&server, "acme", "b").await;
    let mut x = Device::enroll(&server, "globex", "x").await;
    a.add_member(&mut roster, &b).await;
    x.post_genesis().await;
    let keys = AccountKeys::generate();
    let sealed = a.notes_descriptor(&keys, Policy::Lww, 0);
    assert_eq!(a.send("POST", "/v1/collections", &sealed).await.0, 200);
    assert_eq!(a.send("POST", "/v1/collections", &sealed).await.0, 200);
    // CD-07: another device cannot store A's descriptor as its own.
    assert_eq!(b.send("POST", "/v1/collections", &sealed).await.0, 403);
    // BI-16: another account cannot either.
    assert_eq!(x.send("POST", "/v1/collections", &sealed).await.0, 403);
    let mut forged = sealed.clone();
    forged.signature[0] ^= 1;
    let (status, body) = a.send("POST", "/v1/collections", &forged).await;
    assert_eq!(status, 400);
    generic_error(&body);
    // Concurrent creation by B keeps both descriptors (devices take the policy from the
    // roster pin, not from this list).
    let b_sealed = b.notes_descriptor(&keys, Policy::Fields, 1);
    assert_eq!(b.send("POST", "/v1/collections", &b_sealed).await.0, 200);
    let (_, body) = b.get("/v1/collections").await;
    assert_eq!(
        sealsync_proto::decode::<SealedList>(&body)
            .unwrap()
            .items
            .len(),
        2
    );
    let (_, body) = x.get("/v1/collections").await;
    assert!(
        sealsync_proto::decode::<SealedList>(&body)
            .unwrap()
            .items
            .is_empty()
    );
    server.stop().await;
}

#[tokio::test]
async fn push_and_pull_page_through_the_log() {
    let server = TestServer::start().await;
    let mut a = Device::enroll(&server, "acme", "a").await;
    a.post_genesis().await;
    // B is pending (not in the roster): it cannot push, but it may pull (ciphertext only).
    let mut b = Device::enroll(&server, "acme", "b").await;
    let cid = CollectionId([3; 16]);
    let b1 = a.batch(cid, 1, [0; 32], b"one");
    let b2 = a.batch(cid, 2, b1.hash, b"two");
    let b3 = a.batch(cid, 3, b2.hash, b"three");
    let req = PushRequest {
        batches: vec![b1.sealed.clone(), b2.sealed.clone(), b3.sealed.clone()],
    };
    let (status, body) = a.send("POST", "/v1/batches", &req).await;
    assert_eq!(status, 200);
    let resp: PushResponse = sealsync_proto::decode(&body).unwrap();
    let got: Vec<(u64, u64, bool)> = resp
        .results
        .iter()
        .map(|r| (r.seq, r.log_index, r.duplicate))
        .collect();
    assert_eq!(got, [(1, 1, false), (2, 2, false), (3, 3, false)]);
    assert!(
        resp.results
            .iter()
            .all(|r| r.collection_id == cid.0.to_vec())
    );

    let hex = hex::encode(cid.0);
    let (status, body) = b
        .get(&format!("/v1/batches?collection={hex}&after=0&limit=2"))
        .await;
    assert_eq!(status, 200);
    let page: sealsync_proto::PullResponse = sealsync_proto::decode(&body).unwrap();
    assert_eq!(
        page.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(page.entries[0].batch.as_ref().unwrap(), &b1.sealed);
    assert!(page.more);
    assert_eq!(page.next, 2);
    let (_, body) = b
        .get(&format!("/v1/batches?collection={hex}&after=2"))
        .await;
    let page: sealsync_proto::PullResponse = sealsync_proto::decode(&body).unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].batch.as_ref().unwrap(), &b3.sealed);
    assert!(!page.more);
    assert_eq!(page.next, 3);
    let (_, body) = b
        .get(&format!("/v1/batches?collection={hex}&after=3"))
        .await;
    let page: sealsync_proto::PullResponse = sealsync_proto::decode(&body).unwrap();
    assert!(page.entries.is_empty() && !page.more);
    assert_eq!(page.next, 3, "an empty page keeps the cursor");

    // CD-07: A cannot push a batch authored (and signed) by B.
    let theirs = b.batch(cid, 1, [0; 32], b"b");
    let (status, body) = a
        .send(
            "POST",
            "/v1/batches",
            &PushRequest {
                batches: vec![theirs.sealed],
            },
        )
        .await;
    assert_eq!(status, 403);
    generic_error(&body);

    for bad in [
        "/v1/batches",
        "/v1/batches?collection=zz",
        "/v1/batches?collection=0102",
        &format!("/v1/batches?collection={hex}&after=-1"),
    ] {
        let (status, body) = b.get(bad).await;
        assert_eq!(status, 400, "{bad}");
        generic_error(&body);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_pending_device_cannot_push_or_post_descriptors() {
    // CD-12, MS-11: a device the operator admitted (enrolled with a ticket) but the users
    // never approved is not in the roster. Every member would refuse its batches, and a
    // refused batch stalls the whole collection for them, so the server stores nothing it
    // writes: 403 before the body is read, then the same request passes once it is a member.
    let server = TestServer::start().await;
    let mut a = Device::enroll(&server, "acme", "a").await;
    let mut roster = a.post_genesis().await;
    let mut p = Device::enroll(&server, "acme", "pending").await;
    let cid = CollectionId([5; 16]);
    let hex = hex::encode(cid.0);
    let batch = p.batch(cid, 1, [0; 32], b"from a pending device");
    let push = PushRequest {
        batches: vec![batch.sealed.clone()],
    };
    let keys = AccountKeys::generate();
    let descriptor = p.notes_descriptor(&keys, Policy::Lww, 0);

    let (status, body) = p.send("POST", "/v1/batches", &push).await;
    assert_eq!(status, 403, "a pending device pushed");
    assert_eq!(generic_error(&body).code, "forbidden");
    let (status, body) = p.send("POST", "/v1/collections", &descriptor).await;
    assert_eq!(status, 403, "a pending device posted a descriptor");
    assert_eq!(generic_error(&body).code, "forbidden");
    // Membership is checked before the body is read: an oversized body is not even looked at.
    let (status, body) =
        p.h2.request(
            "POST",
            "/v1/batches",
            vec![0u8; sealsync_proto::MAX_MESSAGE_BYTES + 1],
        )
        .await
        .unwrap();
    assert_eq!(status, 403);
    assert_eq!(generic_error(&body).code, "forbidden");

    // Nothing was stored: not in the log, not in the descriptors, not as a chain head.
    let (status, body) = a.get(&format!("/v1/batches?collection={hex}")).await;
    assert_eq!(status, 200);
    let page: sealsync_proto::PullResponse = sealsync_proto::decode(&body).unwrap();
    assert!(
        page.entries.is_empty(),
        "a pending device's batch was stored"
    );
    let (_, body) = a.get("/v1/collections").await;
    assert!(
        sealsync_proto::decode::<SealedList>(&body)
            .unwrap()
            .items
            .is_empty(),
        "a pending device's descriptor was stored"
    );
    let db = rusqlite::Connection::open(server.data_dir().join("sealsync.db")).unwrap();
    for table in ["batches", "chains", "collections"] {
        let n: i64 = db
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "{table} holds a row written by a pending device");
    }
    drop(db);

    // Reading stays open to an admitted device of the account (it sees only ciphertext).
    assert_eq!(p.get(&format!("/v1/batches?collection={hex}")).await.0, 200);
    assert_eq!(p.get("/v1/collections").await.0, 200);
    assert_eq!(p.get(&format!("/v1/chain?collection={hex}")).await.0, 200);

    // Once approved (an ADD by a member), the very same requests are accepted.
    a.add_member(&mut roster, &p).await;
    let (status, body) = p.send("POST", "/v1/batches", &push).await;
    assert_eq!(status, 200);
    let resp: PushResponse = sealsync_proto::decode(&body).unwrap();
    assert_eq!(resp.results[0].log_index, 1);
    assert!(!resp.results[0].duplicate);
    assert_eq!(p.send("POST", "/v1/collections", &descriptor).await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn admission_is_checked_on_every_request() {
    // CD-01, NA-04
    let server = TestServer::start().await;
    let mut a = Device::enroll(&server, "acme", "a").await;
    a.post_genesis().await;
    assert_eq!(a.get("/v1/status").await.0, 200);

    // A certificate from our CA with A's id but not the one issued to A: refused.
    let ca_pem = std::fs::read_to_string(server.data_dir().join("ca.pem")).unwrap();
    let ca_key = rcgen::KeyPair::from_pem(
        &std::fs::read_to_string(server.data_dir().join("ca.key")).unwrap(),
    )
    .unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, a.id.to_string());
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let twin = params.signed_by(&key, &issuer).unwrap();
    let config = client_config(
        &server.ca_der(),
        Some((twin.der().clone(), key_der(&key))),
        &[sealsync_proto::ALPN_H2],
        TLS13,
    );
    let mut h2 = H2::connect(server.addr, config).await.unwrap();
    let (status, body) = h2.request("GET", "/v1/status", Vec::new()).await.unwrap();
    assert_eq!(status, 401);
    assert_eq!(generic_error(&body).code, "unauthorized");

    // Revocation takes effect on the next request of an open connection.
    let db = rusqlite::Connection::open(server.data_dir().join("sealsync.db")).unwrap();
    db.execute(
        "UPDATE devices SET state = 'revoked' WHERE device_id = ?1",
        [a.id.0],
    )
    .unwrap();
    drop(db);
    for path in [
        "/v1/status",
        "/v1/roster",
        "/v1/envelopes",
        "/v1/recovery",
        "/v1/devices/pending",
        "/v1/nothing",
    ] {
        let (status, body) = a.get(path).await;
        assert_eq!(status, 403, "{path}");
        assert_eq!(generic_error(&body).code, "forbidden");
    }
    let batch = a.batch(CollectionId([1; 16]), 1, [0; 32], b"v");
    assert_eq!(
        a.send(
            "POST",
            "/v1/batches",
            &PushRequest {
                batches: vec![batch.sealed]
            }
        )
        .await
        .0,
        403
    );
    server.stop().await;
}

#[tokio::test]
async fn small_endpoints_refuse_bodies_above_one_mib() {
    // BI-01
    let server = TestServer::start().await;
    let mut a = Device::enroll(&server, "acme", "a").await;
    a.post_genesis().await;
    let limit = 1024 * 1024;
    for path in ["/v1/roster", "/v1/collections"] {
        let (status, body) =
            a.h2.request("POST", path, vec![0u8; limit + 1])
                .await
                .unwrap();
        assert_eq!(status, 413, "{path}");
        assert_eq!(generic_error(&body).code, "too_large");
        let (status, _) = a.h2.request("POST", path, vec![0u8; limit]).await.unwrap();
        assert_eq!(
            status, 400,
            "{path}: a body at the limit is decoded (and is garbage)"
        );
    }
    let mut h2 = connect_enroll(server.addr, &server.ca_der()).await;
    assert_eq!(
        h2.request("POST", "/v1/enroll", vec![0u8; limit + 1])
            .await
            .unwrap()
            .0,
        413
    );
    server.stop().await;
}

#[tokio::test]
async fn unknown_paths_methods_and_queries_get_generic_errors() {
    // BI-15
    let server = TestServer::start().await;
    let mut a = Device::enroll(&server, "acme", "a").await;
    let (status, body) = a.get("/v1/nothing").await;
    assert_eq!(status, 404);
    assert_eq!(generic_error(&body).code, "not_found");
    let (status, body) =
        a.h2.request("DELETE", "/v1/batches", Vec::new())
            .await
            .unwrap();
    assert_eq!(status, 405);
    generic_error(&body);
    for q in ["/v1/roster?after=x", "/v1/roster?after=1&after=2"] {
        let (status, body) = a.get(q).await;
        assert_eq!(status, 400, "{q}");
        generic_error(&body);
    }
    server.stop().await;
}
