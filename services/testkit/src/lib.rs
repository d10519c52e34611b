//! Test support against the real servers `scripts/infra.sh` starts. Every test gets its own
//! database, topic names and key prefix, so tests run in parallel; a test that must kill
//! the broker starts a private Kafka cluster. Missing environment is a failure, never a skip.

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

/// A database created for one test. When the test passes it is marked finished (its
/// comment), and `make test` drops finished databases while the run goes on: hundreds of
/// them would otherwise fill a small disk before the run ends. A failed test's database
/// is left behind (inspectable); `make test` drops every test database when its run ends
/// and, should a run have been cut short, before the next one.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
    admin_url: String,
}

/// The comment `make test` drops test databases by while tests still run.
const FINISHED_DATABASE: &str = "finished";

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Marked, not dropped: DROP DATABASE waits for a checkpoint (seconds on a busy
        // server), which `make test` takes off the tests' path. A thread of its own, since
        // the test's runtime may be the one dropping this.
        // A private server may be gone already, its databases with it: nothing to mark.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mark = async {
                    let mut admin = PgConnection::connect(&admin_url).await?;
                    sqlx::query(&format!(
                        "COMMENT ON DATABASE \"{name}\" IS '{FINISHED_DATABASE}'"
                    ))
                    .execute(&mut admin)
                    .await
                };
                tokio::time::timeout(Duration::from_secs(5), mark)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// Creates an empty database as the superuser in `COMMERCE_TEST_DATABASE_URL`.
pub async fn fresh_database(prefix: &str) -> TestDatabase {
    fresh_database_on(&required_env("COMMERCE_TEST_DATABASE_URL"), prefix).await
}

