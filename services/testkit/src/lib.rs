//! Test support against the real servers `scripts/infra.sh` starts. Every test gets its own
//! database, topic names and key prefix, so tests run in parallel; a test that must kill
//! the broker starts a private one. Missing environment is a failure, never a skip.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

/// Reads a variable that `scripts/infra.sh env` exports.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `make test`, or `eval \"$(scripts/infra.sh env)\"` after `scripts/infra.sh up`")
    })
}

/// A name no other test uses: `prefix-<random>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A database created for one test. It is left behind on purpose (inspectable after a
/// failure); `make test` drops them all when its run ends and, should a run have been cut
/// short, before the next one.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

/// Creates an empty database as the superuser in `COMMERCE_TEST_DATABASE_URL`.
pub async fn fresh_database(prefix: &str) -> TestDatabase {
    let admin_url = required_env("COMMERCE_TEST_DATABASE_URL");
    let name = format!("test_{}_{}", prefix, uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let url = replace_database(&admin_url, &name);
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await
        .expect("connect to the test database");
    TestDatabase { name, url, pool }
}

/// Swaps the database name in a `postgres://…/name?…` URL.
pub fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let prefix = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
    match query {
        Some(query) => format!("{prefix}/{database}?{query}"),
        None => format!("{prefix}/{database}"),
    }
}

/// A tansu broker of the test's own, on a free port with a durable SQLite store, so the
/// test can kill it and start it again on the same data.
pub struct PrivateBroker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateBroker {
    pub fn start() -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().expect("broker directory");
        let mut broker = Self {
            port,
            dir,
            child: None,
        };
        broker.spawn();
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let binary = PathBuf::from(required_env("COMMERCE_TANSU_BIN"));
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .expect("broker log");
        let child = Command::new(&binary)
            .current_dir(self.dir.path())
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .args([
                "broker",
                "--listener-url",
                &listener,
                "--advertised-listener-url",
                &listener,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", binary.display()));
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(20));
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port that was free a moment ago. Chosen at random below the kernel's
/// ephemeral range (32768+ on Linux): a port the OS handed out for `:0` is soon handed out
/// again as the local end of some test's outgoing connection, and the server that meant to
/// bind it then finds it taken. Tests run as parallel processes and a test shop binds its
/// ports seconds after choosing them, so choices are recorded in a registry file shared by
/// every test process (under a file lock) and not handed out again for ten minutes.
pub fn free_port() -> u16 {
    const HELD_FOR_SECS: u64 = 600;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    let registry = std::env::temp_dir().join("commerce-test-ports");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&registry)
        .expect("open the test port registry");
    file.lock().expect("lock the test port registry");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).expect("read the test port registry");
    let mut held: Vec<(u16, u64)> = text
        .lines()
        .filter_map(|line| {
            let (port, at) = line.split_once(' ')?;
            Some((port.parse().ok()?, at.parse().ok()?))
        })
        .filter(|(_, at)| now.saturating_sub(*at) < HELD_FOR_SECS)
        .collect();
    for _ in 0..1000 {
        let port = 15_000 + (uuid::Uuid::new_v4().as_u128() % 17_000) as u16;
        if held.iter().any(|(taken, _)| *taken == port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            held.push((port, now));
            let lines: String = held
                .iter()
                .map(|(port, at)| format!("{port} {at}\n"))
                .collect();
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))
                .and_then(|_| file.set_len(0))
                .and_then(|_| std::io::Write::write_all(&mut file, lines.as_bytes()))
                .expect("write the test port registry");
            return port;
        }
    }
    panic!("no free port below the ephemeral range after 1000 tries")
}

pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listened on port {port} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `check` until it returns `Some`, or fails the test after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A token issuer for tests of services other than auth: a real RSA key whose JWKS is
/// served on loopback, minting tokens exactly as the auth service shapes them.
pub struct TestIssuer {
    pub jwks_url: String,
    kid: String,
    encoding: jsonwebtoken::EncodingKey,
}

impl TestIssuer {
    pub const ISSUER: &'static str = "commerce-auth";

    pub async fn start() -> Self {
        use base64::Engine;
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key");
        let kid = format!("test-{}", uuid::Uuid::new_v4().simple());
        let encode =
            |bytes: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let jwks = serde_json::json!({ "keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": encode(key.n().to_bytes_be()), "e": encode(key.e().to_bytes_be()),
        }]});
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let jwks_url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().expect("addr")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let pem = key.to_pkcs8_pem(LineEnding::LF).expect("pem");
        Self {
            jwks_url,
            kid,
            encoding: jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
                .expect("encoding key"),
        }
    }

    fn sign(&self, claims: serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("sign")
    }

    /// A user access token (`aud = commerce`) for `role`: customer, support or admin.
    pub fn user_token(&self, user_id: uuid::Uuid, role: &str) -> String {
        self.user_token_issued(user_id, role, chrono::Utc::now().timestamp())
    }

    /// A user token that expired a minute ago (well past any clock-skew leeway).
    pub fn expired_user_token(&self, user_id: uuid::Uuid, role: &str) -> String {
        self.user_token_issued(user_id, role, chrono::Utc::now().timestamp() - 660)
    }

    fn user_token_issued(&self, user_id: uuid::Uuid, role: &str, now: i64) -> String {
        self.sign(serde_json::json!({
            "iss": Self::ISSUER, "sub": user_id.to_string(), "aud": "commerce",
            "exp": now + 600, "iat": now, "nbf": now, "jti": uuid::Uuid::new_v4().to_string(),
            "role": role, "sid": uuid::Uuid::new_v4().to_string(),
        }))
    }

    /// A service token from `service` to `audience`.
    pub fn service_token(&self, service: &str, audience: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        self.sign(serde_json::json!({
            "iss": Self::ISSUER, "sub": format!("service:{service}"), "aud": audience,
            "exp": now + 300, "iat": now, "nbf": now, "jti": uuid::Uuid::new_v4().to_string(),
            "role": "service",
        }))
    }
}

