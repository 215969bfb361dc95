//! The pairing mailbox: one reply per attempt, aborts, replacements and expiry.

use super::*;

fn pairing(attempt: u8, approver: u8, expires_ms: u64) -> NewPairing {
    NewPairing {
        account: ACCOUNT.into(),
        device: DeviceId([9; 16]),
        attempt_id: [attempt; 16],
        approver: DeviceId([approver; 16]),
        start: vec![attempt; 4],
        created_ms: now(),
        expires_ms,
    }
}

#[tokio::test]
async fn a_pairing_attempt_takes_one_reply() {
    // MS-10: one online guess of the code per attempt.
    let (_d, s) = store();
    let dev = DeviceId([9; 16]);
    let far = now() + 60_000;
    s.pairing_start(pairing(1, 2, far)).await.unwrap();
    // A confirmation before any reply is refused.
    assert!(matches!(
        s.pairing_confirm(
            ACCOUNT.into(),
            dev,
            [1; 16],
            DeviceId([2; 16]),
            vec![3],
            now()
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    s.pairing_reply(ACCOUNT.into(), dev, [1; 16], vec![5], now())
        .await
        .unwrap();
    assert!(matches!(
        s.pairing_reply(ACCOUNT.into(), dev, [1; 16], vec![6], now())
            .await,
        Err(StoreError::Conflict(_))
    ));
    // No done message before the confirmation.
    assert!(matches!(
        s.pairing_done(ACCOUNT.into(), dev, [1; 16], vec![8], now())
            .await,
        Err(StoreError::Conflict(_))
    ));
    // Only the approver of the attempt confirms it, once.
    assert!(
        s.pairing_confirm(
            ACCOUNT.into(),
            dev,
            [1; 16],
            DeviceId([7; 16]),
            vec![3],
            now()
        )
        .await
        .is_err()
    );
    s.pairing_confirm(
        ACCOUNT.into(),
        dev,
        [1; 16],
        DeviceId([2; 16]),
        vec![3],
        now(),
    )
    .await
    .unwrap();
    let row = s
        .pairing(ACCOUNT.into(), dev, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.reply, Some(vec![5]));
    assert_eq!(row.confirm, Some(vec![3]));
    assert_eq!(row.done, None);
    assert!(!row.aborted);
    // Then one done message, for this attempt only.
    assert!(
        s.pairing_done(ACCOUNT.into(), dev, [4; 16], vec![8], now())
            .await
            .is_err()
    );
    s.pairing_done(ACCOUNT.into(), dev, [1; 16], vec![8], now())
        .await
        .unwrap();
    assert!(matches!(
        s.pairing_done(ACCOUNT.into(), dev, [1; 16], vec![9], now())
            .await,
        Err(StoreError::Conflict(_))
    ));
    let row = s
        .pairing(ACCOUNT.into(), dev, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.done, Some(vec![8]));
}

#[tokio::test]
async fn aborted_replaced_and_expired_attempts_take_nothing() {
    let (_d, s) = store();
    let dev = DeviceId([9; 16]);
    let far = now() + 60_000;
    s.pairing_start(pairing(1, 2, far)).await.unwrap();
    s.pairing_abort(ACCOUNT.into(), dev, [1; 16]).await.unwrap();
    assert!(
        s.pairing(ACCOUNT.into(), dev, now())
            .await
            .unwrap()
            .unwrap()
            .aborted
    );
    assert!(
        s.pairing_reply(ACCOUNT.into(), dev, [1; 16], vec![5], now())
            .await
            .is_err()
    );
    // A new start replaces the attempt: the old id is dead, the new one is open.
    s.pairing_start(pairing(2, 2, far)).await.unwrap();
    assert!(
        s.pairing_reply(ACCOUNT.into(), dev, [1; 16], vec![5], now())
            .await
            .is_err()
    );
    s.pairing_reply(ACCOUNT.into(), dev, [2; 16], vec![5], now())
        .await
        .unwrap();
    // Expired: invisible and closed.
    s.pairing_start(pairing(3, 2, now())).await.unwrap();
    assert!(
        s.pairing(ACCOUNT.into(), dev, now())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.pairing_reply(ACCOUNT.into(), dev, [3; 16], vec![5], now())
            .await
            .is_err()
    );
    // While an attempt is open, another approver cannot replace it; once it is aborted
    // (or expired) it can.
    s.pairing_start(pairing(4, 2, far)).await.unwrap();
    assert!(matches!(
        s.pairing_start(pairing(5, 6, far)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.pairing(ACCOUNT.into(), dev, now())
            .await
            .unwrap()
            .unwrap()
            .attempt_id,
        [4; 16]
    );
    s.pairing_abort(ACCOUNT.into(), dev, [4; 16]).await.unwrap();
    s.pairing_start(pairing(5, 6, far)).await.unwrap();
    // Another account sees nothing.
    assert!(s.pairing("globex".into(), dev, 0).await.unwrap().is_none());
}