/// Creates an empty database on the server `admin_url` reaches as a superuser.
pub async fn fresh_database_on(admin_url: &str, prefix: &str) -> TestDatabase {
    let admin_url = admin_url.to_owned();
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
    TestDatabase {
        name,
        url,
        pool,
        admin_url,
    }
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

/// A PostgreSQL server of the test's own (the infrastructure's binaries, `COMMERCE_PG_BIN`),
/// on a free port with its data in a temporary directory, so a test can restart it under
/// load without touching the shared server. Run as the `postgres` user when the test runs
/// as root (PostgreSQL refuses root).
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("PostgreSQL directory");
        let data = dir.path().join("data");
        let port = free_port();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(
                status.success(),
                "chown the PostgreSQL directory to postgres"
            );
        }
        let initdb = pg_command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .stdout(Stdio::null())
            .status()
            .expect("run initdb");
        assert!(initdb.success(), "initdb failed");
        let settings = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nmax_connections = 200\nfsync = off\n",
            dir.path().display()
        );
        let config = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&config).expect("postgresql.conf");
        text.push_str(&settings);
        std::fs::write(&config, text).expect("write postgresql.conf");
        let server = Self { dir, port };
        server.pg_ctl(&["start", "-w", "-t", "60"]);
        server
    }

    /// The superuser's URL (no password: the server trusts local connections).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A fast restart: every session is ended, the server is down for about a second.
    pub fn restart(&self) {
        self.pg_ctl(&["restart", "-m", "fast", "-w", "-t", "60"]);
    }

    fn pg_ctl(&self, args: &[&str]) {
        let status = pg_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("run pg_ctl");
        assert!(
            status.success(),
            "pg_ctl {args:?} failed; see its server.log"
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = pg_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["stop", "-m", "immediate"])
            .stdout(Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid only reads the process's user id.
    unsafe { libc::geteuid() == 0 }
}

/// A PostgreSQL program from `COMMERCE_PG_BIN`, as `postgres` when the test is root.
fn pg_command(program: &str) -> Command {
    let path = PathBuf::from(required_env("COMMERCE_PG_BIN")).join(program);
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

/// A six-node Redis Cluster of the test's own (three masters, each with a replica; node
/// timeout 2 s, append-only files), so a test can SIGKILL a master and watch its replica
/// take over without touching the shared cluster.
pub struct PrivateRedisCluster {
    dir: tempfile::TempDir,
    nodes: Vec<RedisNode>,
}

struct RedisNode {
    port: u16,
    /// Chosen like `port`: the default (`port` + 10000) can land in the ephemeral range
    /// and be taken by some test's outgoing connection.
    bus_port: u16,
    child: Option<Child>,
}

impl Drop for PrivateRedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (scripts/infra.sh installs it)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl PrivateRedisCluster {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("Redis directory");
        let mut cluster = Self {
            nodes: (0..6)
                .map(|_| RedisNode {
                    port: free_port(),
                    bus_port: free_port(),
                    child: None,
                })
                .collect(),
            dir,
        };
        for node in 0..cluster.nodes.len() {
            cluster.start_node(node);
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli --cluster create");
        assert!(
            created.success(),
            "creating the private Redis Cluster failed"
        );
        cluster.wait_healthy(None);
        cluster
    }

    /// `redis://127.0.0.1:<port>` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}", node.port))
            .collect()
    }

    /// (Re)starts node `node` on its port and data; a restarted master rejoins as a replica.
    pub fn start_node(&mut self, node: usize) {
        let RedisNode { port, bus_port, .. } = self.nodes[node];
        let node_dir = self.dir.path().join(port.to_string());
        std::fs::create_dir_all(&node_dir).expect("Redis node directory");
        let log = node_dir.join("redis.log");
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
            .args(["--cluster-port", &bus_port.to_string()])
            .args(["--appendonly", "yes", "--save", ""])
            .arg("--dir")
            .arg(&node_dir)
            .arg("--logfile")
            .arg(&log)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/infra.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let written = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = written.lines().rev().take(10).collect();
                panic!(
                    "Redis node on port {port} (bus {bus_port}) did not listen ({}); its log ends:\n{}",
                    exited.map_or("timed out after 20s".to_owned(), |status| status
                        .to_string()),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.nodes[node].child = Some(child);
    }

    /// SIGKILLs a master and waits until its replica serves its slots; the node's index.
    pub fn kill_a_master(&mut self) -> usize {
        let layout = redis_cli(self.nodes[0].port, &["cluster", "nodes"]);
        let master_port: u16 = layout
            .lines()
            .find(|line| line.contains("master") && !line.contains("fail"))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|address| address.split(['@', ':']).nth(1))
            .and_then(|port| port.parse().ok())
            .expect("a master in CLUSTER NODES");
        let node = self
            .nodes
            .iter()
            .position(|node| node.port == master_port)
            .expect("the master is one of ours");
        if let Some(mut child) = self.nodes[node].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.wait_healthy(Some(master_port));
        node
    }

    /// Waits until a live node reports every slot served and, when `gone` is given, that
    /// node marked failed (its replica promoted).
    fn wait_healthy(&self, gone: Option<u16>) {
        let witness = self
            .nodes
            .iter()
            .find(|node| node.child.is_some() && Some(node.port) != gone)
            .expect("a live node")
            .port;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let info = redis_cli(witness, &["cluster", "info"]);
            let nodes = redis_cli(witness, &["cluster", "nodes"]);
            let failed_over = gone.is_none_or(|port| {
                nodes.lines().any(|line| {
                    line.contains(&format!(":{port}@"))
                        && line.contains("fail")
                        && !line.contains("fail?")
                })
            });
            if info.contains("cluster_state:ok") && failed_over {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the private Redis Cluster did not become healthy:\n{info}\n{nodes}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// An Apache Kafka cluster of the test's own (KRaft, combined broker + controller nodes,
/// `scripts/kafka/server.properties` filled in, the jars `scripts/kafka.sh` fetched), on
/// free ports with durable log directories, so the test can kill nodes and start them
/// again on the same data. Three nodes replicate every topic three times and need two
/// in-sync copies for a write; one node stands alone.
pub struct PrivateKafka {
    nodes: Vec<KafkaNode>,
    dir: tempfile::TempDir,
}

/// One partition as the cluster's metadata reports it.
#[derive(Debug, Clone)]
pub struct PartitionState {
    pub topic: String,
    /// The leading broker's id (from 1), or -1 while none leads.
    pub leader: i32,
    pub in_sync: Vec<i32>,
}

struct KafkaNode {
    port: u16,
    config: PathBuf,
    child: Option<Child>,
}

impl PrivateKafka {
    pub fn start(nodes: usize) -> Self {
        assert!(
            nodes == 1 || nodes == 3,
            "a private Kafka has one node or three"
        );
        let home = PathBuf::from(required_env("COMMERCE_KAFKA_HOME"));
        let template = std::fs::read_to_string(home.join("server.properties"))
            .expect("read scripts/kafka/server.properties");
        let dir = tempfile::tempdir().expect("Kafka directory");
        // (broker, controller) per node.
        let ports: Vec<(u16, u16)> = (0..nodes).map(|_| (free_port(), free_port())).collect();
        let voters = ports
            .iter()
            .enumerate()
            .map(|(index, (_, controller))| format!("{}@127.0.0.1:{controller}", index + 1))
            .collect::<Vec<_>>()
            .join(",");
        let (replication, min_isr) = if nodes == 3 { ("3", "2") } else { ("1", "1") };
        let cluster_id = kafka_cluster_id();
        let mut formatting = Vec::new();
        let nodes: Vec<KafkaNode> = ports
            .iter()
            .enumerate()
            .map(|(index, (port, controller))| {
                let node_dir = dir.path().join(format!("node-{}", index + 1));
                std::fs::create_dir_all(&node_dir).expect("node directory");
                let properties = template
                    .replace("@NODE_ID@", &(index + 1).to_string())
                    .replace("@BROKER_PORT@", &port.to_string())
                    .replace("@CONTROLLER_PORT@", &controller.to_string())
                    .replace("@VOTERS@", &voters)
                    .replace("@LOG_DIR@", &node_dir.join("data").display().to_string())
                    .replace("@REPLICATION@", replication)
                    .replace("@MIN_ISR@", min_isr);
                let config = node_dir.join("server.properties");
                std::fs::write(&config, properties).expect("write server.properties");
                formatting.push(
                    kafka_java(&home, &node_dir)
                        .args(["kafka.tools.StorageTool", "format", "-t", &cluster_id, "-c"])
                        .arg(&config)
                        .spawn()
                        .expect("start Kafka's storage tool"),
                );
                KafkaNode {
                    port: *port,
                    config,
                    child: None,
                }
            })
            .collect();
        for mut format in formatting {
            assert!(
                format.wait().expect("storage tool").success(),
                "formatting a Kafka node's storage failed; see its kafka.log"
            );
        }
        let mut kafka = Self { nodes, dir };
        for node in 0..kafka.nodes.len() {
            kafka.spawn(node);
        }
        for node in 0..kafka.nodes.len() {
            wait_for_port(kafka.nodes[node].port, Duration::from_secs(120));
        }
        kafka
    }

    /// The bootstrap list, every node.
    pub fn brokers(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node (0-based) whose broker id is `broker_id` (Kafka numbers them from 1).
    pub fn node_of_broker(&self, broker_id: i32) -> usize {
        usize::try_from(broker_id - 1).expect("Kafka broker ids start at 1")
    }

    /// Every partition of `topic`, or of every topic (Kafka's own included), as the
    /// cluster reports it.
    pub fn partitions(&self, topic: Option<&str>) -> Vec<PartitionState> {
        use rdkafka::producer::Producer;
        let client: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("log_level", "3")
            .create()
            .expect("a metadata client");
        let metadata = client
            .client()
            .fetch_metadata(topic, Duration::from_secs(10))
            .expect("cluster metadata");
        metadata
            .topics()
            .iter()
            .flat_map(|topic| {
                topic.partitions().iter().map(|partition| PartitionState {
                    topic: topic.name().to_owned(),
                    leader: partition.leader(),
                    in_sync: partition.isr().to_vec(),
                })
            })
            .collect()
    }

    /// Waits until every partition of every topic has a leader and all its replicas in
    /// sync: a node that came back has caught up, as a rolling restart of a StatefulSet
    /// waits for before it takes the next one.
    pub async fn wait_fully_replicated(&self) {
        let replicas = self.nodes.len();
        eventually(
            Duration::from_secs(90),
            "every partition in sync on every node",
            || async {
                self.partitions(None)
                    .iter()
                    .all(|partition| partition.leader >= 1 && partition.in_sync.len() == replicas)
                    .then_some(())
            },
        )
        .await;
    }

    pub fn is_running(&self, node: usize) -> bool {
        self.nodes[node].child.is_some()
    }

    fn spawn(&mut self, node: usize) {
        let home = PathBuf::from(required_env("COMMERCE_KAFKA_HOME"));
        let node_dir = self.dir.path().join(format!("node-{}", node + 1));
        let child = kafka_java(&home, &node_dir)
            .arg("kafka.Kafka")
            .arg(&self.nodes[node].config)
            .spawn()
            .expect("start a Kafka node");
        self.nodes[node].child = Some(child);
    }

    /// Starts a stopped node again on its port and data, and waits for its broker.
    pub fn start_node(&mut self, node: usize) {
        assert!(!self.is_running(node), "node {node} is running");
        self.spawn(node);
        wait_for_port(self.nodes[node].port, Duration::from_secs(120));
    }

    /// SIGKILL: no chance to flush or hand over leadership.
    pub fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The running nodes' process ids (for CPU accounting).
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|node| node.child.as_ref().map(Child::id))
            .collect()
    }

    /// SIGTERM and wait: a controlled shutdown that moves leadership away first, as a
    /// rolling restart does.
    pub fn stop(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// A random cluster id as Kafka writes them (16 bytes, URL-safe base64 without padding).
/// Like Kafka's own `Uuid.randomUuid`, never one starting with `-`: the storage tool would
/// read `-t -…` as an option and refuse to format (one start in 64 did).
fn kafka_cluster_id() -> String {
    loop {
        let id = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            uuid::Uuid::new_v4().as_bytes(),
        );
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// `java` with the JVM settings scripts/kafka.sh uses, logging to the node's kafka.log.
/// The JVM dies with the thread that started it (the test's), however the test ends.
fn kafka_java(home: &std::path::Path, node_dir: &std::path::Path) -> Command {
    let libs = required_env("COMMERCE_KAFKA_LIBS");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node_dir.join("kafka.log"))
        .expect("Kafka log");
    let mut command = Command::new("java");
    command
        .args([
            "-Xms64m",
            "-Xmx384m",
            "-XX:+UseG1GC",
            "-XX:+ExitOnOutOfMemoryError",
        ])
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            home.join("log4j2.yaml").display()
        ))
        .arg("-cp")
        .arg(format!("{libs}/*"))
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stderr(log.try_clone().expect("Kafka log"))
        .stdout(log);
    // SAFETY: prctl is async-signal-safe and touches only the child being started.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    command
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        // A panicking test's consumers close only when its runtime goes, after this, and
        // would wait on dead brokers: the nodes then die with the test's thread instead.
        if std::thread::panicking() {
            return;
        }
        for node in 0..self.nodes.len() {
            self.kill(node);
        }
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
    assert_eq!(response.status(), 202, "register");
    // The answer names only the address (it does not tell who already has an account).
    let id: String = sqlx::query_scalar("SELECT id::text FROM users WHERE email = $1")
        .bind(&email)
        .fetch_one(auth_pool)
        .await
        .expect("the new account in auth's database");
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

/// Toxiproxy (`COMMERCE_TOXIPROXY_BIN`, built by `scripts/infra.sh`) on a free port: TCP
/// proxies a test puts between the shop and a dependency, to slow their traffic down
/// while the shop runs. Stopped when dropped.
pub struct Toxiproxy {
    child: Child,
    api: String,
    client: reqwest::Client,
}

impl Drop for Toxiproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Toxiproxy {
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new(required_env("COMMERCE_TOXIPROXY_BIN"))
            .args(["-host", "127.0.0.1", "-port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start toxiproxy-server");
        wait_for_port(port, Duration::from_secs(20));
        Self {
            child,
            api: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        }
    }

    /// Opens proxy `name` to `127.0.0.1:upstream` and returns the port it listens on.
    pub async fn proxy(&self, name: &str, upstream: u16) -> u16 {
        let listen = free_port();
        self.call(
            reqwest::Method::POST,
            "/proxies",
            serde_json::json!({
                "name": name,
                "listen": format!("127.0.0.1:{listen}"),
                "upstream": format!("127.0.0.1:{upstream}"),
                "enabled": true,
            }),
        )
        .await;
        listen
    }

    /// Delays every answer through proxy `name` by `latency`, give or take `jitter`.
    pub async fn delay(&self, name: &str, latency: Duration, jitter: Duration) {
        self.call(
            reqwest::Method::POST,
            &format!("/proxies/{name}/toxics"),
            serde_json::json!({
                "name": "delay",
                "type": "latency",
                "stream": "downstream",
                "toxicity": 1.0,
                "attributes": {
                    "latency": latency.as_millis() as u64,
                    "jitter": jitter.as_millis() as u64,
                },
            }),
        )
        .await;
    }

    /// Takes the delay of proxy `name` away.
    pub async fn undelay(&self, name: &str) {
        self.call(
            reqwest::Method::DELETE,
            &format!("/proxies/{name}/toxics/delay"),
            serde_json::Value::Null,
        )
        .await;
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: serde_json::Value) {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.api));
        if !body.is_null() {
            request = request.json(&body);
        }
        let response = request.send().await.expect("Toxiproxy's API answers");
        let status = response.status();
        assert!(
            status.is_success(),
            "Toxiproxy refused {method} {path}: {status} {}",
            response.text().await.unwrap_or_default()
        );
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

/// SeaweedFS (`COMMERCE_SEAWEEDFS_BIN`, built by `scripts/infra.sh`): master, volume
/// server, filer and its S3 gateway on free ports, in a directory of the test's own, with
/// one identity whose keys [`S3Server::access_key`] and [`S3Server::secret_key`] give.
/// Stopped when dropped.
pub struct S3Server {
    child: Child,
    /// The master's `host:port.grpcPort`, as SeaweedFS's tools take it.
    master: String,
    s3: u16,
    _dir: tempfile::TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    pub const ACCESS_KEY: &str = "commerce-test-access-key";
    pub const SECRET_KEY: &str = "commerce-test-secret-key-of-40-characters";

    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("SeaweedFS directory");
        let identities = serde_json::json!({"identities": [{
            "name": "commerce",
            "credentials": [{"accessKey": Self::ACCESS_KEY, "secretKey": Self::SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]
        }]});
        let config = dir.path().join("s3.json");
        std::fs::write(&config, identities.to_string()).expect("S3 identities");
        let [
            master,
            master_grpc,
            volume,
            volume_grpc,
            filer,
            filer_grpc,
            s3,
            s3_grpc,
        ] = std::array::from_fn(|_| free_port());
        let child = Command::new(required_env("COMMERCE_SEAWEEDFS_BIN"))
            .arg("server")
            .args(["-ip", "127.0.0.1", "-ip.bind", "127.0.0.1"])
            .arg(format!("-dir={}", dir.path().display()))
            .args(["-volume.max", "4", "-master.volumeSizeLimitMB", "64"])
            .args(["-filer", "-s3"])
            .arg(format!("-master.port={master}"))
            .arg(format!("-master.port.grpc={master_grpc}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-volume.port.grpc={volume_grpc}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-filer.port.grpc={filer_grpc}"))
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-s3.port.grpc={s3_grpc}"))
            .arg(format!("-s3.config={}", config.display()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("weed.log")).expect("log"))
            .spawn()
            .expect("start SeaweedFS (scripts/infra.sh builds it)");
        wait_for_port(s3, Duration::from_secs(60));
        Self {
            child,
            master: format!("127.0.0.1:{master}.{master_grpc}"),
            s3,
            _dir: dir,
        }
    }

    /// The S3 gateway's URL (path-style requests).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3)
    }

    /// Creates a bucket (with SeaweedFS's shell: S3 clients' CreateBucket needs signing
    /// the tests would otherwise write themselves).
    pub fn create_bucket(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut shell = Command::new(required_env("COMMERCE_SEAWEEDFS_BIN"))
                .args(["shell", &format!("-master={}", self.master)])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("weed shell");
            {
                use std::io::Write;
                let mut input = shell.stdin.take().expect("shell input");
                writeln!(input, "s3.bucket.create -name {name}").expect("shell command");
                writeln!(input, "s3.bucket.list").expect("shell command");
                writeln!(input, "exit").expect("shell command");
            }
            let output = shell.wait_with_output().expect("weed shell output");
            let listed = String::from_utf8_lossy(&output.stdout);
            if listed.lines().any(|line| line.trim().starts_with(name)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not create bucket {name}: {listed}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}
