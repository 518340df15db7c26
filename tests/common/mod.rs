//! `TestHerald`: a real Herald (every role, fresh data dir; on the servers `TestServers` names, else
//! embedded) on a random port, and helpers that speak its HTTP API the way the console and the apps
//! do.
#![allow(dead_code)] // each test binary uses its own subset of the helpers

use std::time::{Duration, Instant};

use herald::auth::{AdminRole, Claims, TokenSigner};
use herald::startup::{Ports, Roles, Running, Settings, open_ports, start, start_with};
use herald_domain::{ReceiverId, ReceiverKind};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const SECRET: &str = "herald-test-secret-0123456789abcdef";

pub struct TestHerald {
    pub base: String,
    pub client: reqwest::Client,
    pub admin: String,
    pub viewer: String,
    pub data_dir: tempfile::TempDir,
    running: Option<Running>,
    /// Last: removed once Herald stopped (fields drop in order).
    pub servers: TestServers,
}

/// A response's status and JSON body (Null when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    /// A response's status and JSON body (`Null` when it is not JSON).
    pub async fn of(resp: reqwest::Response) -> Self {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
    }

    /// The `error.field` of an error reply.
    pub fn field(&self) -> Option<&str> {
        self.body["error"]["field"].as_str()
    }

    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

/// With `HERALD_TEST_HTTP_ON_SERVERS=1`, this test's own places on the servers the `HERALD_TEST_*`
/// variables name, each made fresh for it and removed when it is dropped: a database on
/// `HERALD_TEST_MYSQL_URL` (the SQL truth), a key prefix on `HERALD_TEST_INBOX_REDIS_URL` (the inbox
/// store), a topic and group prefix on `HERALD_TEST_MQ_NAMESRV` (the queue) and an index prefix on
/// `HERALD_TEST_SEARCH_URL` (admin search). Unset, that part stays embedded. Without the switch
/// every part is embedded, so the adapters' contract suites can read the same variables in one
/// `cargo test --workspace`. Every Herald a test starts on one data dir, restarts included, takes
/// the same `TestServers`, so it finds the same data again. With the switch, a variable set in a
/// build without that server's adapter stops the test, naming the feature (CI builds the tests with
/// `--features distributed` for these runs), never running embedded in its place.
pub struct TestServers {
    sql: Option<(String, String)>,
    redis: Option<(String, String)>,
    mq: Option<(String, String)>,
    search: Option<(String, String)>,
}

/// Switches the HTTP suites onto the servers the variables below name.
const ON_SERVERS: &str = "HERALD_TEST_HTTP_ON_SERVERS";

/// A variable's value, if set and the suites run on servers; set in a build without `feature`, the
/// test stops.
fn server_variable(name: &str, built: bool, feature: &str, own: &[(&str, String)]) -> Option<String> {
    std::env::var(ON_SERVERS).is_ok_and(|on| on == "1").then_some(())?;
    let value = match own.iter().find(|(n, _)| *n == name) {
        Some((_, value)) => value.clone(),
        None => std::env::var(name).ok().filter(|v| !v.is_empty())?,
    };
    assert!(built, "{name} is set, but these tests are built without `--features {feature}`: build them with it");
    Some(value)
}

impl TestServers {
    /// Fresh places on every server set.
    pub async fn new() -> Self {
        Self::with_own(&[]).await
    }

    /// As `new`, but each `(variable, value)` of `own` in place of that variable: a server the test
    /// started itself (so that it may kill it), used only when the suites run on servers.
    #[allow(dead_code)] // Only the fault tests start servers of their own.
    pub async fn with_own(own: &[(&str, String)]) -> Self {
        let run = format!("{:016x}", rand::random::<u64>());
        let sql = server_variable("HERALD_TEST_MYSQL_URL", cfg!(feature = "mariadb"), "mariadb", own);
        let redis = server_variable("HERALD_TEST_INBOX_REDIS_URL", cfg!(feature = "redis"), "redis", own);
        let mq = server_variable("HERALD_TEST_MQ_NAMESRV", cfg!(feature = "rocketmq"), "rocketmq", own);
        let search = server_variable("HERALD_TEST_SEARCH_URL", cfg!(feature = "elasticsearch"), "elasticsearch", own);
        let servers = Self {
            sql: sql.map(|url| (url, format!("herald_h_{run}"))),
            redis: redis.map(|url| (url, format!("herald-http:{run}"))),
            mq: mq.map(|namesrv| (namesrv, format!("h{run}_"))),
            search: search.map(|url| (url, format!("herald-http-{run}-"))),
        };
        servers.create_database().await;
        servers
    }