/// A verified user with `role`, made through the auth service's real HTTP flow (register,
/// the verification token from auth's outbox, verify, log in); the role is set in auth's
/// database. Returns (access token, user id).
pub async fn verified_user(
    client: &reqwest::Client,
    auth_url: &str,
    auth_pool: &PgPool,
    role: &str,
) -> (String, String) {
    use prost::Message;
    const PASSWORD: &str = "correct horse battery 9";
    let email = format!("{}@example.com", unique("user"));
    let response = client
        .post(format!("{auth_url}/v1/auth/register"))
        .json(&serde_json::json!({
            "email": email, "password": PASSWORD, "firstName": "Test", "lastName": "User"
        }))
        .send()
        .await
        .expect("register");
    assert_eq!(response.status(), 201, "register");
    let user: serde_json::Value = response.json().await.expect("registered user");
    let id = user["id"].as_str().expect("user id").to_owned();
    let payload: Vec<u8> = sqlx::query_scalar(
        "SELECT payload FROM outbox_events WHERE aggregate_id = $1 AND event_type = 'commerce.auth.v1.UserRegistered'",
    )
    .bind(&id)
    .fetch_one(auth_pool)
    .await
    .expect("UserRegistered in auth's outbox");
    let token = commerce_proto::auth::v1::UserRegistered::decode(payload.as_slice())
        .expect("UserRegistered")
        .verification_token;
    let verified = client
        .post(format!("{auth_url}/v1/auth/verify-email"))
        .json(&serde_json::json!({"token": token}))
        .send()
        .await
        .expect("verify");
    assert_eq!(verified.status(), 200, "verify e-mail");
    sqlx::query("UPDATE users SET role = $2 WHERE id = $1::uuid")
        .bind(&id)
        .bind(role)
        .execute(auth_pool)
        .await
        .expect("set role");
    let login: serde_json::Value = client
        .post(format!("{auth_url}/v1/auth/login"))
        .json(&serde_json::json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login answer");
    let access = login["accessToken"]
        .as_str()
        .expect("access token")
        .to_owned();
    (access, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            replace_database("postgres://u:p@h:5432/postgres", "x"),
            "postgres://u:p@h:5432/x"
        );
        assert_eq!(
            replace_database("postgres://u:p@h/postgres?sslmode=disable", "y"),
            "postgres://u:p@h/y?sslmode=disable"
        );
    }
}

#[cfg(test)]
mod port_tests {
    #[test]
    fn ports_are_not_handed_out_twice() {
        let ports: std::collections::BTreeSet<u16> = (0..200).map(|_| super::free_port()).collect();
        assert_eq!(ports.len(), 200);
        assert!(ports.iter().all(|port| (15_000..32_000).contains(port)));
    }
}

/// A real SMTP server for a test: MailDev (`scripts/smtp-sink`, installed by `make test`)
/// on free ports, its received mail readable through its REST API. Stopped when dropped.
pub struct MailSink {
    child: Child,
    pub smtp_port: u16,
    /// MailDev's web and REST base URL.
    pub web: String,
}

impl Drop for MailSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MailSink {
    pub fn start() -> Self {
        let binary = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/smtp-sink/node_modules/.bin/maildev"
        );
        assert!(
            std::path::Path::new(binary).exists(),
            "MailDev is missing: run `npm ci` in scripts/smtp-sink (make test does)"
        );
        let (smtp_port, web_port) = (free_port(), free_port());
        let child = Command::new(binary)
            .args(["--smtp", &smtp_port.to_string()])
            .args(["--web", &web_port.to_string()])
            .args(["--ip", "127.0.0.1", "--silent"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start MailDev");
        wait_for_port(smtp_port, Duration::from_secs(20));
        wait_for_port(web_port, Duration::from_secs(20));
        Self {
            child,
            smtp_port,
            web: format!("http://127.0.0.1:{web_port}"),
        }
    }

    /// The messages received for `address` (MailDev's JSON: subject, text, html, headers…).
    pub async fn mail_to(&self, address: &str) -> Vec<serde_json::Value> {
        let all: Vec<serde_json::Value> = reqwest::get(format!("{}/email", self.web))
            .await
            .expect("MailDev answers")
            .json()
            .await
            .expect("MailDev's message list");
        all.into_iter()
            .filter(|mail| mail["to"][0]["address"] == address)
            .collect()
    }
}
