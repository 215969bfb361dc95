//! Pairing over the server's mailbox (I/O only; the checks are `sealsync_core::pairing`).
//!
//! The approver ([`Core::begin_approval`], [`Core::finish_approval`]) makes a one-time
//! code, posts its SPAKE2 message, waits for the new device's reply and verifies its MAC;
//! only then does it sign the `ADD` entry, seal the account keys to the keys the MAC proved
//! and post the confirmation. The new device ([`Core::join`]) answers the current
//! attempt with the code the user typed, verifies the approver's MAC over the genesis and
//! roster head, stores them, and becomes trusted only when the roster the server serves
//! starts at that genesis, contains that head and an `ADD` of this device with its own keys,
//! and a key envelope from a member, naming a head of that roster, opens (MS-10, MS-11,
//! MS-15). It then posts its `PairingDone`, and the approver returns only once that
//! message's MAC verifies: both sides finish when the new device is trusted. A wrong
//! code, an altered message or an abort spends the attempt on both sides.
//!
//! Messages are exchanged by polling `GET /v1/pairing` every [`POLL_INTERVAL`] until the
//! caller's timeout.

use std::time::{Duration, Instant};

use sealsync_core::pairing::{Approver, Confirmed, DeviceKeys, Joiner, PairingError};
use sealsync_core::{AccountKeys, DeviceId, NewMember, Roster, open_envelope, seal_envelope};
use sealsync_crypto::{PairingCode, VerifyingKey};
use sealsync_proto::{
    EnvelopeHeader, PairingAbort, PairingDone, PairingMailbox, PairingReply, RosterResponse,
    SealedList,
};
use zeroize::Zeroizing;

use crate::Core;
use crate::error::ClientError;

use crate::net::Connection;
use crate::store::{corrupt, meta};
use crate::types::DeviceState;

/// Time between two polls of the mailbox.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// An approval in progress on the trusted device: the code to show and the open attempt.
/// `Debug` does not print the code.
pub struct Approval {
    code: Zeroizing<String>,
    target: DeviceId,
    approver: Approver,
    conn: Connection,
    deadline: Instant,
    timeout: Duration,
}

impl std::fmt::Debug for Approval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approval")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Approval {
    /// The one-time code to show to the user, `XXXX-XXXX`.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The device being approved.
    pub fn device_id(&self) -> DeviceId {
        self.target
    }
}

fn pairing_refused(e: &PairingError) -> ClientError {
    match e {
        PairingError::WrongCode => ClientError::WrongCode,
        other => ClientError::Pairing(other.to_string()),
    }
}

/// Posts an abort; failures are only logged (the attempt is spent locally anyway).
async fn abort(conn: &mut Connection, attempt_id: [u8; 16], device: DeviceId) {
    let msg = PairingAbort {
        attempt_id: attempt_id.to_vec(),
        device_id: device.0.to_vec(),
    };
    if let Err(e) = conn
        .send(http::Method::POST, "/v1/pairing/abort", &msg)
        .await
    {
        tracing::warn!(error = %e, "could not tell the server that the pairing is aborted");
    }
}

fn timed_out(deadline: Instant) -> bool {
    Instant::now() >= deadline
}

impl Core {
    fn my_keys(&self) -> DeviceKeys {
        DeviceKeys::new(
            self.secrets.signing.verifying_key(),
            self.secrets.kx.public_key(),
        )
    }

    /// Starts approving the pending device `device_id` (hex, as its `enroll` printed it):
    /// makes a fresh code and opens the attempt on the server. Show [`Approval::code`] to the
    /// user, then call [`Core::finish_approval`]. The attempt stays open for `timeout`.
    pub(crate) async fn begin_approval(
        &mut self,
        target: DeviceId,
        timeout: Duration,
    ) -> Result<Approval, ClientError> {
        if self.state != DeviceState::Trusted {
            return Err(ClientError::NotTrusted);
        }
        if target == self.device_id {
            return Err(ClientError::InvalidInput(
                "a device cannot approve itself".into(),
            ));
        }
        let mut conn = self.connect().await?;
        self.finish_setup_uploads(&mut conn).await?;
        self.sync_roster(&mut conn).await?;
        let code = PairingCode::generate();
        let (approver, start) = Approver::start(
            &code,
            &self.account,
            sealsync_crypto::random_array(),
            self.my_keys(),
            target,
            u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            &Zeroizing::new(sealsync_crypto::random_array()),
        );
        conn.send(http::Method::POST, "/v1/pairing/start", &start)
            .await?;
        Ok(Approval {
            code: code.display(),
            target,
            approver,
            conn,
            deadline: Instant::now() + timeout,
            timeout,
        })
    }

