//! Proof of possession in an enrollment request: the device signs, with the signing key it
//! enrolls, the ticket hash and every other field of the request, so the server issues a
//! certificate only to the holder of that key (and a captured request cannot be replayed
//! with other keys or another ticket).
//!
//! Signed with context `"sealsync/v1/enroll"`: header = `SHA-256(ticket)` (32 bytes), body =
//! `lp(csr_der) || sign_pk(32) || kx_pk(32) || lp(name) || u8(new_account)`.

use sealsync_crypto::{SigContext, SigningKey, VerifyingKey, lp, sha256};
use sealsync_proto::EnrollRequest;

/// The signed body of `req` (see the module documentation).
fn pop_body(req: &EnrollRequest) -> Vec<u8> {
    let mut body = Vec::with_capacity(req.csr_der.len() + req.name.len() + 80);
    lp(&mut body, &req.csr_der);
    body.extend_from_slice(&req.sign_pk);
    body.extend_from_slice(&req.kx_pk);
    lp(&mut body, req.name.as_bytes());
    body.push(u8::from(req.new_account));
    body
}

/// Fills `req.pop_signature` with `signing`'s signature over the request.
pub fn sign_enroll_request(signing: &SigningKey, req: &mut EnrollRequest) {
    let header = sha256(&req.ticket);
    req.pop_signature = signing
        .sign(SigContext::Enroll, &header, &pop_body(req))
        .to_vec();
}

/// Checks `req.pop_signature` under `sign_pk` (strict Ed25519).
pub fn verify_enroll_request(sign_pk: &VerifyingKey, req: &EnrollRequest) -> bool {
    let header = sha256(&req.ticket);
    sign_pk
        .verify(
            SigContext::Enroll,
            &header,
            &pop_body(req),
            &req.pop_signature,
        )
        .is_ok()
}

#[cfg(test)]
mod tests {
    use sealsync_crypto::KxSecretKey;

    use super::*;

    fn request(signing: &SigningKey) -> EnrollRequest {
        let mut req = EnrollRequest {
            ticket: vec![7; 32],
            name: "phone".into(),
            csr_der: vec![1, 2, 3],
            sign_pk: signing.verifying_key().to_bytes().to_vec(),
            kx_pk: KxSecretKey::from_bytes(&[5; 32])
                .public_key()
                .to_bytes()
                .to_vec(),
            new_account: false,
            pop_signature: Vec::new(),
        };
        sign_enroll_request(signing, &mut req);
        req
    }

    #[test]
    fn every_field_is_covered() {
        // MS-10: a request altered in any field, or signed by another key, is refused.
        let sk = SigningKey::from_seed(&[1; 32]);
        let vk = sk.verifying_key();
        let req = request(&sk);
        assert!(verify_enroll_request(&vk, &req));
        let mutations: [fn(&mut EnrollRequest); 6] = [
            |r| r.ticket[0] ^= 1,
            |r| r.name.push('x'),
            |r| r.csr_der.push(0),
            |r| r.kx_pk[0] ^= 1,
            |r| r.new_account = true,
            |r| r.pop_signature[0] ^= 1,
        ];
        for m in mutations {
            let mut r = req.clone();
            m(&mut r);
            assert!(!verify_enroll_request(&vk, &r));
        }
        let other = SigningKey::from_seed(&[2; 32]).verifying_key();
        assert!(!verify_enroll_request(&other, &req));
    }
}
