//! Live updates: `WatchRequest` and `WatchResponse` bytes (`POST /v1/watch`), built here by
//! hand from the protobuf encoding rules and checked against the code's encoding, and the
//! wait the server applies to `wait_ms`.

use serde_json::json;

use sealsync_proto::{WatchCursor, WatchRequest, WatchResponse, watch_wait_ms};

use crate::{Family, counting, h, vector};

/// Protobuf base-128 varint, least significant group first.
fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            return out;
        }
        out.push(low | 0x80);
    }
}

/// A length-delimited field: key `(field << 3) | 2`, varint length, bytes.
fn bytes_field(field: u64, value: &[u8]) -> Vec<u8> {
    let mut out = varint(field << 3 | 2);
    out.extend(varint(value.len() as u64));
    out.extend_from_slice(value);
    out
}

/// A varint field (key `(field << 3) | 0`); proto3 leaves out the default 0.
fn varint_field(field: u64, value: u64) -> Vec<u8> {
    if value == 0 {
        return Vec::new();
    }
    let mut out = varint(field << 3);
    out.extend(varint(value));
    out
}

/// The family.
pub fn family() -> Family {
    let mut vectors = Vec::new();

    // A request with two cursors (one at 0, which proto3 leaves out) and an explicit wait.
    let a = counting::<16>(0x30);
    let b = counting::<16>(0x40);
    for (cursors, wait_ms) in [
        (vec![(a, 0u64), (b, 70_000u64)], 20_000u32),
        (vec![(a, 5)], 0),
    ] {
        let request = WatchRequest {
            cursors: cursors
                .iter()
                .map(|(c, after)| WatchCursor {
                    collection_id: c.to_vec(),
                    after: *after,
                })
                .collect(),
            wait_ms,
        };
        let mut cursor_bytes = Vec::new();
        let mut by_hand = Vec::new();
        for (c, after) in &cursors {
            let mut cursor = bytes_field(1, c);
            cursor.extend(varint_field(2, *after));
            by_hand.extend(bytes_field(1, &cursor));
            cursor_bytes.push(h(&cursor));
        }
        by_hand.extend(varint_field(2, u64::from(wait_ms)));
        let encoded = sealsync_proto::encode(&request);
        assert_eq!(encoded, by_hand, "WatchRequest encoding");
        assert_eq!(
            sealsync_proto::decode::<WatchRequest>(&encoded).expect("decodes"),
            request
        );
        vectors.push(vector(
            "watch-request",
            json!({ "cursors": cursors.iter().map(|(c, after)| json!({
                        "collection_id": h(c), "after": after })).collect::<Vec<_>>(),
                    "wait_ms": wait_ms }),
            json!({ "encoded_cursors": cursor_bytes,
                    "layout": "WatchCursor { collection_id = 1 (bytes), after = 2 (varint) }; \
                               WatchRequest { cursors = 1 (repeated), wait_ms = 2 (varint) }; \
                               zero values are left out" }),
            json!({ "protobuf": h(&encoded),
                    "server_wait_ms": watch_wait_ms(wait_ms) }),
        ));
    }

    // The wait the server applies: 0 is the default, anything else clamped.
    let asked = [0u32, 1, 999, 1_000, 25_000, 30_000, 30_001, u32::MAX];
    let applied: Vec<u32> = asked.iter().map(|w| watch_wait_ms(*w)).collect();
    assert_eq!(
        applied,
        [25_000, 1_000, 1_000, 1_000, 25_000, 30_000, 30_000, 30_000]
    );
    vectors.push(vector(
        "watch-wait",
        json!({ "wait_ms": asked }),
        json!({ "rule": "0 -> 25000; otherwise clamp to 1000..=30000" }),
        json!({ "server_wait_ms": applied }),
    ));

    // Responses: one changed collection, and none (the empty message).
    for changed in [vec![b], vec![]] {
        let response = WatchResponse {
            changed_collections: changed.iter().map(|c| c.to_vec()).collect(),
        };
        let by_hand: Vec<u8> = changed.iter().flat_map(|c| bytes_field(1, c)).collect();
        let encoded = sealsync_proto::encode(&response);
        assert_eq!(encoded, by_hand, "WatchResponse encoding");
        vectors.push(vector(
            "watch-response",
            json!({ "changed_collections": changed.iter().map(h).collect::<Vec<_>>() }),
            json!({ "layout": "WatchResponse { changed_collections = 1 (repeated bytes) }" }),
            json!({ "protobuf": h(&encoded) }),
        ));
    }

    Family {
        name: "watch",
        description: "POST /v1/watch: WatchRequest and WatchResponse encodings and the wait \
                      the server applies to wait_ms. docs/protocol.md, section Live updates.",
        vectors,
    }
}