    /// Waits for the new device's reply and verifies its key-confirmation MAC; only then adds
    /// it to the roster with the keys the MAC proved, seals the account keys to it and sends
    /// the confirmation; then waits until the new device reports, under its MAC, that it is
    /// trusted. A wrong code is [`ClientError::WrongCode`] (the attempt is aborted and
    /// nothing was sealed); no reply in time is [`ClientError::PairingTimeout`]; no report
    /// of the trusted state in time is [`ClientError::PairingUnconfirmed`].
    pub(crate) async fn finish_approval(&mut self, approval: Approval) -> Result<(), ClientError> {
        let Approval {
            target,
            approver,
            mut conn,
            deadline,
            timeout,
            ..
        } = approval;
        let attempt = approver.attempt_id();
        let path = format!("/v1/pairing?device={target}");
        let reply: PairingReply = loop {
            let mb: PairingMailbox = conn.get(&path).await?;
            let ours = mb.start.as_ref().is_some_and(|s| s.attempt_id == attempt);
            if !ours {
                return Err(ClientError::PairingAborted(
                    "another approval of this device replaced this one".into(),
                ));
            }
            if mb.aborted {
                return Err(ClientError::PairingAborted(
                    "the new device stopped the pairing".into(),
                ));
            }
            if let Some(reply) = mb.reply {
                break reply;
            }
            if timed_out(deadline) {
                abort(&mut conn, attempt, target).await;
                return Err(ClientError::PairingTimeout(timeout.as_secs()));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        // One reply per attempt: whatever happens next, this code is spent.
        let approved = match approver.on_reply(&reply) {
            Ok(a) => a,
            Err(e) => {
                abort(&mut conn, attempt, target).await;
                return Err(pairing_refused(&e));
            }
        };
        // Nothing was sealed or signed before this point.
        self.sync_roster(&mut conn).await?;
        let roster = self.trusted_roster()?;
        let keys = &approved.keys;
        match roster.member(&target) {
            Some(m) if m.sign_pk == keys.sign_pk && m.kx_pk == keys.kx_pk => {
                // Added by an earlier approval that stopped before confirming: resend.
            }
            Some(_) => {
                abort(&mut conn, attempt, target).await;
                return Err(ClientError::Pairing(format!(
                    "device {target} is already in the roster with other keys"
                )));
            }
            None => {
                let entry = roster.make_add(
                    &self.secrets.signing,
                    self.device_id,
                    NewMember {
                        device_id: target,
                        sign_pk: &keys.sign_pk,
                        kx_pk: &keys.kx_pk,
                        name: &approved.name,
                    },
                    self.store.time.now(),
                );
                let mut next = roster.clone();
                next.apply(&entry)
                    .map_err(|e| ClientError::Roster(format!("cannot add {target}: {e}")))?;
                let _: RosterResponse = conn.post("/v1/roster", &entry).await?;
                self.adopt_roster(next)?;
            }
        }
        let roster = self.trusted_roster()?;
        let member = roster.member(&target).ok_or_else(|| {
            ClientError::Roster(format!(
                "device {target} missing from the roster after adding it"
            ))
        })?;
        let envelope = seal_envelope(
            &self.secrets.signing,
            self.device_id,
            member,
            &self.account,
            roster.head_hash(),
            self.account_keys()?,
        )
        .map_err(|e| ClientError::Pairing(format!("cannot seal the account keys: {e}")))?;
        let (genesis, head) = (roster.genesis_hash(), roster.head_hash());
        let confirm = approved.confirm(&genesis, &head);
        conn.send(http::Method::POST, "/v1/envelopes", &envelope)
            .await?;
        conn.send(http::Method::POST, "/v1/pairing/confirm", &confirm)
            .await?;
        // Wait for the new device to be trusted. Its PairingDone carries MAC_D, which the
        // server cannot make: a forged or altered one is ignored, as if not yet sent.
        loop {
            let mb: PairingMailbox = conn.get(&path).await?;
            match &mb.start {
                // The attempt expired on the server.
                None => {
                    return Err(ClientError::PairingUnconfirmed {
                        device: target.to_string(),
                        secs: timeout.as_secs(),
                    });
                }
                Some(s) if s.attempt_id != attempt => {
                    return Err(ClientError::PairingAborted(
                        "another approval of this device replaced this one".into(),
                    ));
                }
                Some(_) => {}
            }
            if let Some(done) = &mb.done {
                match approved.verify_done(&genesis, &head, done) {
                    Ok(()) => return Ok(()),
                    Err(e) => tracing::warn!(error = %e, "ignored an invalid pairing done message"),
                }
            }
            if mb.aborted {
                return Err(ClientError::PairingAborted(
                    "the new device stopped the pairing before it was trusted".into(),
                ));
            }
            if timed_out(deadline) {
                return Err(ClientError::PairingUnconfirmed {
                    device: target.to_string(),
                    secs: timeout.as_secs(),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Pairs this pending device with the trusted device that shows `code`: answers the
    /// current attempt, verifies the approver's confirmation, then receives the roster and
    /// the account keys and checks them against what was confirmed. Returns once the device
    /// is trusted. Errors: [`ClientError::WrongCode`], [`ClientError::PairingAborted`],
    /// [`ClientError::PairingTimeout`], [`ClientError::Pairing`].
    pub(crate) async fn join(&mut self, code: &str, timeout: Duration) -> Result<(), ClientError> {
        if self.state == DeviceState::Trusted {
            return Err(ClientError::InvalidInput(
                "this device is already trusted".into(),
            ));
        }
        let code = PairingCode::parse(code).map_err(|_| {
            ClientError::InvalidInput(
                "that is not a pairing code: it has 8 letters and digits, like ABCD-1234".into(),
            )
        })?;
        let deadline = Instant::now() + timeout;
        let mut conn = self.connect().await?;
        // Wait for an open attempt that nobody answered yet.
        let mut saw_spent = false;
        let start = loop {
            let mb: PairingMailbox = conn.get("/v1/pairing").await?;
            match mb.start {
                Some(start) if !mb.aborted && mb.reply.is_none() => break start,
                Some(_) => saw_spent = true,
                None => {}
            }
            if timed_out(deadline) {
                if saw_spent {
                    return Err(ClientError::PairingAborted(
                        "the only attempt on the server was already answered or ended, and a code works once".into(),
                    ));
                }
                return Err(ClientError::PairingTimeout(timeout.as_secs()));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        let me = self.my_keys();
        let (joiner, reply) = match Joiner::on_start(
            &code,
            &self.account,
            &me,
            &self.name,
            &start,
            &Zeroizing::new(sealsync_crypto::random_array()),
        ) {
            Ok(x) => x,
            Err(e) => {
                if let Ok(attempt) = <[u8; 16]>::try_from(start.attempt_id.as_slice()) {
                    abort(&mut conn, attempt, self.device_id).await;
                }
                return Err(pairing_refused(&e));
            }
        };
        let attempt = joiner.attempt_id();
        match conn
            .send(http::Method::POST, "/v1/pairing/reply", &reply)
            .await
        {
            Ok(()) => {}
            Err(ClientError::Server { status: 409, .. }) => {
                return Err(ClientError::PairingAborted(
                    "the attempt was answered, replaced or ended before this reply".into(),
                ));
            }
            Err(e) => return Err(e),
        }
        let confirm = loop {
            let mb: PairingMailbox = conn.get("/v1/pairing").await?;
            match &mb.start {
                None => {
                    return Err(ClientError::PairingAborted(
                        "the attempt expired before the approving device confirmed it".into(),
                    ));
                }
                Some(s) if s.attempt_id != attempt => {
                    return Err(ClientError::PairingAborted(
                        "the approving device started another attempt".into(),
                    ));
                }
                Some(_) => {}
            }
            if mb.aborted {
                // The approver refuses a reply whose MAC fails: most often a mistyped code.
                return Err(ClientError::WrongCode);
            }
            if let Some(confirm) = mb.confirm {
                break confirm;
            }
            if timed_out(deadline) {
                abort(&mut conn, attempt, self.device_id).await;
                return Err(ClientError::PairingTimeout(timeout.as_secs()));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        let confirmed = match joiner.on_confirm(&confirm) {
            Ok(c) => c,
            Err(e) => {
                abort(&mut conn, attempt, self.device_id).await;
                return Err(pairing_refused(&e));
            }
        };
        self.store
            .set_meta(&[(meta::PAIRING_CONFIRMED, Some(&encode_confirmed(&confirmed)))])?;
        match self.finish_pairing(&mut conn).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ClientError::Pairing(
                "the pairing confirmation was not stored; join again".into(),
            )),
            // What the server serves contradicts the confirmation: say so to the approver,
            // which would otherwise wait for a done message until its timeout.
            Err(e @ (ClientError::Roster(_) | ClientError::Pairing(_))) => {
                abort(&mut conn, attempt, self.device_id).await;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Completes a confirmed pairing: fetches the roster and key envelopes and checks them
    /// against the confirmed genesis and head (see the module documentation). Returns
    /// `Ok(false)` when no pairing was confirmed, an error when the server's answers do not
    /// match it. The only way, besides recovery, in which a pending device becomes trusted.
    pub(crate) async fn finish_pairing(
        &mut self,
        conn: &mut Connection,
    ) -> Result<bool, ClientError> {
        let Some(stored) = self.store.meta_blob(meta::PAIRING_CONFIRMED)? else {
            return Ok(false);
        };
        let (genesis, head, approver_id, approver_pk, done) = decode_confirmed(&stored)?;
        let resp: RosterResponse = conn.get("/v1/roster?after=0").await?;
        let (first, rest) = resp.entries.split_first().ok_or_else(|| {
            ClientError::Pairing("the server serves no roster for this account".into())
        })?;
        let mut roster = Roster::from_genesis(first, &self.account)
            .map_err(|e| ClientError::Roster(format!("the account's genesis is invalid: {e}")))?;
        roster
            .extend(rest)
            .map_err(|e| ClientError::Roster(e.to_string()))?;
        if roster.genesis_hash() != genesis {
            return Err(ClientError::Roster(
                "the server's roster does not start at the genesis the approving device confirmed"
                    .into(),
            ));
        }
        if !roster.contains_head(&head) {
            return Err(ClientError::Roster(
                "the server's roster lacks the entry the approving device confirmed".into(),
            ));
        }
        match roster.member(&self.device_id) {
            Some(m)
                if m.sign_pk == self.secrets.signing.verifying_key()
                    && m.kx_pk == self.secrets.kx.public_key() => {}
            _ => {
                return Err(ClientError::Roster(
                    "the confirmed roster does not add this device with its own keys".into(),
                ));
            }
        }
        if !roster
            .member(&approver_id)
            .is_some_and(|m| m.sign_pk == approver_pk)
        {
            return Err(ClientError::Roster(
                "the approving device is not a member of the confirmed roster".into(),
            ));
        }
        let list: SealedList = conn.get("/v1/envelopes").await?;
        let keys = list.items.iter().find_map(|sealed| {
            let keys = open_envelope(sealed, self.device_id, &self.secrets.kx, &roster).ok()?;
            let header: EnvelopeHeader = sealsync_proto::decode(&sealed.header).ok()?;
            // Only the approver's envelope (open_envelope verified its signature under the
            // sender named in the header): another member, with the server choosing the
            // order, could otherwise hand this device wrong keys (MS-15).
            if header.sender_device_id.as_slice() != approver_id.0.as_slice() {
                return None;
            }
            let named: [u8; 32] = header.roster_head.as_slice().try_into().ok()?;
            roster.contains_head(&named).then_some(keys)
        });
        let Some(keys) = keys else {
            return Err(ClientError::Pairing(
                "no key envelope from the approving device opens against the confirmed roster"
                    .into(),
            ));
        };
        self.become_trusted(keys, roster)?;
        // Tell the approver, which waits for it. The device is trusted either way: a lost
        // message only makes the approver report that it could not see the end.
        if let Some(done) = done
            && let Err(e) = conn
                .send(http::Method::POST, "/v1/pairing/done", &done)
                .await
        {
            tracing::warn!(error = %e, "could not tell the approving device that the pairing is done");
        }
        Ok(true)
    }

    /// Stores the account keys (key store first), then in one transaction the verified
    /// roster, its genesis and the trusted state; then assigns collection ids.
    fn become_trusted(&mut self, keys: AccountKeys, roster: Roster) -> Result<(), ClientError> {
        let mut secrets = self.secrets.clone();
        secrets.account_keys = Some(keys);
        self.keystore.save(&secrets)?;
        self.secrets = secrets;
        let entries: Vec<(u64, Vec<u8>)> = roster
            .entries()
            .iter()
            .enumerate()
            .map(|(i, e)| (i as u64, sealsync_proto::encode(e)))
            .collect();
        let genesis = roster.genesis_hash();
        self.store.store_roster(
            &entries,
            &[
                (meta::GENESIS_HASH, Some(&genesis)),
                (meta::STATE, Some(DeviceState::Trusted.as_str().as_bytes())),
                (meta::PAIRING_CONFIRMED, None),
            ],
        )?;
        self.roster = Some(roster);
        self.state = DeviceState::Trusted;
        let account = self.account.clone();
        if let Some(k) = self.secrets.account_keys.as_ref() {
            self.store
                .assign_collection_ids(|name| k.collection_id(&account, name))?;
        }
        Ok(())
    }
}

/// Length of a stored confirmation without the done message (written by earlier versions).
const CONFIRMED_BYTES: usize = 112;
/// Length of a stored confirmation with the done message.
const CONFIRMED_DONE_BYTES: usize = CONFIRMED_BYTES + 16 + 32;

/// `genesis(32) || head(32) || approver_id(16) || approver_sign_pk(32) ||
/// done_attempt_id(16) || done_mac(32)`.
fn encode_confirmed(c: &Confirmed) -> Vec<u8> {
    let mut out = Vec::with_capacity(CONFIRMED_DONE_BYTES);
    out.extend_from_slice(&c.genesis_hash);
    out.extend_from_slice(&c.roster_head);
    out.extend_from_slice(&c.approver.device_id.0);
    out.extend_from_slice(&c.approver.sign_pk.to_bytes());
    out.extend_from_slice(&c.done.attempt_id);
    out.extend_from_slice(&c.done.mac);
    out
}

/// A stored confirmation: genesis, head, approver id and key, and the done message to send.
type StoredConfirmation = (
    [u8; 32],
    [u8; 32],
    DeviceId,
    VerifyingKey,
    Option<PairingDone>,
);

fn decode_confirmed(b: &[u8]) -> Result<StoredConfirmation, ClientError> {
    if b.len() != CONFIRMED_BYTES && b.len() != CONFIRMED_DONE_BYTES {
        return Err(corrupt("stored pairing confirmation"));
    }
    let arr32 = |r: std::ops::Range<usize>| -> [u8; 32] {
        let mut a = [0u8; 32];
        a.copy_from_slice(&b[r]);
        a
    };
    let id = DeviceId::from_slice(&b[64..80]).map_err(|_| corrupt("stored approver id"))?;
    let pk = VerifyingKey::from_bytes(&b[80..112]).map_err(|_| corrupt("stored approver key"))?;
    let done = (b.len() == CONFIRMED_DONE_BYTES).then(|| PairingDone {
        attempt_id: b[112..128].to_vec(),
        mac: b[128..160].to_vec(),
    });
    Ok((arr32(0..32), arr32(32..64), id, pk, done))
}