    #[cfg(feature = "mariadb")]
    async fn create_database(&self) {
        if let Some((url, database)) = &self.sql {
            herald_mariadb::create_database(url, database).await.expect("a database of this test's own");
        }
    }

    #[cfg(not(feature = "mariadb"))]
    async fn create_database(&self) {}

    /// Points `settings` at this test's places (the embedded parts stay in its data dir).
    pub fn apply(&self, settings: &mut Settings) {
        use herald::config::Origin::Env;
        let servers = &mut settings.servers;
        if let Some((url, database)) = &self.sql {
            servers.sql = Some((database_url(url, database), Env("HERALD_TEST_MYSQL_URL")));
        }
        if let Some((url, prefix)) = &self.redis {
            servers.redis = Some((url.clone(), Env("HERALD_TEST_INBOX_REDIS_URL")));
            servers.redis_prefix = prefix.clone();
        }
        if let Some((namesrv, prefix)) = &self.mq {
            servers.mq_namesrv = Some((namesrv.clone(), Env("HERALD_TEST_MQ_NAMESRV")));
            servers.mq_prefix = prefix.clone();
        }
        if let Some((url, prefix)) = &self.search {
            servers.search = Some((url.clone(), Env("HERALD_TEST_SEARCH_URL")));
            servers.search_prefix = prefix.clone();
        }
    }

