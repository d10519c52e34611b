//! A whole shop for one test: `config/commerce.toml` as shipped, with every service port
//! moved to a free one, fresh databases, its own keys, search index, Redis key prefixes
//! and Kafka topic prefix, so tests run side by side and beside `make run`.

#![allow(dead_code)] // each test binary uses its own part

pub mod probes;
pub mod shoppers;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use commerce_testkit::{TestDatabase, free_port, fresh_database_on, required_env, unique};

const GRAPHQL_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../graphql");

pub const BINARY: &str = env!("CARGO_BIN_EXE_commerce");

/// The services that own a database.
const DATABASE_SERVICES: [&str; 9] = [
    "auth",
    "product",
    "cart",
    "order",
    "payment",
    "fulfillment",
    "notification",
    "chat",
    "search",
];

/// The services that namespace their Redis keys.
const REDIS_SERVICES: [&str; 8] = [
    "auth",
    "product",
    "cart",
    "order",
    "search",
    "gateway",
    "notification",
    "chat",
];

/// The `commerce` binary with only what the test sets: no inherited `COMMERCE_` overrides.
pub fn commerce() -> std::process::Command {
    let mut command = Command::new(BINARY);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

/// Kills the process when the test ends, passed or not.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Signs a seeded demo account in at `base` (a service or the gateway); its access token.
pub async fn demo_login(client: &reqwest::Client, base: &str, role: &str) -> String {
    let login: serde_json::Value = client
        .post(format!("{base}/v1/auth/login"))
        .json(&serde_json::json!({
            "email": format!("{role}@commerce.local"),
            "password": format!("{role}-demo-password-1"),
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token for the demo {role}: {login}"))
        .to_owned()
}

/// The signed-in user's own record (`GET /v1/users/me` at `base`, a service or the gateway).
pub async fn me(client: &reqwest::Client, base: &str, token: &str) -> serde_json::Value {
    client
        .get(format!("{base}/v1/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Those of `urls` (`/readyz` endpoints) that do not answer 200 now, with what they said.
pub async fn not_ready(client: &reqwest::Client, urls: &[String]) -> Vec<String> {
    let mut not_ready = Vec::new();
    for url in urls {
        match client.get(url).send().await {
            Ok(response) if response.status() == 200 => {}
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                not_ready.push(format!("{url}: {status} {body}"));
            }
            Err(error) => not_ready.push(format!("{url}: {error}")),
        }
    }
    not_ready
}

pub struct LocalShop {
    /// What `commerce` needs to run this shop.
    pub env: Vec<(String, String)>,
    pub databases: BTreeMap<&'static str, TestDatabase>,
    /// The shipped configuration's port → this shop's.
    ports: BTreeMap<u16, u16>,
    /// The shipped ports the services' operational endpoints listen on (`ops_addr`).
    service_ops_ports: Vec<u16>,
    state: tempfile::TempDir,
}

impl LocalShop {
    pub async fn new(label: &str) -> Self {
        Self::on_server(label, &required_env("COMMERCE_TEST_DATABASE_URL")).await
    }

    /// A shop whose databases are on the PostgreSQL server `admin_url` reaches as a
    /// superuser (a test's private one).
    pub async fn on_server(label: &str, admin_url: &str) -> Self {
        let state = tempfile::tempdir().unwrap();
        let mut config = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/commerce.toml"
        ))
        .unwrap();
        let service_ops_ports = config
            .lines()
            .filter_map(|line| line.trim().strip_prefix("ops_addr = \"127.0.0.1:"))
            .filter_map(|rest| rest.trim_end_matches('"').parse().ok())
            .collect();
        let mut ports = BTreeMap::new();
        for port in (8080..=8099).chain(8180..=8199).chain(9080..=9099) {
            let shipped = format!("127.0.0.1:{port}");
            if config.contains(&shipped) {
                let ours = free_port();
                config = config.replace(&shipped, &format!("127.0.0.1:{ours}"));
                ports.insert(port, ours);
            }
        }
        let config_path = state.path().join("commerce.toml");
        std::fs::write(&config_path, config).unwrap();
        let path = |name: &str| state.path().join(name).display().to_string();
        let mut env = vec![
            (
                "COMMERCE_CONFIG".to_owned(),
                config_path.display().to_string(),
            ),
            (
                "COMMERCE_KAFKA__BROKERS".to_owned(),
                required_env("COMMERCE_TEST_KAFKA_BROKERS"),
            ),
            (
                "COMMERCE_REDIS__URLS".to_owned(),
                format!("[\"{}\"]", required_env("COMMERCE_TEST_REDIS_URL")),
            ),
            (
                "COMMERCE_KAFKA__TOPIC_PREFIX".to_owned(),
                format!("{}.", unique(label)),
            ),
            (
                "COMMERCE_SERVICES__AUTH__KEYS__DIR".to_owned(),
                path("keys"),
            ),
            (
                "COMMERCE_SERVICES__AUTH__KEYS__GENERATE".to_owned(),
                "true".to_owned(),
            ),
            (
                "COMMERCE_SERVICES__SEARCH__INDEX_DIR".to_owned(),
                path("search-index"),
            ),
            (
                "COMMERCE_LOCAL_SECRETS__FILE".to_owned(),
                path("local-secrets.toml"),
            ),
            (
                "COMMERCE_SERVICES__CHAT__ATTACHMENT_DIR".to_owned(),
                path("chat-attachments"),
            ),
            ("COMMERCE_SHUTDOWN_GRACE".to_owned(), "5s".to_owned()),
            // Mail goes nowhere unless a test starts an SMTP server and points here.
            (
                "COMMERCE_SERVICES__NOTIFICATION__SMTP__PORT".to_owned(),
                free_port().to_string(),
            ),
        ];
        let mut databases = BTreeMap::new();
        for service in DATABASE_SERVICES {
            let database = fresh_database_on(admin_url, &format!("{label}{service}")).await;
            env.push((
                format!(
                    "COMMERCE_SERVICES__{}__DATABASE__URL",
                    service.to_uppercase()
                ),
                database.url.clone(),
            ));
            databases.insert(service, database);
        }
        // The Temporal worker's activities write the order service's database.
        env.push((
            "COMMERCE_SERVICES__ORDER_WORKER__DATABASE__URL".to_owned(),
            databases["order"].url.clone(),
        ));
        for service in REDIS_SERVICES {
            env.push((
                format!(
                    "COMMERCE_SERVICES__{}__REDIS_PREFIX",
                    service.to_uppercase()
                ),
                unique(&format!("{label}{service}")),
            ));
        }
        Self {
            env,
            databases,
            ports,
            service_ops_ports,
            state,
        }
    }

    /// This shop's port for one the shipped configuration names (8080 → the gateway's).
    pub fn port(&self, shipped: u16) -> u16 {
        self.ports[&shipped]
    }

    /// `http://127.0.0.1:<port>` for a shipped port.
    pub fn url(&self, shipped: u16) -> String {
        format!("http://127.0.0.1:{}", self.port(shipped))
    }

    /// A file in this shop's scratch directory.
    pub fn scratch(&self, name: &str) -> std::path::PathBuf {
        self.state.path().join(name)
    }

    /// The credential this shop generated for service client `client` on its first
    /// start (`[local_secrets]` in config/commerce.toml).
    pub fn client_secret(&self, client: &str) -> String {
        let file = self.scratch("local-secrets.toml");
        let secrets: toml::Table = std::fs::read_to_string(&file)
            .unwrap_or_else(|error| panic!("{}: {error}", file.display()))
            .parse()
            .unwrap();
        secrets[client].as_str().unwrap().to_owned()
    }

    /// The value this shop gives variable `key` (`COMMERCE_KAFKA__TOPIC_PREFIX`, …).
    pub fn env_value(&self, key: &str) -> String {
        self.env
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| panic!("this shop sets no {key}"))
    }

    pub fn database(&self, service: &str) -> &TestDatabase {
        &self.databases[service]
    }

    /// Points the shop at another Kafka cluster (a test's private one).
    pub fn use_kafka(&mut self, brokers: &str) {
        for (key, value) in &mut self.env {
            if key == "COMMERCE_KAFKA__BROKERS" {
                *value = brokers.to_owned();
            }
        }
    }

    /// Every service's `/readyz`.
    pub fn readyz_urls(&self) -> Vec<String> {
        self.service_ops_ports
            .iter()
            .map(|&port| format!("{}/readyz", self.url(port)))
            .collect()
    }

    /// Waits until every service of the shop answers `/readyz` with 200.
    pub async fn wait_until_ready(&self) {
        self.wait_until_ready_at(self.readyz_urls()).await;
    }

    /// Waits until the services with these (shipped) ops ports answer `/readyz` with 200.
    pub async fn wait_until_ready_on(&self, ops_ports: &[u16]) {
        let urls = ops_ports
            .iter()
            .map(|&port| format!("{}/readyz", self.url(port)))
            .collect();
        self.wait_until_ready_at(urls).await;
    }

    async fn wait_until_ready_at(&self, urls: Vec<String>) {
        let client = reqwest::Client::new();
        commerce_testkit::eventually(
            std::time::Duration::from_secs(60),
            "every service's /readyz to answer 200",
            || async { not_ready(&client, &urls).await.is_empty().then_some(()) },
        )
        .await;
    }

    /// `commerce serve --target all` on this shop, its output in `shop.log` in the scratch
    /// directory.
    pub fn serve(&self) -> Process {
        self.serve_only(&["all"], "shop")
    }

    /// `commerce serve` of some of the shop's services, its output in `<log>.log` in the
    /// scratch directory.
    pub fn serve_only(&self, services: &[&str], log: &str) -> Process {
        let log = std::fs::File::create(self.scratch(&format!("{log}.log"))).unwrap();
        Process(
            commerce()
                .args(["serve", "--target", &services.join(",")])
                .envs(self.env.clone())
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap(),
        )
    }

    /// Hive Gateway (`graphql/`) on this shop's GraphQL port, over a supergraph composed
    /// with this shop's subgraph addresses, as `make run` starts it.
    pub fn federation_gateway(&self) -> Process {
        let supergraph = self.scratch("supergraph.graphql");
        let composed = Command::new("node")
            .current_dir(GRAPHQL_DIR)
            .args(["compose.mjs", "--out", supergraph.to_str().unwrap()])
            .env(
                "COMMERCE_SUBGRAPH_AUTH_URL",
                format!("{}/graphql", self.url(8081)),
            )
            .env(
                "COMMERCE_SUBGRAPH_PRODUCT_URL",
                format!("{}/graphql", self.url(8082)),
            )
            .env(
                "COMMERCE_SUBGRAPH_ORDER_URL",
                format!("{}/graphql", self.url(8084)),
            )
            .output()
            .expect("node runs graphql/compose.mjs (`make test` installs graphql/node_modules)");
        assert!(
            composed.status.success(),
            "{}",
            String::from_utf8_lossy(&composed.stderr)
        );
        let log = std::fs::File::create(self.scratch("hive.log")).unwrap();
        Process(
            Command::new(format!("{GRAPHQL_DIR}/node_modules/.bin/hive-gateway"))
                .current_dir(GRAPHQL_DIR)
                .args([
                    "supergraph",
                    supergraph.to_str().unwrap(),
                    "--host",
                    "127.0.0.1",
                ])
                .args(["--port", &self.port(8090).to_string()])
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("graphql/node_modules/.bin/hive-gateway (run `npm ci` in graphql/)"),
        )
    }

    /// `commerce <args>` on this shop, run to the end; its standard output. Panics with its
    /// stderr on failure.
    pub fn run(&self, args: &[&str]) -> String {
        let output = commerce()
            .args(args)
            .envs(self.env.clone())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "commerce {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// The simulator's settings from its command-line flags, as `commerce simulate` reads them.
pub fn simulate_args(flags: &[&str]) -> commerce_simulator::SimulateArgs {
    use clap::{Args, FromArgMatches};
    let matches = commerce_simulator::SimulateArgs::augment_args(clap::Command::new("simulate"))
        .try_get_matches_from(std::iter::once("simulate").chain(flags.iter().copied()))
        .unwrap_or_else(|error| panic!("simulator flags {flags:?}: {error}"));
    commerce_simulator::SimulateArgs::from_arg_matches(&matches)
        .unwrap_or_else(|error| panic!("simulator flags {flags:?}: {error}"))
}

/// CPU time (user + system) process `pid` and its threads have used so far; zero once it
/// is gone.
pub fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // The fields after the command name, which is in parentheses and may hold spaces.
    let Some(name_end) = stat.rfind(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = stat[name_end + 2..].split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .map(|both| {
            both.iter()
                .filter_map(|field| field.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or_default();
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

/// CPU time every process on the machine has used so far, summed per program name
/// (`/proc/<pid>/comm`: `commerce`, `postgres`, `java` for Kafka, `redis-server`, …).
/// Processes that ended in between are not counted, so short-lived ones are missed.
pub fn cpu_by_program() -> std::collections::HashMap<String, Duration> {
    let mut programs = std::collections::HashMap::<String, Duration>::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return programs;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        let Ok(name) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
            continue;
        };
        *programs.entry(name.trim().to_owned()).or_default() += cpu_time(pid);
    }
    programs
}

/// Records where process `pid` spends its CPU for `seconds` with `perf` (call graphs, 999 Hz)
/// and writes the report, heaviest symbols first, to `out` (`<name>.txt` beside the
/// `perf.data`). None when perf is not installed or may not attach.
pub fn perf_profile(pid: u32, seconds: u64, out: &std::path::Path) -> Option<std::path::PathBuf> {
    let data = out.with_extension("data");
    let recorded = Command::new("perf")
        .args(["record", "-q", "-g", "-F", "999", "-o"])
        .arg(&data)
        .args(["-p", &pid.to_string(), "--", "sleep", &seconds.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    if !recorded.success() {
        return None;
    }
    let report = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--percent-limit",
            "0.5",
        ])
        .args(["--sort", "dso,symbol", "-g", "none", "-i"])
        .arg(&data)
        .output()
        .ok()?;
    let text = out.with_extension("txt");
    std::fs::write(&text, &report.stdout).ok()?;
    Some(text)
}
