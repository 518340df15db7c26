//! No loss and no double count across a kill -9 or a graceful restart in the middle of a send.

mod common;

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{SECRET, TestHerald, TestServers, test_settings};
use herald::startup::{Roles, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

const RIDERS: usize = 200_000;
const CITIES: usize = 20;

fn herald() -> Command {
    Command::new(env!("CARGO_BIN_EXE_herald"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn serve(data_dir: &std::path::Path, servers: &TestServers, port: u16, extra: &[&str]) -> Child {
    serve_logging_to(data_dir, servers, port, extra, Stdio::inherit(), "warn")
}

fn serve_logging_to(
    data_dir: &std::path::Path,
    servers: &TestServers,
    port: u16,
    extra: &[&str],
    log: Stdio,
    filter: &str,
) -> Child {
    herald()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .env("HERALD_DATA_DIR", data_dir)
        .envs(servers.env())
        .env("HERALD_SECRET", SECRET)
        .env("RUST_LOG", filter)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("herald serve starts")
}

async fn wait_up(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "herald did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn view(client: &reqwest::Client, base: &str, admin: &str, id: &str) -> Value {
    let r = client.get(format!("{base}/admin/v1/notifications/{id}")).bearer_auth(admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// Counts, straight from the embedded inbox file, the entries a notification has and how many
/// distinct receivers hold it.
async fn inbox_entries(data_dir: &std::path::Path, id: &str) -> (i64, i64) {
    use sqlx::Row as _;
    let url = format!("sqlite://{}?mode=ro", data_dir.join("inbox.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let row = sqlx::query("SELECT COUNT(*) AS n, COUNT(DISTINCT receiver) AS d FROM entries WHERE notification_id = ?")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    (row.get("n"), row.get("d"))
}

/// Each of `receivers` holds the message exactly once: counted in the embedded inbox file (every
/// entry of it, and the distinct receivers), or, with the inbox store on a server, read through
/// the API for every 400th receiver.
async fn each_holds_it_once(
    t: &TestHerald,
    servers: &TestServers,
    data_dir: &std::path::Path,
    id: &str,
    receivers: &[String],
) {
    if !servers.inbox_on_server() {
        let n = receivers.len() as i64;
        assert_eq!(inbox_entries(data_dir, id).await, (n, n), "every rider holds it exactly once");
        return;
    }
    for rider in receivers.iter().step_by(400) {
        let held = t.inbox_ids(&t.app_token("rider", rider)).await;
        assert_eq!(held.iter().filter(|h| *h == id).count(), 1, "{rider} holds it once: {held:?}");
    }
}

#[tokio::test]
async fn kill_9_mid_send_then_restart_delivers_each_receiver_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let servers = TestServers::new().await;
    let csv = dir.path().join("riders.csv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
        writeln!(f, "kind,id,city,groups").unwrap();
        for i in 0..RIDERS {
            writeln!(f, "rider,r{i:07},city{:02},", i % CITIES).unwrap();
        }
    }
    let data = dir.path().join("data");
    let import = herald()
        .args(["receivers", "import"])
        .arg(&csv)
        .env("HERALD_DATA_DIR", &data)
        .envs(servers.env())
        .output()
        .unwrap();
    assert!(import.status.success(), "import failed: {}", String::from_utf8_lossy(&import.stderr));
    assert!(String::from_utf8_lossy(&import.stdout).contains(&format!("imported {RIDERS} receivers")));

    let client = reqwest::Client::new();
    let admin = herald::auth::TokenSigner::new(SECRET)
        .sign(&herald::auth::Claims::Admin { role: herald::auth::AdminRole::Operator });
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // Throttled so that the kill lands mid-send: 400 pages at 100 pages/s.
    let mut first = serve(&data, &servers, port, &["--max-pages-per-second", "100"]);
    wait_up(&client, &base).await;
    let body = TestHerald::notification("全国骑手通知", json!({"all": true}), json!({}));
    let created = client.post(format!("{base}/admin/v1/notifications")).bearer_auth(&admin).json(&body).send().await;
    let created: Value = created.unwrap().json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = view(&client, &base, &admin, &id).await;
        let sent = v["stats"]["sent"].as_u64().unwrap();
        if sent >= 20_000 {
            assert!(sent < RIDERS as u64, "the send finished before the kill; the test proves nothing");
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap(); // SIGKILL: no shutdown code runs
    first.wait().unwrap();

    let log_path = dir.path().join("second.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut second = serve_logging_to(&data, &servers, port, &[], log.into(), "info");
    wait_up(&client, &base).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let v = view(&client, &base, &admin, &id).await;
        if v["status"] == "sent" {
            break v;
        }
        assert!(Instant::now() < deadline, "never finished after restart: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let riders: Vec<String> = (0..RIDERS).map(|i| format!("r{i:07}")).collect();
    each_holds_it_once(&TestHerald::attach(&base), &servers, &data, &id, &riders).await;
    second.kill().unwrap();
    second.wait().unwrap();
    let said = std::fs::read_to_string(&log_path).unwrap();
    assert!(said.contains("resuming 1 sends where they stopped") && said.contains(&id), "the restart said:\n{said}");
    assert!(said.contains("api + scheduler + consumer running on http://"), "the restart said:\n{said}");

    assert_eq!(done["stats"]["matched"], json!(RIDERS));
    assert_eq!(done["stats"]["sent"], json!(RIDERS), "sent == matched, exactly");
    let cities = done["cities"].as_array().unwrap();
    assert_eq!(cities.len(), CITIES);
    for c in cities {
        assert_eq!(c["sent"], json!(RIDERS / CITIES), "{c}");
        assert_eq!(c["matched"], json!(RIDERS / CITIES), "{c}");
        assert_eq!(c["done"], json!(true));
    }
}

#[tokio::test]
async fn graceful_stop_mid_send_then_restart_completes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let servers = TestServers::new().await;
    let mut settings = test_settings(dir.path(), &servers);
    settings.scheduler.max_pages_per_second = Some(50);
    let running = start(&settings, Roles::ALL).await.unwrap();
    let base = format!("http://{}", running.addr.unwrap());
    let t = TestHerald::attach(&base);
    t.riders("g", 30_000, &["sh", "bj", "gz"]).await;
    let id = t.create(&TestHerald::notification("graceful", json!({"all": true}), json!({}))).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while t.notification_view(&id).await["stats"]["sent"].as_u64().unwrap() == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await.unwrap();

    settings.scheduler.max_pages_per_second = None;
    let running = start(&settings, Roles::ALL).await.unwrap();
    let t = TestHerald::attach(&format!("http://{}", running.addr.unwrap()));
    let v = t.wait_status(&id, "sent").await;
    assert_eq!((v["stats"]["matched"].clone(), v["stats"]["sent"].clone()), (json!(30_000), json!(30_000)));
    let riders: Vec<String> = (0..30_000).map(|i| format!("g{i:06}")).collect();
    each_holds_it_once(&t, &servers, dir.path(), &id, &riders).await;
    running.stop().await.unwrap();
}
