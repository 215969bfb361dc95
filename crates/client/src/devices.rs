//! Listing the devices of the account that wait for pairing, as the server says. Nothing
//! listed here is trusted: only a pairing (`crate::pairing`) proves a device's keys.

use sealsync_core::DeviceId;
use sealsync_proto::PendingDevicesResponse;

use crate::Core;
use crate::error::ClientError;
use crate::types::PendingDeviceInfo;

impl Core {
    /// Devices of this account waiting for approval, as the server lists them.
    pub(crate) async fn pending_devices(&mut self) -> Result<Vec<PendingDeviceInfo>, ClientError> {
        let mut conn = self.connect().await?;
        let resp: PendingDevicesResponse = conn.get("/v1/devices/pending").await?;
        Ok(resp
            .devices
            .into_iter()
            .filter_map(|d| {
                let id = DeviceId::from_slice(&d.device_id).ok()?;
                Some(PendingDeviceInfo {
                    device_id: id,
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
}
