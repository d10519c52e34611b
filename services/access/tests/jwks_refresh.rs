//! The verifier caches the key set and fetches it again only for an unknown `kid`, at most
//! once per interval; it remembers the tokens that verified until they expire or their key
//! is retired.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use commerce_access::{AccessError, TokenVerifier, VerifierSettings};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, Jwk, JwkSet, KeyAlgorithm, RSAKeyParameters, RSAKeyType,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;

fn jwk(kid: &str, key: &rsa::RsaPrivateKey) -> Jwk {
    let encode = |bytes: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    Jwk {
        common: CommonParameters {
            key_id: Some(kid.to_owned()),
            key_algorithm: Some(KeyAlgorithm::RS256),
            ..CommonParameters::default()
        },
        algorithm: AlgorithmParameters::RSA(RSAKeyParameters {
            key_type: RSAKeyType::RSA,
            n: encode(key.n().to_bytes_be()),
            e: encode(key.e().to_bytes_be()),
        }),
    }
}

fn token(kid: &str, key: &rsa::RsaPrivateKey) -> String {
    token_for(kid, key, 300)
}

fn token_for(kid: &str, key: &rsa::RsaPrivateKey, seconds: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "iss": "commerce-auth", "sub": uuid::Uuid::new_v4().to_string(), "aud": "commerce",
        "exp": now + seconds, "iat": now, "nbf": now, "jti": "j", "role": "customer"
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn keys_are_cached_and_refetched_for_unknown_kids_only() {
    let mut rng = rsa::rand_core::OsRng;
    let (old, new) = (
        rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap(),
        rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap(),
    );
    let published = Arc::new(Mutex::new(JwkSet {
        keys: vec![jwk("old", &old)],
    }));
    let fetches = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/jwks",
        get({
            let (published, fetches) = (published.clone(), fetches.clone());
            move || async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                Json(published.lock().unwrap().clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut settings = VerifierSettings::new("commerce-auth", &["commerce"]);
    settings.min_refresh_interval = Duration::from_millis(300);
    let verifier = TokenVerifier::with_jwks_url(url, settings);

    verifier
        .verify(&token("old", &old))
        .await
        .expect("first use fetches the keys");
    verifier.verify(&token("old", &old)).await.unwrap();
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "known keys come from the cache"
    );

    // Rotation: the issuer publishes a new key; the first token signed with it triggers one fetch.
    published.lock().unwrap().keys.push(jwk("new", &new));
    tokio::time::sleep(Duration::from_millis(350)).await;
    verifier
        .verify(&token("new", &new))
        .await
        .expect("the new key is fetched");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);

    // Made-up kids: one fetch per interval at most, however many tokens arrive.
    tokio::time::sleep(Duration::from_millis(350)).await;
    for _ in 0..5 {
        assert!(matches!(
            verifier.verify(&token("made-up", &new)).await,
            Err(AccessError::UnknownKey)
        ));
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 3);

    // A retired key stops verifying once the set is refetched without it.
    published
        .lock()
        .unwrap()
        .keys
        .retain(|key| key.common.key_id.as_deref() != Some("old"));
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(matches!(
        verifier.verify(&token("made-up-2", &new)).await,
        Err(AccessError::UnknownKey)
    ));
    assert!(matches!(
        verifier.verify(&token("old", &old)).await,
        Err(AccessError::UnknownKey)
    ));
}

#[tokio::test]
async fn verified_tokens_are_remembered_until_they_expire_or_their_key_is_retired() {
    let mut rng = rsa::rand_core::OsRng;
    let (old, new) = (
        rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap(),
        rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap(),
    );
    let mut settings = VerifierSettings::new("commerce-auth", &["commerce"]);
    settings.leeway = Duration::ZERO;
    let both = JwkSet {
        keys: vec![jwk("old", &old), jwk("new", &new)],
    };
    let verifier = TokenVerifier::with_keys(&both, settings).unwrap();

    let shopper = token("old", &old);
    let first = verifier.verify(&shopper).await.unwrap();
    let again = verifier.verify(&shopper).await.unwrap();
    assert_eq!(first, again, "the remembered claims are the verified ones");
    assert_eq!(
        verifier.remembered(),
        1,
        "the same token is remembered once"
    );

    // A forged token (the right header and claims, a signature by another key) is refused
    // and never remembered.
    let forged = {
        let genuine = token("new", &new);
        let signed_by_old = token("new", &old);
        let (head, _) = genuine.rsplit_once('.').unwrap();
        let (_, signature) = signed_by_old.rsplit_once('.').unwrap();
        format!("{head}.{signature}")
    };
    assert!(matches!(
        verifier.verify(&forged).await,
        Err(AccessError::Signature)
    ));
    assert_eq!(verifier.remembered(), 1);

    // A remembered token that expires is refused as expired, not served from memory.
    let brief = token_for("new", &new, 1);
    verifier.verify(&brief).await.unwrap();
    assert_eq!(verifier.remembered(), 2);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(matches!(
        verifier.verify(&brief).await,
        Err(AccessError::Expired)
    ));

    // Retiring the key forgets every remembered token: the one signed with it is refused.
    verifier
        .replace_keys(&JwkSet {
            keys: vec![jwk("new", &new)],
        })
        .unwrap();
    assert_eq!(verifier.remembered(), 0);
    assert!(matches!(
        verifier.verify(&shopper).await,
        Err(AccessError::UnknownKey)
    ));
}
