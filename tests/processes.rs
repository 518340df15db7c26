//! Herald deployed as its roles, each a process of its own — `herald api`, `herald scheduler` and
//! two `herald consumer`s sharing only the servers (MariaDB, Redis, RocketMQ, the search server) —
//! sending one nationwide notice to riders across 50 cities, and kill -9 of a consumer or of the
//! scheduler in the middle of it. Each case ends exact: `sent == matched` in all and per city in
//! the API, in SQL's ledger of delivered pages and in the Redis counters hash, every receiver in
//! the notification's holders once, and every sampled inbox holding the message once.
//!
//! Only meaningful on the servers: it runs with `HERALD_TEST_HTTP_ON_SERVERS=1` (built with
//! `--features distributed`, as `.ci/run` does), and otherwise says why it skips.

mod common;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{SECRET, TestHerald, TestServers};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const CITIES: usize = 50;
/// How long a send, or a process coming up, may take on a loaded 2-core machine (debug build).
const PATIENCE: Duration = Duration::from_secs(240);

/// Riders of each fault case: the issue asks for ≥ 100k over 50 cities in every one.
const RIDERS: usize = 100_000;
/// How soon `/readyz` must name a backend that died: a few of its own checks' timeouts.
const READY_NAMES: Duration = Duration::from_secs(20);
/// The scheduler's pace in the fault cases, so that the fault lands mid-send: 200 pages at 10/s.
const PACED: &[&str] = &["--max-pages-per-second", "10"];

/// One process of the test's — a `herald <role>` on the test's servers with a data dir of its own,
/// or a server the test started itself — logging to a file; killed (SIGKILL) and reaped when
/// dropped, so a failing test leaves no process behind.
struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn start(dir: &Path, name: &str, args: &[&str], servers: &TestServers) -> Self {
        let mut herald = Command::new(env!("CARGO_BIN_EXE_herald"));
        herald
            .args(args)
            .env("HERALD_DATA_DIR", dir.join(name))
            .envs(servers.env())
            .env("HERALD_SECRET", SECRET)
            // The consumers say which pages each delivered (debug), so a kill can wait for it.
            .env("RUST_LOG", "warn,herald=info,herald_consumers=debug");
        Self::spawn(dir, name, herald)
    }

    /// `command` as the process `name`, its output to `<dir>/<name>.log`.
    fn spawn(dir: &Path, name: &str, mut command: Command) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts: {e}"));
        Self { name: name.to_string(), child, log }
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its state and the last lines of its log, for a failure message.
    fn report(&mut self) -> String {
        let state = match self.child.try_wait() {
            Ok(None) => "running".to_string(),
            Ok(Some(status)) => format!("ended: {status}"),
            Err(e) => format!("unknown: {e}"),
        };
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("--- {} ({state}):\n{}", self.name, tail.join("\n"))
    }

    /// Waits until its log has a line containing `what` and answers that line; fails, with the
    /// log, when the process ends first or `PATIENCE` passes.
    async fn until_logged(&mut self, what: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(what)) {
                return line.to_string();
            }
            let ended = !matches!(self.child.try_wait(), Ok(None));
            assert!(!ended && Instant::now() < deadline, "never logged {what:?}\n{}", self.report());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no shutdown code runs, nothing in hand is acked or finished.
    fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// A deployment of this test's own: receivers imported, then the four role processes up. Fields
/// drop in order: the processes end before the servers' places are removed.
struct Deployment {
    api: Process,
    scheduler: Process,
    consumers: Vec<Process>,
    t: TestHerald,
    riders: usize,
    servers: TestServers,
    dir: tempfile::TempDir,
}

impl Deployment {
    /// `riders` riders `r000000…` round-robin over `CITIES` cities, imported with `herald receivers
    /// import`; then the roles, the scheduler with `scheduler_args`. None (the reason printed) when
    /// this run is not on the servers.
    async fn start(riders: usize, scheduler_args: &[&str]) -> Option<Self> {
        Self::start_on(riders, scheduler_args, &[]).await
    }

    /// As `start`, with the servers of `own` (`TestServers::with_own`) in place of the shared ones.
    async fn start_on(riders: usize, scheduler_args: &[&str], own: &[(&str, String)]) -> Option<Self> {
        let servers = TestServers::with_own(own).await;
        if !on_servers(&servers) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let took = Instant::now();
        import(dir.path(), &servers, riders);
        eprintln!("imported {riders} riders in {:.1} s", took.elapsed().as_secs_f64());

        let took = Instant::now();
        let mut scheduler =
            Process::start(dir.path(), "scheduler", &[&["scheduler"][..], scheduler_args].concat(), &servers);
        let mut consumers: Vec<Process> =
            (1..=2).map(|n| Process::start(dir.path(), &format!("consumer-{n}"), &["consumer"], &servers)).collect();
        let mut api = Process::start(dir.path(), "api", &["api", "--listen", "127.0.0.1:0"], &servers);
        scheduler.until_logged("herald scheduler running").await;
        for c in &mut consumers {
            c.until_logged("herald consumer running").await;
        }
        let t = ready(&mut api).await;
        eprintln!("4 processes up in {:.1} s", took.elapsed().as_secs_f64());
        Some(Self { api, scheduler, consumers, t, riders, servers, dir })
    }

