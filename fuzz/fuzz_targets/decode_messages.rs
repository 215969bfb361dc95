//! Feeds arbitrary bytes to the bounded decoder of every wire message (BI-03, BI-04, MS-41):
//! each decode must return Ok or Err, never panic, hang or over-allocate. Whatever decodes is
//! re-encoded and decoded again, which must give the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealsync_proto::{
    AccountKeys, BatchHeader, CollectionHeader, CollectionInfo, EnrollRequest, EnrollResponse,
    EnrollmentBundle, EnvelopeHeader, EpochKey, ErrorResponse, KdfParams, LogEntry, Message,
    Mutation, MutationList, PendingDevice, PendingDevicesResponse, PullResponse, PushRequest,
    PushResponse, PushResult, RecoveryBlob, RecoveryHeader, RosterEntryBody, RosterResponse,
    Sealed, SealedList, SignedRosterEntry, StatusResponse, WatchCursor, WatchRequest,
    WatchResponse, decode, encode,
};

fn check<M: Message + Default + PartialEq>(data: &[u8]) {
    if let Ok(m) = decode::<M>(data) {
        let again = decode::<M>(&encode(&m)).expect("re-encoded message must decode");
        assert!(again == m, "decode(encode(m)) != m");
    }
}

fuzz_target!(|data: &[u8]| {
    check::<Sealed>(data);
    check::<BatchHeader>(data);
    check::<MutationList>(data);
    check::<Mutation>(data);
    check::<CollectionHeader>(data);
    check::<CollectionInfo>(data);
    check::<EnvelopeHeader>(data);
    check::<AccountKeys>(data);
    check::<EpochKey>(data);
    check::<KdfParams>(data);
    check::<RosterEntryBody>(data);
    check::<SignedRosterEntry>(data);
    check::<RecoveryHeader>(data);
    check::<RecoveryBlob>(data);
    check::<EnrollmentBundle>(data);
    check::<EnrollRequest>(data);
    check::<EnrollResponse>(data);
    check::<StatusResponse>(data);
    check::<RosterResponse>(data);
    check::<PendingDevice>(data);
    check::<PendingDevicesResponse>(data);
    check::<SealedList>(data);
    check::<PushRequest>(data);
    check::<PushResult>(data);
    check::<PushResponse>(data);
    check::<LogEntry>(data);
    check::<PullResponse>(data);
    check::<ErrorResponse>(data);
    check::<WatchCursor>(data);
    check::<WatchRequest>(data);
    check::<WatchResponse>(data);
});
