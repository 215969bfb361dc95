//! Approving pending devices from a trusted one (MS-10, MS-11).
//!
//! The server lists the pending device's keys, but nothing it says is trusted: the approver
//! recomputes the device id from the listed signing key and the approval code from *its own*
//! trusted genesis and the listed keys, and compares it with the code the new device shows.
//! Only then does it sign an `ADD` roster entry and seal the account keys to the device's
//! X25519 key.

use std::str::FromStr;

use sealsync_core::{DeviceId, NewMember, seal_envelope};
use sealsync_crypto::{KxPublicKey, VerifyingKey};
use sealsync_proto::{PendingDevicesResponse, RosterResponse};

use crate::Replica;
use crate::error::ClientError;
use crate::store::now_ms;
use crate::types::{DeviceState, PendingDeviceInfo};

const MISMATCH: &str = "approval code does not match: the server may have substituted the device's keys or the roster; compare the code shown on the new device again";

impl Replica {
    /// Devices of this account waiting for approval, as the server lists them.
    pub async fn pending_devices(&mut self) -> Result<Vec<PendingDeviceInfo>, ClientError> {
        let mut conn = self.connect().await?;
        let resp: PendingDevicesResponse = conn.get("/v1/devices/pending").await?;
        Ok(resp
            .devices
            .into_iter()
            .filter_map(|d| {
                let id = DeviceId::from_slice(&d.device_id).ok()?;
                Some(PendingDeviceInfo {
                    device_id: id.to_string(),
                    // Display text from the server: no control characters (terminal escapes).
                    name: d
                        .name
                        .chars()
                        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                        .collect(),
                    enrolled_ms: d.enrolled_ms,
                })
            })
            .collect())
    }

    /// Approves the pending device `device_id` (hex) after checking `code`, the approval code
    /// it shows: adds it to the roster and sends it the account keys.
    pub async fn approve(&mut self, device_id: &str, code: &str) -> Result<(), ClientError> {
        if self.state != DeviceState::Trusted {
            return Err(ClientError::NotTrusted {
                approval_code: self.approval_code(),
            });
        }
        let id = DeviceId::from_str(device_id.trim()).map_err(|_| {
            ClientError::InvalidInput(format!("{device_id:?} is not a device id (32 hex digits)"))
        })?;
        let mut conn = self.connect().await?;
        self.finish_setup_uploads(&mut conn).await?;
        self.sync_roster(&mut conn).await?;

        if let Some(member) = self.roster.member(&id) {
            // Already added (an earlier approval stopped before sending the keys): check the
            // code against the roster's keys and resend the envelope.
            let expected = sealsync_crypto::approval_code(
                &self.genesis_hash,
                &id.0,
                &member.sign_pk,
                &member.kx_pk,
            );
            if !sealsync_crypto::approval_code_matches(&expected, code) {
                return Err(ClientError::Approval(MISMATCH.into()));
            }
        } else {
            let resp: PendingDevicesResponse = conn.get("/v1/devices/pending").await?;
            let listed = resp
                .devices
                .iter()
                .find(|d| d.device_id == id.0)
                .ok_or_else(|| {
                    ClientError::Approval(format!(
                        "device {id} is not waiting for approval in account {:?}; check the id (sealsync device pending)",
                        self.account
                    ))
                })?;
            let sign_pk = VerifyingKey::from_bytes(&listed.sign_pk).map_err(|_| {
                ClientError::Approval(format!(
                    "the server listed an invalid signing key for {id}; the server may be substituting keys, do not approve it"
                ))
            })?;
            let kx_pk = KxPublicKey::from_bytes(&listed.kx_pk).map_err(|_| {
                ClientError::Approval(format!(
                    "the server listed an invalid key-exchange key for {id}; the server may be substituting keys, do not approve it"
                ))
            })?;
            if sealsync_crypto::device_id(&sign_pk) != id.0 {
                return Err(ClientError::Approval(format!(
                    "the signing key the server lists does not belong to device {id}: {MISMATCH}"
                )));
            }
            let expected =
                sealsync_crypto::approval_code(&self.genesis_hash, &id.0, &sign_pk, &kx_pk);
            if !sealsync_crypto::approval_code_matches(&expected, code) {
                return Err(ClientError::Approval(MISMATCH.into()));
            }
            if listed.name.is_empty()
                || listed.name.len() > sealsync_core::MAX_DEVICE_NAME_BYTES
                || listed.name.chars().any(char::is_control)
            {
                return Err(ClientError::Approval(format!(
                    "device {id} has an empty or over-long name, or one with control characters"
                )));
            }
            let entry = self.roster.make_add(
                &self.secrets.signing,
                self.device_id,
                NewMember {
                    device_id: id,
                    sign_pk: &sign_pk,
                    kx_pk: &kx_pk,
                    name: &listed.name,
                },
                now_ms(),
            );
            let mut next = self.roster.clone();
            next.apply(&entry)
                .map_err(|e| ClientError::Roster(format!("cannot add {id}: {e}")))?;
            let _: RosterResponse = conn.post("/v1/roster", &entry).await?;
            self.adopt_roster(next)?;
        }
        let member = self.roster.member(&id).ok_or_else(|| {
            ClientError::Roster(format!(
                "device {id} missing from the roster after adding it"
            ))
        })?;
        let keys = self
            .secrets
            .account_keys
            .as_ref()
            .ok_or_else(|| ClientError::NotTrusted {
                approval_code: String::new(),
            })?;
        let envelope = seal_envelope(
            &self.secrets.signing,
            self.device_id,
            member,
            &self.account,
            self.roster.head_hash(),
            keys,
        )
        .map_err(|e| {
            ClientError::Approval(format!("cannot seal the account keys for {id}: {e}"))
        })?;
        conn.send(http::Method::POST, "/v1/envelopes", &envelope)
            .await?;
        Ok(())
    }
}