    /// The same, as the variables of a `herald` process.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if let Some((url, database)) = &self.sql {
            env.push(("HERALD_SQL_URL", database_url(url, database)));
        }
        if let Some((url, prefix)) = &self.redis {
            env.extend([("HERALD_REDIS_URL", url.clone()), ("HERALD_REDIS_PREFIX", prefix.clone())]);
        }
        if let Some((namesrv, prefix)) = &self.mq {
            env.extend([("HERALD_MQ_NAMESRV", namesrv.clone()), ("HERALD_MQ_PREFIX", prefix.clone())]);
        }
        if let Some((url, prefix)) = &self.search {
            env.extend([("HERALD_SEARCH_URL", url.clone()), ("HERALD_SEARCH_PREFIX", prefix.clone())]);
        }
        env
    }

    /// Whether the SQL truth is on a server (no `herald.db` in the data dir).
    pub fn sql_on_server(&self) -> bool {
        self.sql.is_some()
    }

    /// Whether the inbox store is on a server (no `inbox.db`).
    pub fn inbox_on_server(&self) -> bool {
        self.redis.is_some()
    }

    /// Whether the queue is on a broker (no `queue.db`).
    pub fn queue_on_server(&self) -> bool {
        self.mq.is_some()
    }

    /// The inbox store's server and this test's key prefix on it, when it is on one.
    pub fn redis_place(&self) -> Option<(&str, &str)> {
        self.redis.as_ref().map(|(url, prefix)| (url.as_str(), prefix.as_str()))
    }

    /// Whether admin search is on a server (no `search/`).
    pub fn search_on_server(&self) -> bool {
        self.search.is_some()
    }

    /// Loses the inbox store of a stopped Herald on `data_dir`, as a Redis FLUSHALL would: this
    /// test's keys on the server (never the whole server, which others share), else `inbox.db`.
    pub fn erase_inbox(&self, data_dir: &std::path::Path) {
        match &self.redis {
            Some(_) => self.erase_redis().expect("this test's keys erased"),
            None => {
                for file in ["inbox.db", "inbox.db-wal", "inbox.db-shm"] {
                    match std::fs::remove_file(data_dir.join(file)) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("removing {file}: {e}"),
                        _ => {}
                    }
                }
            }
        }
    }

    /// Removes what this test left on the servers; blocking, on a runtime of its own (a test's
    /// runtime cannot block on itself). The broker's topics stay: RocketMQ keeps them, empty of
    /// anything a later test reads, as no later test uses this prefix.
    fn clean_up(&self) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            self.drop_database().await?;
            self.erase_redis()?;
            self.delete_indices().await
        })
    }

    #[cfg(feature = "mariadb")]
    async fn drop_database(&self) -> anyhow::Result<()> {
        match &self.sql {
            Some((url, database)) => herald_mariadb::drop_database(url, database).await,
            None => Ok(()),
        }
    }

    #[cfg(not(feature = "mariadb"))]
    async fn drop_database(&self) -> anyhow::Result<()> {
        Ok(())
    }

    #[cfg(feature = "redis")]
    fn erase_redis(&self) -> anyhow::Result<()> {
        match &self.redis {
            Some((url, prefix)) => herald_redis::erase_prefix(url, prefix).map(|_| ()),
            None => Ok(()),
        }
    }

    #[cfg(not(feature = "redis"))]
    fn erase_redis(&self) -> anyhow::Result<()> {
        Ok(())
    }

    #[cfg(feature = "elasticsearch")]
    async fn delete_indices(&self) -> anyhow::Result<()> {
        let Some((url, prefix)) = &self.search else { return Ok(()) };
        let config = herald_elasticsearch::ElasticsearchConfig {
            prefix: prefix.clone(),
            ..herald_elasticsearch::ElasticsearchConfig::new(url)
        };
        Ok(herald_elasticsearch::ElasticsearchIndex::new(config)?.delete_all().await?)
    }

    #[cfg(not(feature = "elasticsearch"))]
    async fn delete_indices(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

#[cfg(feature = "mariadb")]
fn database_url(url: &str, database: &str) -> String {
    herald_mariadb::database_url(url, database)
}

#[cfg(not(feature = "mariadb"))]
fn database_url(_url: &str, _database: &str) -> String {
    unreachable!("no database without the mariadb feature: `TestServers::new` stops first")
}

impl Drop for TestServers {
    fn drop(&mut self) {
        if self.sql.is_none() && self.redis.is_none() && self.search.is_none() {
            return;
        }
        let cleaned = std::thread::scope(|scope| scope.spawn(|| self.clean_up()).join());
        match cleaned {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not remove this test's places on the servers: {e:#}"),
            Err(_) => eprintln!("removing this test's places on the servers panicked"),
        }
    }
}

/// The SQL truth of a test, opened by hand, as an outside tool (or an old bug) reaches it: how tests
/// plant a row that does not parse and read what no port returns.
pub enum SqlByHand {
    Sqlite(sqlx::SqlitePool),
    MySql(sqlx::MySqlPool),
}

impl SqlByHand {
    /// Runs one statement (in SQL both accept: quote names with backticks).
    pub async fn execute(&self, sql: &'static str) {
        match self {
            Self::Sqlite(db) => sqlx::query(sql).execute(db).await.map(|_| ()),
            Self::MySql(db) => sqlx::query(sql).execute(db).await.map(|_| ()),
        }
        .expect("the statement runs");
    }

    /// Every dead letter: key, reason, body.
    pub async fn dead_letters(&self) -> Vec<(String, String, Vec<u8>)> {
        const SQL: &str = "SELECT msg_key, reason, body FROM dead_letters ORDER BY msg_key";
        match self {
            Self::Sqlite(db) => sqlx::query_as(SQL).fetch_all(db).await,
            Self::MySql(db) => sqlx::query_as(SQL).fetch_all(db).await,
        }
        .expect("dead letters read")
    }

    /// A notification's delivered pages as the ledger recorded them: per city, how many pages and
    /// what they added in all.
    pub async fn delivered_by_city(&self, id: &str) -> std::collections::BTreeMap<String, (u64, u64)> {
        const SQL: &str = "SELECT city, added FROM delivered_pages WHERE notification_id = ?";
        let rows: Vec<(String, i64)> = match self {
            Self::Sqlite(db) => sqlx::query_as(SQL).bind(id).fetch_all(db).await,
            Self::MySql(db) => sqlx::query_as(SQL).bind(id).fetch_all(db).await,
        }
        .expect("delivered pages read");
        let mut by_city = std::collections::BTreeMap::new();
        for (city, added) in rows {
            let (pages, sum) = by_city.entry(city).or_insert((0, 0));
            *pages += 1;
            *sum += u64::try_from(added).expect("a page adds zero or more");
        }
        by_city
    }

    /// How many pages the scheduler has written for a notification, over all its cities.
    pub async fn pages_published(&self, id: &str) -> u64 {
        const SQL: &str = "SELECT pages_published FROM send_tasks WHERE notification_id = ?";
        let rows: Vec<(i64,)> = match self {
            Self::Sqlite(db) => sqlx::query_as(SQL).bind(id).fetch_all(db).await,
            Self::MySql(db) => sqlx::query_as(SQL).bind(id).fetch_all(db).await,
        }
        .expect("send tasks read");
        rows.into_iter().map(|(n,)| u64::try_from(n).expect("a count")).sum()
    }

    pub async fn close(self) {
        match self {
            Self::Sqlite(db) => db.close().await,
            Self::MySql(db) => db.close().await,
        }
    }
}

impl TestServers {
    /// The SQL truth of a Herald on `data_dir` with these servers: its database on the server, else
    /// `herald.db` there.
    pub async fn sql_by_hand(&self, data_dir: &std::path::Path) -> SqlByHand {
        match &self.sql {
            Some((url, database)) => {
                SqlByHand::MySql(sqlx::MySqlPool::connect(&database_url(url, database)).await.expect("SQL opens"))
            }
            None => {
                let url = format!("sqlite://{}", data_dir.join("herald.db").display());
                SqlByHand::Sqlite(sqlx::SqlitePool::connect(&url).await.expect("herald.db opens"))
            }
        }
    }
}

/// Settings for a Herald on `dir` as `TestHerald` makes them: the test secret, and `servers`.
/// The audience of a nationwide send.
pub fn everyone() -> Value {
    json!({"all": true})
}

pub fn test_settings(dir: &std::path::Path, servers: &TestServers) -> Settings {
    let mut settings = Settings::embedded(dir, "127.0.0.1:0");
    settings.secrets.current = Some(SECRET.to_string());
    servers.apply(&mut settings);
    settings
}

impl TestHerald {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A Herald with the given riders, all in shanghai.
    pub async fn with_riders(ids: &[&str]) -> Self {
        let h = Self::spawn().await;
        let list: Vec<(&str, &str, &str, &[&str])> = ids.iter().map(|id| ("rider", *id, "shanghai", &[][..])).collect();
        h.receivers(&list).await;
        h
    }

    /// A Herald whose settings `configure` adjusts first.
    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        Self::spawn_on(configure, |_| {}).await
    }

    /// A Herald whose settings `configure` adjusts, on the ports they open as `adjust` leaves them
    /// (a port wrapped to fail on demand, say).
    pub async fn spawn_on(configure: impl FnOnce(&mut Settings), adjust: impl FnOnce(&mut Ports)) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let servers = TestServers::new().await;
        let mut settings = test_settings(data_dir.path(), &servers);
        settings.scheduler.tick = Duration::from_millis(50);
        // A test reading a live-update stream to its end (as a plain GET does) waits this long.
        settings.streams.max_age = Duration::from_secs(1);
        configure(&mut settings);
        let mut ports = open_ports(&settings).await.expect("ports open");
        adjust(&mut ports);
        let running = start_with(&settings, Roles::ALL, ports).await.expect("herald starts");
        let signer = TokenSigner::new(SECRET);
        Self {
            base: format!("http://{}", running.addr.expect("api role")),
            client: reqwest::Client::new(),
            admin: signer.sign(&Claims::Admin { role: AdminRole::Operator }),
            viewer: signer.sign(&Claims::Admin { role: AdminRole::Viewer }),
            data_dir,
            running: Some(running),
            servers,
        }
    }

    /// Speaks to a Herald started elsewhere (the caller owns its lifetime).
    pub fn attach(base: &str) -> Self {
        let signer = TokenSigner::new(SECRET);
        Self {
            base: base.to_string(),
            client: reqwest::Client::new(),
            admin: signer.sign(&Claims::Admin { role: AdminRole::Operator }),
            viewer: signer.sign(&Claims::Admin { role: AdminRole::Viewer }),
            data_dir: tempfile::tempdir().expect("temp dir"),
            running: None,
            servers: TestServers { sql: None, redis: None, mq: None, search: None },
        }
    }

    /// A second API process on the same data dir, as distributed mode runs several; stop it with
    /// `Running::stop`.
    pub async fn second_api(&self) -> (Running, TestHerald) {
        self.second_api_with(|_| {}).await
    }

    /// A second API process whose settings `configure` adjusts first.
    pub async fn second_api_with(&self, configure: impl FnOnce(&mut Settings)) -> (Running, TestHerald) {
        let mut settings = test_settings(self.data_dir.path(), &self.servers);
        configure(&mut settings);
        let roles = Roles { api: true, scheduler: false, consumer: false };
        let running = start(&settings, roles).await.expect("second api starts");
        let other = TestHerald::attach(&format!("http://{}", running.addr.expect("api role")));
        (running, other)
    }

    pub fn ports(&self) -> &herald::startup::Ports {
        &self.running.as_ref().expect("running").ports
    }

    pub fn app_token(&self, kind: &str, id: &str) -> String {
        TokenSigner::new(SECRET).sign(&Claims::App {
            kind: ReceiverKind::parse("kind", kind).unwrap(),
            id: ReceiverId::parse("id", id).unwrap(),
        })
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("clean stop");
        }
    }

    /// Any request: `token` as bearer when given, `body` as JSON when given.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        Reply::of(req.send().await.expect("request sent")).await
    }

    pub async fn raw(&self, method: Method, path: &str, token: &str, body: impl Into<reqwest::Body>) -> Reply {
        let resp = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent");
        Reply::of(resp).await
    }

    /// `POST /admin/v1/receivers/import` with `csv` as the body, as an operator.
    pub async fn import_csv(&self, csv: &str) -> Reply {
        let resp = self
            .client
            .post(format!("{}/admin/v1/receivers/import", self.base))
            .bearer_auth(&self.admin)
            .header("content-type", "text/csv")
            .body(csv.to_string())
            .send()
            .await
            .expect("import sent");
        Reply::of(resp).await
    }

    pub async fn admin_get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, Some(&self.admin), None).await
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, Some(&self.admin), Some(body)).await
    }

    pub async fn app_get(&self, token: &str, path: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn app_post(&self, token: &str, path: &str) -> Reply {
        self.call(Method::POST, path, Some(token), None).await
    }

    /// Upserts receivers given as (kind, id, city, groups).
    pub async fn receivers(&self, list: &[(&str, &str, &str, &[&str])]) {
        let batch: Vec<Value> =
            list.iter().map(|(k, id, c, g)| json!({"kind": k, "id": id, "city": c, "groups": g})).collect();
        let r = self.admin_post("/admin/v1/receivers/batch", &json!(batch)).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let distinct: std::collections::BTreeSet<(&str, &str)> = list.iter().map(|(k, id, _, _)| (*k, *id)).collect();
        assert_eq!(r.body["upserted"], json!(distinct.len()), "one count per distinct receiver");
    }

    /// `count` riders `prefix0..prefixN` spread round-robin over `cities`.
    pub async fn riders(&self, prefix: &str, count: usize, cities: &[&str]) {
        for chunk in (0..count).collect::<Vec<_>>().chunks(10_000) {
            let batch: Vec<Value> = chunk
                .iter()
                .map(|i| json!({"kind": "rider", "id": format!("{prefix}{i:06}"), "city": cities[i % cities.len()]}))
                .collect();
            let r = self.admin_post("/admin/v1/receivers/batch", &json!(batch)).await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        }
    }

    /// A valid notification body; `extra` overrides or adds fields.
    pub fn notification(title: &str, audience: Value, extra: Value) -> Value {
        let mut body = json!({
            "title": title,
            "body": format!("{title} body"),
            "category": "system",
            "receiver_kind": "rider",
            "audience": audience,
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        body
    }

    /// Creates a notification and returns its id.
    pub async fn create(&self, body: &Value) -> String {
        let r = self.admin_post("/admin/v1/notifications", body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["id"].as_str().expect("id").to_string()
    }

    pub async fn notification_view(&self, id: &str) -> Value {
        let r = self.admin_get(&format!("/admin/v1/notifications/{id}")).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.body
    }

    /// Polls until every city of the notification is done with `sent` delivered in all, then
    /// checks `sent == matched`, in total and per city (panics after 30 s).
    pub async fn settled(&self, id: &str, sent: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.notification_view(id).await;
            let done = v["cities"].as_array().unwrap().iter().all(|c| c["done"] == true);
            if done && v["stats"]["sent"] == json!(sent) {
                assert_eq!(v["stats"]["matched"], json!(sent), "sent == matched: {v}");
                for c in v["cities"].as_array().unwrap() {
                    assert_eq!(c["matched"], c["sent"], "per city: {v}");
                }
                return v;
            }
            assert!(Instant::now() < deadline, "never settled at {sent} sent: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until the notification reaches `status` (panics after 60 s).
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let view = self.notification_view(id).await;
            if view["status"] == status {
                return view;
            }
            assert!(Instant::now() < deadline, "never reached {status}: {view}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Creates and waits until sent.
    pub async fn send_and_wait(&self, body: &Value) -> (String, Value) {
        let id = self.create(body).await;
        let view = self.wait_status(&id, "sent").await;
        (id, view)
    }

    /// Sends to every rider (with `extra`'s fields), waits until sent, and leaves a few ms so the
    /// next one gets a later sent time: the id.
    pub async fn send_to_all(&self, title: &str, extra: Value) -> String {
        let (id, _) = self.send_and_wait(&Self::notification(title, everyone(), extra)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        id
    }

    /// `GET /app/v1/inbox/sync`, from `since` when given: what arrived, changed or was revoked.
    pub async fn sync(&self, token: &str, since: Option<&str>) -> Value {
        let path = match since {
            Some(c) => format!("/app/v1/inbox/sync?since={c}"),
            None => "/app/v1/inbox/sync".to_string(),
        };
        let r = self.app_get(token, &path).await;
        assert_eq!(r.status, StatusCode::OK, "GET {path}: {:?}", r.body);
        assert!(r.body["cursor"].is_string(), "{:?}", r.body);
        assert!(r.body["has_more"].is_boolean(), "{:?}", r.body);
        r.body
    }

    pub async fn inbox_ids(&self, token: &str) -> Vec<String> {
        let r = self.app_get(token, "/app/v1/inbox?limit=50").await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.body["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
    }
}

/// One server-sent event: its type, id and data.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

/// A server-sent event stream read as a client does, event by event.
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
    /// Comment lines (`: heartbeat`) seen so far.
    pub comments: usize,
    pub ended: bool,
}

impl EventStream {
    /// The next event, or None when none comes within `wait` (or the stream ended).
    pub async fn next_within(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent { event: "message".into(), id: None, data: String::new() };
                let mut fields = 0;
                for line in block.lines().filter(|l| !l.is_empty()) {
                    if line.starts_with(':') {
                        self.comments += 1;
                        continue;
                    }
                    let (name, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value).to_string();
                    fields += 1;
                    match name {
                        "event" => event.event = value,
                        "id" => event.id = Some(value),
                        "data" => event.data.push_str(&value),
                        _ => {}
                    }
                }
                if fields > 0 {
                    return Some(event);
                }
                continue;
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) | Ok(Err(_)) => self.ended = true,
            }
        }
    }

    /// Reads until the stream ends or `wait` passes; true when it ended.
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        while !self.ended && tokio::time::Instant::now() < deadline {
            self.next_within(deadline - tokio::time::Instant::now()).await;
        }
        self.ended
    }
}

impl TestHerald {
    /// Opens a live-update stream as `token`; Err is the refusal (status and JSON body).
    pub async fn events(&self, path: &str, token: &str, last_event_id: Option<&str>) -> Result<EventStream, Reply> {
        let mut req = self.client.get(format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let response = req.send().await.expect("request sent");
        if response.status() != StatusCode::OK {
            return Err(Reply::of(response).await);
        }
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(content_type.starts_with("text/event-stream"), "{content_type}");
        Ok(EventStream { response, buffer: String::new(), comments: 0, ended: false })
    }
}

/// The city `name` in a notification view's `cities`.
pub fn city<'a>(view: &'a Value, name: &str) -> &'a Value {
    view["cities"].as_array().unwrap().iter().find(|c| c["city"] == name).unwrap_or_else(|| panic!("no {name}: {view}"))
}