    /// A new `herald api` on the address the first one had, once it is ready; clients keep
    /// theirs.
    async fn restart_api(&mut self, name: &str) {
        let listen = self.t.base.trim_start_matches("http://").to_string();
        self.api = self.process(name, &["api", "--listen", &listen]);
        self.t = ready(&mut self.api).await;
    }

    /// Waits until the api answers `/readyz` again (after a server it needs came back).
    async fn until_ready(&mut self) {
        self.t = ready(&mut self.api).await;
    }

    /// The api's `/readyz` (status, `checks`) once `until` holds for its checks; fails after `READY_NAMES`.
    async fn readiness_until(&mut self, what: &str, until: impl Fn(&Value) -> bool) -> (StatusCode, Value) {
        let deadline = Instant::now() + READY_NAMES;
        loop {
            let r = self.t.call(Method::GET, "/readyz", None, None).await;
            if until(&r.body["checks"]) {
                return (r.status, r.body["checks"].clone());
            }
            assert!(Instant::now() < deadline, "{what}: never within {READY_NAMES:?}: {} {}", r.status, r.body);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every role process still runs: each rode the fault out (none ended, none was restarted).
    fn assert_all_running(&mut self) {
        for p in [&mut self.api, &mut self.scheduler].into_iter().chain(self.consumers.iter_mut()) {
            assert!(p.running(), "a role ended\n{}", p.report());
        }
    }

    /// How many lines of each role's log contain `what`, as `name=count` (informative).
    fn logged(&self, what: &str) -> String {
        [&self.api, &self.scheduler]
            .into_iter()
            .chain(self.consumers.iter())
            .map(|p| format!("{}={}", p.name, p.log().lines().filter(|l| l.contains(what)).count()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Waits until at least `riders` of the sample hold `id` in their inbox; answers the sampled
    /// riders that do then.
    async fn until_held(&mut self, id: &str, riders: usize) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut holding = Vec::new();
            for rider in self.sample(0..CITIES) {
                if self.t.inbox_ids(&self.t.app_token("rider", &rider)).await.iter().any(|h| h == id) {
                    holding.push(rider);
                }
            }
            if holding.len() >= riders {
                return holding;
            }
            if Instant::now() > deadline {
                panic!("not {riders} sampled riders got it within {PATIENCE:?}\n{}", self.report(id).await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `herald rebuild` on the deployment's servers, as an operator runs it; answers its report.
    fn rebuild(&self) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("rebuild")
            .env("HERALD_DATA_DIR", self.dir.path().join("rebuild"))
            .envs(self.servers.env())
            .env("HERALD_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .output()
            .expect("herald rebuild runs");
        let said = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "herald rebuild failed: {said}");
        said.lines().filter(|l| l.contains("rebuilt from SQL") || l.contains("still delivering")).collect()
    }

    fn process(&self, name: &str, args: &[&str]) -> Process {
        Process::start(self.dir.path(), name, args, &self.servers)
    }

    /// One notice to every rider, through the API.
    async fn broadcast(&self) -> String {
        self.t.create(&TestHerald::notification("全国骑手通知", json!({"all": true}), json!({}))).await
    }

    async fn view(&self, id: &str) -> Value {
        self.t.notification_view(id).await
    }

    async fn pages_published(&self, id: &str) -> u64 {
        let sql = self.servers.sql_by_hand(self.dir.path()).await;
        let published = sql.pages_published(id).await;
        sql.close().await;
        published
    }

    /// Everything a failure should show: the view, SQL's paging, and each process's log.
    async fn report(&mut self, id: &str) -> String {
        let view = self.view(id).await;
        let published = self.pages_published(id).await;
        let mut out = format!("status {}, stats {}, pages published {published}\n", view["status"], view["stats"]);
        for p in [&mut self.api, &mut self.scheduler].into_iter().chain(self.consumers.iter_mut()) {
            out.push_str(&p.report());
            out.push('\n');
        }
        out
    }

    /// Polls the view until `done` holds of it; fails with the whole state after `PATIENCE`.
    async fn until(&mut self, what: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let view = self.view(id).await;
            if done(&view) {
                return view;
            }
            if Instant::now() > deadline {
                panic!("{what}: not within {PATIENCE:?}\n{}", self.report(id).await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn until_sent(&mut self, id: &str) -> Value {
        let took = Instant::now();
        let view = self.until("the send ends", id, |v| v["status"] == "sent").await;
        eprintln!("sent {} riders in {:.1} s", self.riders, took.elapsed().as_secs_f64());
        view
    }

    /// About 4 riders of each of `cities`, spread evenly over each city's riders.
    fn sample(&self, cities: Range<usize>) -> Vec<String> {
        let per_city = self.riders / CITIES;
        cities.flat_map(|c| (0..4).map(move |j| format!("r{:06}", c + CITIES * (j * per_city / 4)))).collect()
    }

    /// The end state of a notice to every rider of `cities` is exact everywhere it is kept.
    async fn assert_exact(&self, id: &str, view: &Value, cities: Range<usize>) {
        let took = Instant::now();
        self.assert_exact_now(id, view, cities).await;
        eprintln!("checked exact in {:.1} s", took.elapsed().as_secs_f64());
    }

    async fn assert_exact_now(&self, id: &str, view: &Value, cities: Range<usize>) {
        let per_city = (self.riders / CITIES) as u64;
        let all = per_city * cities.len() as u64;
        let names: std::collections::BTreeSet<String> = cities.clone().map(city).collect();
        let pages_per_city = per_city.div_ceil(herald_domain::PAGE_SIZE as u64);
        // The API: matched from SQL's send tasks, sent from the inbox store's counters.
        assert_eq!(view["status"], "sent", "{view}");
        assert_eq!((&view["stats"]["matched"], &view["stats"]["sent"]), (&json!(all), &json!(all)), "{view}");
        let listed = view["cities"].as_array().expect("cities");
        let listed_names: std::collections::BTreeSet<String> =
            listed.iter().map(|c| c["city"].as_str().expect("a city").to_string()).collect();
        assert_eq!(listed_names, names, "{view}");
        for c in listed {
            assert_eq!(
                (&c["matched"], &c["sent"], &c["done"]),
                (&json!(per_city), &json!(per_city), &json!(true)),
                "{c}"
            );
        }
        // SQL: every page of every city recorded once, with what it added.
        let sql = self.servers.sql_by_hand(self.dir.path()).await;
        let delivered = sql.delivered_by_city(id).await;
        sql.close().await;
        assert_eq!(delivered.keys().cloned().collect::<std::collections::BTreeSet<_>>(), names, "{delivered:?}");
        for (city, pages_and_added) in &delivered {
            assert_eq!(*pages_and_added, (pages_per_city, per_city), "SQL's delivered pages of {city}");
        }
        // Redis, read by hand: the counters hash, and who holds it.
        let (counters, holders) = redis_counts(&self.servers, id);
        assert_eq!(counters.get("sent"), Some(&all), "{counters:?}");
        for city in delivered.keys() {
            assert_eq!(counters.get(&format!("sent:{city}")), Some(&per_city), "{counters:?}");
        }
        assert_eq!(counters.keys().filter(|k| k.starts_with("sent:")).count(), names.len(), "{counters:?}");
        assert_eq!(holders, all, "every rider in the notification's holders once");
        // The inboxes, through the API, as the apps read them: 4 riders of each city.
        for rider in self.sample(cities) {
            let held = self.t.inbox_ids(&self.t.app_token("rider", &rider)).await;
            assert_eq!(held.iter().filter(|h| *h == id).count(), 1, "{rider} holds it once: {held:?}");
        }
    }
}

/// Waits until `api` says where it listens and answers `/readyz`; a client for it.
async fn ready(api: &mut Process) -> TestHerald {
    let line = api.until_logged("herald api running on http://").await;
    let base = line.split("running on ").nth(1).and_then(|s| s.split_whitespace().next()).expect("the address");
    let t = TestHerald::attach(base);
    let deadline = Instant::now() + PATIENCE;
    while t.client.get(format!("{base}/readyz")).send().await.map(|r| r.status()).ok() != Some(StatusCode::OK) {
        assert!(Instant::now() < deadline, "the API never became ready\n{}", api.report());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t
}

/// Whether this run is on the servers; when not, says why it skips (with CI=true a run asked to
/// be on the servers must have each of them).
fn on_servers(servers: &TestServers) -> bool {
    if std::env::var("HERALD_TEST_HTTP_ON_SERVERS").as_deref() != Ok("1") {
        eprintln!("skipped: the roles as processes run only on the servers (HERALD_TEST_HTTP_ON_SERVERS=1)");
        return false;
    }
    let missing: Vec<&str> = [
        (servers.sql_on_server(), "HERALD_TEST_MYSQL_URL"),
        (servers.inbox_on_server(), "HERALD_TEST_INBOX_REDIS_URL"),
        (servers.queue_on_server(), "HERALD_TEST_MQ_NAMESRV"),
    ]
    .into_iter()
    .filter_map(|(on, name)| (!on).then_some(name))
    .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and these are unset: {missing:?}");
    eprintln!("skipped: processes share only servers, and these are unset: {missing:?}");
    false
}

/// The name of city `n` (`city00…`).
fn city(n: usize) -> String {
    format!("city{n:02}")
}

/// Imports `riders` riders over `CITIES` cities with `herald receivers import`.
fn import(dir: &Path, servers: &TestServers, riders: usize) {
    use std::io::Write as _;
    let csv = dir.join("riders.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
    writeln!(f, "kind,id,city,groups").unwrap();
    for i in 0..riders {
        writeln!(f, "rider,r{i:06},{},", city(i % CITIES)).unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["receivers", "import"])
        .arg(&csv)
        .env("HERALD_DATA_DIR", dir.join("import"))
        .envs(servers.env())
        .output()
        .unwrap();
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("imported {riders} receivers")));
}

/// The notification's counters hash (`P:{n:<id>}:c`) and how many receivers its holder buckets
/// (`P:{n:<id>}:h:0..4095`) hold, read from Redis under the test's prefix (adapters/redis's keys).
#[cfg(feature = "redis")]
fn redis_counts(servers: &TestServers, id: &str) -> (std::collections::BTreeMap<String, u64>, u64) {
    use herald_redis::RedisServer;
    let (url, prefix) = servers.redis_place().expect("the inboxes on Redis");
    let mut conn: Box<dyn redis::ConnectionLike> = match RedisServer::parse(url).expect("a Redis URL") {
        RedisServer::Single(url) => Box::new(redis::Client::open(url.as_str()).unwrap().get_connection().unwrap()),
        RedisServer::Cluster(nodes) => {
            Box::new(redis::cluster::ClusterClient::new(nodes).unwrap().get_connection().unwrap())
        }
    };
    let key = |what: &str| format!("{prefix}:{{n:{id}}}:{what}");
    let counters: std::collections::BTreeMap<String, u64> =
        redis::cmd("HGETALL").arg(key("c")).query(conn.as_mut()).expect("the counters");
    // One script over the 4096 buckets (they share the notification's hash tag, so one slot): one
    // round trip instead of 4096 (the sync cluster connection takes no pipeline).
    let buckets: Vec<String> = (0..4096).map(|bucket| key(&format!("h:{bucket}"))).collect();
    let holders = redis::cmd("EVAL")
        .arg("local n = 0 for _, k in ipairs(KEYS) do n = n + redis.call('HLEN', k) end return n")
        .arg(buckets.len())
        .arg(&buckets)
        .query::<u64>(conn.as_mut())
        .expect("the holders");
    (counters, holders)
}

#[cfg(not(feature = "redis"))]
fn redis_counts(_servers: &TestServers, _id: &str) -> (std::collections::BTreeMap<String, u64>, u64) {
    unreachable!("the inboxes are on Redis only with the redis feature: `TestServers::new` stops first")
}

/// Whether this run is asked to be on the servers (before a test starts servers of its own for it);
/// when not, says why it skips.
fn asked_for_servers() -> bool {
    let asked = std::env::var("HERALD_TEST_HTTP_ON_SERVERS").as_deref() == Ok("1");
    if !asked {
        eprintln!("skipped: the roles as processes run only on the servers (HERALD_TEST_HTTP_ON_SERVERS=1)");
    }
    asked
}

/// A port nothing listens on now (the system's pick).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().unwrap().port()
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Waits until `server` accepts connections on `port`; fails, with its log, when it ends first or
/// `PATIENCE` passes.
async fn until_listening(server: &mut Process, port: u16) {
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(server.running() && Instant::now() < deadline, "never listened on {port}\n{}", server.report());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A redis-server of this test's own on a port of its own, its files in a directory of its own
/// (the shared 6379 is never restarted nor flushed). With `appendonly` every write goes to the
/// append-only file before its reply, so a kill -9 and a start on the same directory keep them all;
/// without, nothing is kept (`--save ""`): a restart comes back empty, as after a FLUSHALL.
struct OwnRedis {
    server: Process,
    port: u16,
    appendonly: bool,
    restarts: usize,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    async fn start(appendonly: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let server = Self::launch(dir.path(), "redis", port, appendonly);
        let mut own = Self { server, port, appendonly, restarts: 0, dir };
        until_listening(&mut own.server, port).await;
        own
    }

    fn launch(dir: &Path, name: &str, port: u16, appendonly: bool) -> Process {
        let mut redis = Command::new("redis-server");
        redis.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no"]);
        redis.args(["--appendonly", if appendonly { "yes" } else { "no" }]).arg("--dir").arg(dir);
        Process::spawn(dir, name, redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill_9(&mut self) {
        self.server.kill_9();
    }

    /// A new redis-server on the same port and directory.
    async fn restart(&mut self) {
        self.restarts += 1;
        self.server = Self::launch(self.dir.path(), &format!("redis-{}", self.restarts), self.port, self.appendonly);
        until_listening(&mut self.server, self.port).await;
    }

    fn flushall(&self) {
        let out = Command::new("redis-cli").args(["-p", &self.port.to_string(), "FLUSHALL"]).output().unwrap();
        assert!(out.status.success() && out.stdout.starts_with(b"OK"), "FLUSHALL: {out:?}");
    }
}

/// A mariadbd of this test's own: a data directory made by `mariadb-install-db`, its own port and
/// socket, run as root, grants skipped (it listens on loopback only, for this test alone). The
/// machine's MariaDB on 3306 is never restarted.
struct OwnMariaDb {
    server: Process,
    port: u16,
    restarts: usize,
    dir: tempfile::TempDir,
}

impl OwnMariaDb {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--auth-root-authentication-method=normal", "--skip-test-db"])
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .output()
            .expect("mariadb-install-db runs");
        assert!(out.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let server = Self::launch(dir.path(), "mariadb", port);
        let mut own = Self { server, port, restarts: 0, dir };
        until_listening(&mut own.server, port).await;
        own
    }

    fn launch(dir: &Path, name: &str, port: u16) -> Process {
        let mut mariadbd = Command::new("mariadbd");
        mariadbd
            .args(["--no-defaults", "--user=root", "--bind-address=127.0.0.1", "--skip-grant-tables"])
            .args(["--innodb-buffer-pool-size=256M", "--max-connections=500"])
            .arg(format!("--port={port}"))
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--socket={}", dir.join("mariadbd.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()));
        Process::spawn(dir, name, mariadbd)
    }

    fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/mysql", self.port)
    }

    fn kill_9(&mut self) {
        self.server.kill_9();
    }

    /// mariadbd again on the same data directory (InnoDB recovers what was committed).
    async fn restart(&mut self) {
        self.restarts += 1;
        self.server = Self::launch(self.dir.path(), &format!("mariadb-{}", self.restarts), self.port);
        until_listening(&mut self.server, self.port).await;
    }
}

/// A RocketMQ name server + broker of this test's own (`scripts/rocketmq.sh` with a home and ports
/// of its own; the shared one on 9876 is never restarted), stopped by pid when dropped.
struct OwnBroker {
    home: tempfile::TempDir,
    namesrv: String,
}

impl OwnBroker {
    fn script() -> Command {
        let mut bash = Command::new("bash");
        bash.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/rocketmq.sh"));
        bash
    }

    fn start() -> Self {
        let home = tempfile::tempdir().unwrap();
        let namesrv_port = free_port();
        // The broker listens on its port, the next (HA) and the port 2 below it.
        let broker_port = loop {
            let port = free_port();
            if port > 1026 && port != namesrv_port + 2 && port_free(port - 2) && port_free(port + 1) {
                break port;
            }
        };
        let out = Self::script()
            .args(["start"])
            .arg(home.path())
            .env("ROCKETMQ_NAMESRV_PORT", namesrv_port.to_string())
            .env("ROCKETMQ_BROKER_PORT", broker_port.to_string())
            .output()
            .expect("scripts/rocketmq.sh runs");
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        let namesrv = said.lines().find_map(|l| l.strip_prefix("namesrv=")).map(str::to_string);
        let own = Self { home, namesrv: namesrv.clone().unwrap_or_default() };
        assert!(
            out.status.success() && namesrv.is_some(),
            "the broker did not start: {said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        own
    }

    /// SIGKILL of the broker (the name server stays), and waits until it is gone.
    async fn kill_9_broker(&self) {
        let pid = std::fs::read_to_string(self.home.path().join("broker.pid")).expect("the broker's pid");
        let pid = pid.trim();
        assert!(Command::new("kill").args(["-9", pid]).status().unwrap().success(), "kill -9 {pid}");
        let deadline = Instant::now() + PATIENCE;
        // Gone, or a zombie its reaper has not collected yet.
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.split(") ").nth(1).is_some_and(|rest| !rest.starts_with('Z')))
        {
            assert!(Instant::now() < deadline, "the broker {pid} survived kill -9");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The broker again on the same home (its store kept), once it registered with the name server.
    fn restart_broker(&self) {
        let out = Self::script().arg("start-broker").arg(self.home.path()).output().expect("scripts/rocketmq.sh runs");
        assert!(out.status.success(), "the broker did not start again: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = Self::script().arg("stop").arg(self.home.path()).output();
    }
}

#[tokio::test]
async fn api_scheduler_and_two_consumers_send_to_100k_riders_in_50_cities_exactly() {
    let Some(mut d) = Deployment::start(100_000, &[]).await else { return };
    let id = d.broadcast().await;
    let view = d.until_sent(&id).await;
    d.assert_exact(&id, &view, 0..CITIES).await;
}

#[tokio::test]
async fn kill_9_of_a_consumer_mid_send_ends_exact() {
    // Paced, so that the kill lands mid-send.
    let Some(mut d) = Deployment::start(RIDERS, PACED).await else { return };
    let id = d.broadcast().await;
    // The first pages are in inboxes, some of them delivered by the consumer about to die.
    d.consumers[0].until_logged("pages delivered").await;
    d.until("the first pages are delivered", &id, |v| v["stats"]["sent"].as_u64() > Some(0)).await;
    d.consumers[0].kill_9();
    let sent = d.view(&id).await["stats"]["sent"].as_u64().unwrap();
    assert!(sent < d.riders as u64, "the send finished before the kill; the test proves nothing");
    eprintln!("consumer-1 killed at {sent} of {} sent", d.riders);
    // The other consumer takes over its queues and reads again what it held and never acked.
    let view = d.until_sent(&id).await;
    d.assert_exact(&id, &view, 0..CITIES).await;
    let survivor = d.consumers[1].log();
    assert!(survivor.contains("pages delivered"), "the surviving consumer delivered nothing");
    // Informative only: the dead consumer may have had nothing in hand when it died.
    let repeated: u64 = survivor
        .lines()
        .filter_map(|l| l.split("repeated=").nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    eprintln!("the surviving consumer found {repeated} pages delivered before (read again after the kill)");
}

#[tokio::test]
async fn kill_9_of_the_scheduler_mid_paging_then_a_restart_ends_exact() {
    let Some(mut d) = Deployment::start(RIDERS, PACED).await else { return };
    let id = d.broadcast().await;
    let total_pages = (d.riders / herald_domain::PAGE_SIZE) as u64;
    let deadline = Instant::now() + PATIENCE;
    while d.pages_published(&id).await < 10 {
        if Instant::now() > deadline {
            panic!("the scheduler never paged\n{}", d.report(&id).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.scheduler.kill_9();
    let published = d.pages_published(&id).await;
    assert!(published < total_pages, "every page was written before the kill; the test proves nothing");
    eprintln!("scheduler killed at {published} of {total_pages} pages");
    d.scheduler = d.process("scheduler-2", &["scheduler"]);
    let said = d.scheduler.until_logged("resuming 1 sends where they stopped").await;
    assert!(said.contains(&id), "{said}");
    let view = d.until_sent(&id).await;
    d.assert_exact(&id, &view, 0..CITIES).await;
}

/// `POST /admin/v1/notifications` of `body` under `key`, sent again — same key, same body — while
/// no answer comes or the answer is a 5xx, as a client of a dying API does. Answers the id, the
/// status that finally came (201, or 200: an earlier attempt created it and its answer was lost)
/// and how many attempts it took.
async fn create_until_answered(t: &TestHerald, key: &str, body: &Value) -> (String, StatusCode, u32) {
    let deadline = Instant::now() + PATIENCE;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let sent = t
            .client
            .post(format!("{}/admin/v1/notifications", t.base))
            .bearer_auth(&t.admin)
            .header("idempotency-key", key)
            .json(body)
            .timeout(Duration::from_secs(60))
            .send()
            .await;
        if let Ok(r) = sent {
            let status = r.status();
            if let Ok(answer) = r.json::<Value>().await {
                if status == StatusCode::CREATED || status == StatusCode::OK {
                    return (answer["id"].as_str().expect("an id").to_string(), status, attempts);
                }
                assert!(status.is_server_error(), "{key}: {status} {answer}");
            }
        }
        assert!(Instant::now() < deadline, "{key}: no answer within {PATIENCE:?} ({attempts} attempts)");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn kill_9_of_the_api_during_a_burst_of_creates_with_idempotency_keys_makes_each_once() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let Some(mut d) = Deployment::start(RIDERS, &[]).await else { return };
    // Five clients, ten creates each one after another: key `burst-NN` a notice to city NN.
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..5)
        .map(|client| {
            let (t, answered) = (TestHerald::attach(&d.t.base), answered.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for c in (client..CITIES).step_by(5) {
                    let key = format!("burst-{c:02}");
                    let body =
                        TestHerald::notification(&format!("{} 通知", city(c)), json!({"cities": [city(c)]}), json!({}));
                    outcomes.push((c, create_until_answered(&t, &key, &body).await));
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                outcomes
            })
        })
        .collect();
    let deadline = Instant::now() + PATIENCE;
    while answered.load(Ordering::SeqCst) < 10 {
        assert!(Instant::now() < deadline, "the burst never got 10 answers\n{}", d.api.report());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    d.api.kill_9();
    eprintln!("api killed with {} of {CITIES} creates answered", answered.load(Ordering::SeqCst));
    d.restart_api("api-2").await;

    let mut outcomes = Vec::new();
    for client in clients {
        outcomes.extend(client.await.expect("a client"));
    }
    let retried = outcomes.iter().filter(|(_, (_, _, attempts))| *attempts > 1).count();
    let replayed = outcomes.iter().filter(|(_, (_, status, _))| *status == StatusCode::OK).count();
    eprintln!("{retried} creates retried across the restart, {replayed} of them answered 200 (made before the kill)");
    assert!(retried > 0, "no create was in flight at the kill; the test proves nothing");
    let ids: std::collections::BTreeSet<String> = outcomes.iter().map(|(_, (id, _, _))| id.clone()).collect();
    assert_eq!(ids.len(), CITIES, "each key its own notification: {outcomes:?}");

    let took = Instant::now();
    for (c, (id, _, _)) in &outcomes {
        let view = d.until("the send ends", id, |v| v["status"] == "sent").await;
        d.assert_exact(id, &view, *c..*c + 1).await;
    }
    eprintln!("{CITIES} notices sent exactly, the last within {:.1} s of the burst", took.elapsed().as_secs_f64());
    // The admin list (the search mirror, fed in order): once it shows every notice sent, it
    // shows every notification there is, and there are no others.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let r = d.t.admin_get(&format!("/admin/v1/notifications?status=sent&limit={CITIES}")).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let listed: std::collections::BTreeSet<String> =
            r.body["items"].as_array().expect("items").iter().map(|i| i["id"].as_str().unwrap().to_string()).collect();
        if ids.is_subset(&listed) {
            break;
        }
        assert!(Instant::now() < deadline, "the admin list never showed every notice sent: {}", r.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = d.t.admin_get("/admin/v1/notifications?limit=100").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let listed: std::collections::BTreeSet<String> =
        r.body["items"].as_array().expect("items").iter().map(|i| i["id"].as_str().unwrap().to_string()).collect();
    assert_eq!((&r.body["total"], &listed), (&json!(CITIES), &ids), "one notification per key: {}", r.body);
}

#[tokio::test]
async fn a_revoke_while_both_consumers_are_down_holds_once_a_consumer_is_back() {
    // Paced, so that the consumers die mid-send.
    let Some(mut d) = Deployment::start(RIDERS, PACED).await else { return };
    let id = d.broadcast().await;
    d.until("the first pages are delivered", &id, |v| v["stats"]["sent"].as_u64() > Some(0)).await;
    // A page counts before its entries are all written (on a cluster, one script per slot after
    // the count): wait until a sampled rider holds it, so the kill leaves some holding it.
    let sample = d.sample(0..CITIES);
    let deadline = Instant::now() + PATIENCE;
    'held: loop {
        for rider in &sample {
            if d.t.inbox_ids(&d.t.app_token("rider", rider)).await.contains(&id) {
                break 'held;
            }
        }
        assert!(Instant::now() < deadline, "no sampled rider got it within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for c in &mut d.consumers {
        c.kill_9();
    }
    // Who holds it now, each with a sync cursor past it.
    let mut holding = Vec::new();
    for rider in sample {
        let token = d.t.app_token("rider", &rider);
        if d.t.inbox_ids(&token).await.contains(&id) {
            let cursor = d.t.sync(&token, None).await["cursor"].as_str().expect("a cursor").to_string();
            holding.push((rider, token, cursor));
        }
    }
    assert!(!holding.is_empty(), "no sampled rider holds it; the test proves nothing");

    let r = d.t.admin_post(&format!("/admin/v1/notifications/{id}/revoke"), &json!({})).await;
    assert_eq!((r.status, &r.body["status"]), (StatusCode::OK, &json!("revoked")), "{:?}", r.body);
    // What counts there were at the revoke (no consumer runs, so none moves before it is read).
    let at_revoke = d.view(&id).await;
    let sent = at_revoke["stats"]["sent"].as_u64().unwrap();
    assert!(sent < d.riders as u64, "the send finished before the revoke; the test proves nothing");
    let counters_at_revoke = redis_counts(&d.servers, &id);
    let sql = d.servers.sql_by_hand(d.dir.path()).await;
    let pages_at_revoke: u64 = sql.delivered_by_city(&id).await.values().map(|(pages, _)| pages).sum();
    sql.close().await;
    eprintln!(
        "revoked at {sent} of {} sent, {pages_at_revoke} pages recorded, {} of 200 sampled holding it",
        d.riders,
        holding.len()
    );

    // A consumer again: it takes every page left in the queue (the dead ones' unacked included)
    // and records each as the inbox store answers for a withheld notification.
    let took = Instant::now();
    d.consumers.push(d.process("consumer-3", &["consumer"]));
    d.consumers[2].until_logged("herald consumer running").await;
    let deadline = Instant::now() + PATIENCE;
    let (published, by_city) = loop {
        let sql = d.servers.sql_by_hand(d.dir.path()).await;
        let (published, by_city) = (sql.pages_published(&id).await, sql.delivered_by_city(&id).await);
        sql.close().await;
        if by_city.values().map(|(pages, _)| pages).sum::<u64>() == published {
            break (published, by_city);
        }
        if Instant::now() > deadline {
            panic!("the pages left were never recorded: {by_city:?}\n{}", d.report(&id).await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "the new consumer recorded {} pages after the revoke in {:.1} s",
        published - pages_at_revoke,
        took.elapsed().as_secs_f64()
    );
    assert!(published > pages_at_revoke, "no page was left for after the revoke; the test proves nothing");
    assert!(d.consumers[2].log().contains("pages delivered"), "the new consumer handled no page");

    // InboxStore::withhold: a page delivered afterwards adds nothing and moves no counter; counts
    // from before stay. The API, the Redis counters and holders are what they were at the revoke,
    // and SQL's ledger agrees with the inbox store city by city.
    let view = d.view(&id).await;
    assert_eq!(view["status"], "revoked", "{view}");
    assert_eq!(view["stats"]["sent"], at_revoke["stats"]["sent"], "{view}");
    let sent_by_city = |v: &Value| -> Vec<(Value, Value)> {
        v["cities"].as_array().expect("cities").iter().map(|c| (c["city"].clone(), c["sent"].clone())).collect()
    };
    assert_eq!(sent_by_city(&view), sent_by_city(&at_revoke), "{view}");
    let (counters, holders) = redis_counts(&d.servers, &id);
    assert_eq!((&counters, holders), (&counters_at_revoke.0, counters_at_revoke.1), "the Redis counters and holders");
    for (city, (_, added)) in &by_city {
        assert_eq!(counters.get(&format!("sent:{city}")).copied().unwrap_or(0), *added, "{city}: {counters:?}");
    }
    // Gone from every sampled inbox, and each rider that held it is told by sync.
    for rider in d.sample(0..CITIES) {
        let held = d.t.inbox_ids(&d.t.app_token("rider", &rider)).await;
        assert!(!held.contains(&id), "{rider} still shows the revoked message: {held:?}");
    }
    for (rider, token, cursor) in &holding {
        let delta = d.t.sync(token, Some(cursor)).await;
        assert_eq!(delta["items"], json!([{"id": id, "revoked": true}]), "{rider}: {delta}");
    }
}

/// Waits `outage`, the server down, so that every role meets it (not an assertion: how long the
/// outage lasts is the fault, what follows is checked).
async fn outage() {
    tokio::time::sleep(Duration::from_secs(3)).await;
}

#[tokio::test]
async fn a_broker_restart_mid_send_ends_exact() {
    if !asked_for_servers() {
        return;
    }
    let broker = OwnBroker::start();
    let own = [("HERALD_TEST_MQ_NAMESRV", broker.namesrv.clone())];
    let Some(mut d) = Deployment::start_on(RIDERS, PACED, &own).await else { return };
    let id = d.broadcast().await;
    d.until("the first pages are delivered", &id, |v| v["stats"]["sent"].as_u64() > Some(0)).await;
    broker.kill_9_broker().await;
    let published = d.pages_published(&id).await;
    // `/readyz` names the queue at once, not after the name server forgets the broker (120 s).
    let (status, checks) = d.readiness_until("the queue is named", |checks| checks["queue"] != "ok").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{checks}");
    assert_eq!((&checks["sql"], &checks["inbox"]), (&json!("ok"), &json!("ok")), "only the queue is down: {checks}");
    // The broker down, the pager goes on: its pages wait in SQL's outbox, committed with the
    // task's position, until the relay can publish them.
    let deadline = Instant::now() + PATIENCE;
    while d.pages_published(&id).await < published + 10 {
        if Instant::now() > deadline {
            panic!("the pager stopped with the broker\n{}", d.report(&id).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = d.view(&id).await["stats"]["sent"].as_u64().unwrap();
    assert!(sent < d.riders as u64, "the send finished before the broker died; the test proves nothing");
    eprintln!("broker killed at {sent} of {} sent, {published} pages written", d.riders);
    broker.restart_broker();
    d.until_ready().await;
    let view = d.until_sent(&id).await;
    d.assert_exact(&id, &view, 0..CITIES).await;
    d.assert_all_running();
    eprintln!("outbox publishes failed (lines per role): {}", d.logged("publishing the outbox failed"));
}

#[tokio::test]
async fn a_mariadb_restart_mid_send_ends_exact() {
    if !asked_for_servers() {
        return;
    }
    let mut sql = OwnMariaDb::start().await;
    let own = [("HERALD_TEST_MYSQL_URL", sql.url())];
    let Some(mut d) = Deployment::start_on(RIDERS, PACED, &own).await else { return };
    let id = d.broadcast().await;
    d.until("the first pages are delivered", &id, |v| v["stats"]["sent"].as_u64() > Some(0)).await;
    let published = d.pages_published(&id).await;
    sql.kill_9();
    outage().await;
    assert!(published < (d.riders / herald_domain::PAGE_SIZE) as u64, "every page was written before the kill");
    eprintln!("mariadbd killed at {published} pages written");
    sql.restart().await;
    d.until_ready().await;
    let view = d.until_sent(&id).await;
    d.assert_exact(&id, &view, 0..CITIES).await;
    // Every role rode it out in place: the same processes, none ended.
    d.assert_all_running();
}

#[tokio::test]
async fn a_redis_restart_mid_send_with_appendonly_ends_exact() {
    if !asked_for_servers() {
        return;
    }
    let mut redis = OwnRedis::start(true).await;
    let own = [("HERALD_TEST_INBOX_REDIS_URL", redis.url())];
    let Some(mut d) = Deployment::start_on(RIDERS, PACED, &own).await else { return };
    let id = d.broadcast().await;
    d.until("the first pages are delivered", &id, |v| v["stats"]["sent"].as_u64() > Some(0)).await;
    redis.kill_9();
    let published = d.pages_published(&id).await;
    outage().await;
    assert!(published < (d.riders / herald_domain::PAGE_SIZE) as u64, "every page was written before the kill");
    eprintln!("redis-server killed at {published} pages written");
    redis.restart().await;
    d.until_ready().await;
    let view = d.until_sent(&id).await;
    d.assert_exact(&id, &view, 0..CITIES).await;
    d.assert_all_running();
}

#[tokio::test]
async fn a_redis_flushall_mid_send_then_herald_rebuild_restores_inboxes_counts_and_reads() {
    if !asked_for_servers() {
        return;
    }
    let redis = OwnRedis::start(false).await;
    let own = [("HERALD_TEST_INBOX_REDIS_URL", redis.url())];
    let Some(mut d) = Deployment::start_on(RIDERS, PACED, &own).await else { return };
    let id = d.broadcast().await;
    // Some riders hold it, and read it, before the flush.
    let read = d.until_held(&id, 10).await;
    for rider in &read {
        let r = d.t.app_post(&d.t.app_token("rider", rider), &format!("/app/v1/inbox/{id}/read")).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{rider}: {:?}", r.body);
    }
    let published = d.pages_published(&id).await;
    redis.flushall();
    assert!(published < (d.riders / herald_domain::PAGE_SIZE) as u64, "every page was written before the flush");
    eprintln!("FLUSHALL at {published} pages written, {} sampled riders read it before", read.len());
    // The consumers deliver the rest onto the emptied store; SQL's ledger records every page.
    d.until("the send ends", &id, |v| v["status"] == "sent").await;
    // Rebuild with the consumers stopped, then start them again.
    for c in &mut d.consumers {
        c.kill_9();
    }
    let took = Instant::now();
    let said = d.rebuild();
    eprintln!("herald rebuild in {:.1} s: {}", took.elapsed().as_secs_f64(), said.trim());
    d.consumers = (3..=4).map(|n| d.process(&format!("consumer-{n}"), &["consumer"])).collect();
    for c in &mut d.consumers {
        c.until_logged("herald consumer running").await;
    }
    let view = d.view(&id).await;
    d.assert_exact(&id, &view, 0..CITIES).await;
    // Read state as SQL's receipts hold it: the count, each reader's flag and unread count.
    assert_eq!(view["stats"]["read"], json!(read.len()), "{view}");
    for rider in d.sample(0..CITIES) {
        let token = d.t.app_token("rider", &rider);
        let inbox = d.t.app_get(&token, "/app/v1/inbox?limit=50").await;
        let item = inbox.body["items"].as_array().unwrap().iter().find(|i| i["id"] == id.as_str()).cloned();
        let was_read = read.contains(&rider);
        assert_eq!(item.map(|i| i["read"].clone()), Some(json!(was_read)), "{rider}: {:?}", inbox.body);
        let unread = d.t.app_get(&token, "/app/v1/inbox/unread-count").await;
        assert_eq!(unread.body["unread"], json!(if was_read { 0 } else { 1 }), "{rider}: {:?}", unread.body);
    }
}
