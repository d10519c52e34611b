//! Attachments in an S3 bucket, against a real S3-compatible server (SeaweedFS's S3
//! gateway, `commerce_testkit::S3Server`): what one replica stores, another reads; a key
//! that was never stored is absent, not an error; wrong credentials are refused.

use commerce_chat::attachments::{AttachmentStore, S3Store, StoreError};
use commerce_chat::settings::AttachmentBucket;
use commerce_testkit::{S3Server, unique};

fn bucket_settings(server: &S3Server, bucket: &str, secret: &str) -> AttachmentBucket {
    serde_json::from_value(serde_json::json!({
        "bucket": bucket,
        "endpoint": server.endpoint(),
        "access_key_id": S3Server::ACCESS_KEY,
        "secret_access_key": secret,
    }))
    .unwrap()
}

#[tokio::test]
async fn replicas_share_attachments_through_the_bucket_and_wrong_keys_are_refused() {
    let server = S3Server::start();
    let bucket = unique("chat").to_ascii_lowercase().replace('_', "-");
    server.create_bucket(&bucket);
    let settings = bucket_settings(&server, &bucket, S3Server::SECRET_KEY);
    assert!(!format!("{settings:?}").contains(S3Server::SECRET_KEY));
    let (one_replica, another) = (
        S3Store::new(&settings).unwrap(),
        S3Store::new(&settings).unwrap(),
    );

    let bytes = b"\x89PNG\r\n\x1a\n a picture of a parcel".to_vec();
    one_replica.put("attachment-1", &bytes).await.unwrap();
    assert_eq!(another.get("attachment-1").await.unwrap(), Some(bytes));
    assert_eq!(another.get("attachment-2").await.unwrap(), None);
    assert!(matches!(
        one_replica.put("../escape", b"x").await,
        Err(StoreError::BadKey(_))
    ));

    let forged = S3Store::new(&bucket_settings(&server, &bucket, "not-the-secret-key")).unwrap();
    let refused = forged.put("attachment-3", b"x").await.unwrap_err();
    assert!(
        matches!(&refused, StoreError::Bucket { bucket: named, .. } if *named == bucket),
        "{refused}"
    );
    assert_eq!(another.get("attachment-3").await.unwrap(), None);
}
