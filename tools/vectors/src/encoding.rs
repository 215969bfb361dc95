//! Encodings: the hybrid logical clock and version ids (order included), Crockford base32
//! of recovery secrets, and the base64url of enrollment bundles.

use base64::Engine as _;
use serde_json::json;

use sealsync_core::{DeviceId, Hlc, HlcClock, VersionId};
use sealsync_crypto::RecoverySecret;

use crate::{Family, counting, h, vector};

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Crockford base32 of `bytes` (MSB first, no padding), built here from the specification.
fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    let bits = bytes.len() * 8;
    for i in 0..bits.div_ceil(5) {
        let mut v = 0usize;
        for b in 0..5 {
            let bit = i * 5 + b;
            let byte = bytes.get(bit / 8).copied().unwrap_or(0);
            v = (v << 1) | usize::from((byte >> (7 - bit % 8)) & 1);
        }
        out.push(char::from(CROCKFORD[v]));
    }
    out
}

fn grouped(s: &str) -> String {
    s.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("-")
}

/// The family.
pub fn family() -> Family {
    let mut vectors = Vec::new();

    // HLC values.
    for (ms, logical) in [
        (1_700_000_000_000u64, 0u16),
        (1_700_000_000_000, 1),
        (1, 65535),
        (0, 0),
    ] {
        let hlc = Hlc::from_parts(ms, logical);
        assert_eq!(hlc.0, (ms << 16) | u64::from(logical));
        vectors.push(vector(
            "hlc",
            json!({ "physical_ms": ms, "logical": logical }),
            json!({ "formula": "(physical_ms << 16) | logical" }),
            json!({ "hlc": hlc.0, "hlc_u64be": h(hlc.0.to_be_bytes()) }),
        ));
    }

    // tick: max(now << 16, last + 1), never backwards.
    for (last, now) in [
        (0u64, 1_700_000_000_000u64),
        (Hlc::from_parts(1_700_000_000_000, 5).0, 1_700_000_000_000),
        (Hlc::from_parts(1_700_000_000_500, 0).0, 1_700_000_000_000),
        (Hlc::from_parts(1_699_999_999_999, 9).0, 1_700_000_000_000),
    ] {
        let mut c = HlcClock::new(Hlc(last));
        let next = c.tick(now);
        vectors.push(vector(
            "hlc-tick",
            json!({ "last": last, "now_ms": now }),
            json!({ "now_shifted": now << 16, "last_plus_one": last + 1 }),
            json!({ "hlc": next.0 }),
        ));
    }

    // Version ids and their total order: (hlc, device id) as the bytes of the id.
    let a = DeviceId(counting::<16>(0x10));
    let b = DeviceId(counting::<16>(0x20));
    let t = Hlc::from_parts(1_700_000_000_000, 0);
    let mut ids = [
        VersionId::new(Hlc(t.0 + 1), a),
        VersionId::new(t, b),
        VersionId::new(t, a),
        VersionId::new(Hlc(t.0 + 1), b),
    ];
    let given: Vec<String> = ids.iter().map(|v| h(v.0)).collect();
    ids.sort();
    vectors.push(vector(
        "version-id-order",
        json!({ "device_a": h(a.0), "device_b": h(b.0), "hlc": t.0, "version_ids": given }),
        json!({ "layout": "u64be(hlc) || device_id (24 bytes)" }),
        json!({ "sorted_ascending": ids.iter().map(|v| h(v.0)).collect::<Vec<_>>(),
                "last_wins_under_lww": h(ids[ids.len() - 1].0) }),
    ));

    // Crockford base32 of recovery secrets.
    for bytes in [counting::<20>(0), [0xff; 20], counting::<20>(0xa7)] {
        let digits = base32(&bytes);
        let text = grouped(&digits);
        let parsed = RecoverySecret::parse(&text).expect("valid");
        assert_eq!(parsed.expose(), &bytes);
        assert_eq!(&*parsed.display(), &text);
        let typed = text.to_lowercase().replace('0', "o").replace('1', "l");
        assert_eq!(
            RecoverySecret::parse(&typed).expect("aliases").expose(),
            &bytes
        );
        vectors.push(vector(
            "recovery-secret-base32",
            json!({ "secret": h(bytes) }),
            json!({ "alphabet": std::str::from_utf8(CROCKFORD).unwrap_or_default(),
                    "digits": digits, "bit_order": "most significant bit first, 5 bits per digit, 160 bits = 32 digits, no padding" }),
            json!({ "display": text, "also_accepted": typed }),
        ));
    }
    for bad in [
        "000G-40R4-0M30-E209-185G-R38E-1W81-24G",
        "000G-40R4-0M30-E209-185G-R38E-1W81-24GU",
    ] {
        assert!(RecoverySecret::parse(bad).is_err());
        vectors.push(vector(
            "recovery-secret-base32-refused",
            json!({ "display": bad }),
            json!({ "reason": "not 32 digits, or a character outside the alphabet and its aliases (U)" }),
            json!({ "valid": false }),
        ));
    }

    // base64url without padding (enrollment bundles).
    let bundle = sealsync_proto::EnrollmentBundle {
        url: "https://sync.example:8443".into(),
        ca_pin: vec![0xcc; 32],
        ticket: counting::<32>(0).to_vec(),
        account: "alice".into(),
    };
    let raw = sealsync_proto::encode(&bundle);
    let text = format!(
        "sealsync-enroll:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw)
    );
    vectors.push(vector(
        "enrollment-bundle",
        json!({ "url": bundle.url, "ca_pin": h(&bundle.ca_pin), "ticket": h(&bundle.ticket),
                "account": bundle.account }),
        json!({ "protobuf_enrollment_bundle": h(&raw),
                "alphabet": "RFC 4648 section 5 (A-Z a-z 0-9 - _), no padding" }),
        json!({ "text": text }),
    ));

    Family {
        name: "encoding",
        description: "Hybrid logical clock values, tick and version id order; Crockford \
                      base32 of recovery secrets; base64url of enrollment bundles. \
                      docs/protocol.md, sections Hybrid logical clock, Encodings, Recovery.",
        vectors,
    }
}
