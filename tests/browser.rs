//! The ops console in a real browser: Debian's Chromium, headless, driven over WebDriver by its
//! chromedriver (JSON over HTTP, spoken here with reqwest). Nothing is downloaded: without
//! `chromium` and `chromedriver` installed the test says so and skips, and with `CI=true` it fails.
//! With `HERALD_SCREENSHOTS=1` it saves each page under `docs/screenshots/`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session in it; both end on drop.
struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// None (with the reason printed) when Chromium is not installed and this is not CI.
    async fn start() -> Option<Browser> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            let why = "chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver)";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI must run the browser tests: {why}");
            eprintln!("skipping the browser test: {why}");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{base}/status")).send().await.ok();
            if let Some(r) = ready
                && r.json::<Value>().await.is_ok_and(|s| s["value"]["ready"] == true)
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let created: Value =
            http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let session = created["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}"));
        Some(Browser { driver, http, session: format!("{base}/session/{session}"), _profile: profile })
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let reply: Value = req.send().await.expect("webdriver answers").json().await.expect("JSON");
        assert!(reply["value"]["error"].is_null(), "{path}: {reply}");
        reply["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page and answers its value.
    async fn run(&self, script: &str, args: Value) -> Value {
        self.command(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    async fn element(&self, css: &str) -> String {
        let found =
            self.command(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        found[ELEMENT].as_str().expect("element id").to_string()
    }

    /// Clicks `css` once shown; found again if the page re-rendered it between finding and clicking.
    async fn click(&self, css: &str) {
        for _ in 0..5 {
            let id = self.wait_for(css).await;
            let reply: Value = self
                .http
                .post(format!("{}/element/{id}/click", self.session))
                .json(&json!({}))
                .send()
                .await
                .expect("webdriver answers")
                .json()
                .await
                .expect("JSON");
            match reply["value"]["error"].as_str() {
                None => return,
                Some("stale element reference") => continue,
                Some(_) => panic!("clicking {css}: {reply}"),
            }
        }
        panic!("{css} kept being re-rendered");
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.wait_for(css).await;
        self.command(reqwest::Method::POST, &format!("/element/{id}/clear"), Some(json!({}))).await;
        self.command(reqwest::Method::POST, &format!("/element/{id}/value"), Some(json!({"text": text}))).await;
    }

    /// Waits until `css` matches a visible element and answers it.
    async fn wait_for(&self, css: &str) -> String {
        self.until(&format!("{css} is shown"), "const e = document.querySelector(arguments[0]); return !!e && !e.closest('[hidden]') && e.getClientRects().length > 0;", json!([css])).await;
        self.element(css).await
    }

    /// The text of `css`, or null when nothing matches.
    async fn text(&self, css: &str) -> Value {
        self.run("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", json!([css])).await
    }

    /// Waits (20 s at most) until `script` answers true.
    async fn until(&self, what: &str, script: &str, args: Value) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.run(script, args.clone()).await == true {
                return;
            }
            let page = self.text("main").await;
            assert!(Instant::now() < deadline, "never: {what}; the page shows {page}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn until_text(&self, css: &str, expected: &str) {
        let script = "const e = document.querySelector(arguments[0]); return !!e && e.textContent === arguments[1];";
        self.until(&format!("{css} reads {expected:?}"), script, json!([css, expected])).await;
    }

    async fn screenshot(&self, name: &str) {
        if std::env::var("HERALD_SCREENSHOTS").as_deref() != Ok("1") {
            return;
        }
        let png = self.command(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[tokio::test]
async fn an_operator_sends_watches_and_revokes_and_a_viewer_cannot_write() {
    let Some(browser) = Browser::start().await else { return };
    let h = TestHerald::spawn_with(|s| s.streams.max_age = Duration::from_secs(60)).await;
    h.receivers(&[
        ("rider", "r1", "shanghai", &["vip"]),
        ("rider", "r2", "beijing", &[]),
        ("rider", "r3", "shanghai", &[]),
    ])
    .await;
    let console = format!("{}/console/", h.base);

    // Sign in: a token that is not one is refused beside the field.
    browser.open(&console).await;
    browser.type_into("#token", "not-a-token").await;
    browser.click("#sign-in button[type=submit]").await;
    browser
        .until(
            "the token error",
            "return document.querySelector('[data-error-for=token]').textContent !== '';",
            json!([]),
        )
        .await;
    browser.screenshot("sign-in").await;
    browser.type_into("#token", &h.admin).await;
    browser.click("#sign-in button[type=submit]").await;
    browser.wait_for("#search").await;

    // Compose to three receivers, with the live preview; a blank title is refused beside its field.
    browser.click("#nav-compose").await;
    browser.type_into("#title", "   ").await;
    browser.type_into("#body", "Rain expected tonight: ride safely.").await;
    browser.click("#audience-all").await;
    browser.type_into("#audience-include", "r1, r2, r3").await;
    browser.until_text("#preview", "Reaches 3 receivers (beijing 1, shanghai 2)").await;
    browser.click("input[name=mode][value=draft]").await;
    browser.click("#send").await;
    browser
        .until(
            "the title's error",
            "return document.querySelector('[data-error-for=title]').textContent !== '';",
            json!([]),
        )
        .await;
    assert_eq!(browser.text("#compose-error").await, "", "the error is beside the field, not at the bottom");
    browser.screenshot("compose").await;
    browser.type_into("#title", "Storm warning").await;
    browser.click("#send").await;

    // The draft's page: release it and watch it reach sent live, without reloading.
    browser.until_text("#status", "draft").await;
    let id = browser.run("return decodeURIComponent(location.hash.split('/')[2]);", json!([])).await;
    let id = id.as_str().expect("the page's id").to_string();
    browser.click("#release").await;
    browser.until_text("#status", "sent").await;
    browser.until_text("#stat-sent", "3").await;
    assert_eq!(browser.text("#stat-matched").await, "3");
    browser.until_text("#live", "final").await;
    browser.screenshot("notification").await;
    let r1 = h.app_token("rider", "r1");
    assert_eq!(h.inbox_ids(&r1).await, vec![id.clone()]);

    // Search finds it, with its read rate.
    browser.open(&format!("{console}#/list")).await;
    browser.type_into("#search-q", "Storm").await;
    browser.click("#search button[type=submit]").await;
    browser.until_text("#rows tr td a", "Storm warning").await;
    assert_eq!(browser.text("#rows tr td:last-child").await, "0.0%");
    browser.screenshot("list").await;

    // Revoke, confirmed.
    browser.click("#rows tr td a").await;
    browser.until_text("#status", "sent").await;
    browser.run("window.confirm = () => true;", json!([])).await;
    browser.click("#revoke").await;
    browser.until_text("#status", "revoked").await;
    assert!(h.inbox_ids(&r1).await.is_empty(), "gone from the inbox");

    // A viewer sees the same pages and no control that writes.
    browser.click("#sign-out").await;
    browser.type_into("#token", &h.viewer).await;
    browser.click("#sign-in button[type=submit]").await;
    browser.wait_for("#search").await;
    let hidden =
        "return document.getElementById('nav-compose').hidden && document.getElementById('nav-receivers').hidden;";
    assert_eq!(browser.run(hidden, json!([])).await, true);
    browser.open(&format!("{console}#/n/{id}")).await;
    browser.until_text("#status", "revoked").await;
    let controls =
        "return ['#revoke', '#cancel', '#release', '#send'].filter((s) => document.querySelector(s)).length;";
    assert_eq!(browser.run(controls, json!([])).await, 0, "no write control for a viewer");
    browser.open(&format!("{console}#/compose")).await;
    browser.wait_for("#search").await;
    assert_eq!(browser.run("return document.querySelector('#compose') === null;", json!([])).await, true);

    browser.command(reqwest::Method::DELETE, "", None).await;
    h.stop().await;
}

#[tokio::test]
async fn receivers_upload_as_csv_with_a_report_per_row() {
    let Some(browser) = Browser::start().await else { return };
    let h = TestHerald::spawn().await;
    let console = format!("{}/console/", h.base);
    browser.open(&console).await;
    browser.run("sessionStorage.setItem('herald.token', arguments[0]);", json!([h.admin])).await;
    browser.open(&format!("{console}#/receivers")).await;
    let csv = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
    std::fs::write(
        csv.path(),
        "kind,id,city,groups\nrider,u1,shanghai,vip\nrider,bad id,shanghai,\nmerchant,m1,beijing,\n",
    )
    .unwrap();
    let input = browser.wait_for("#csv").await;
    let path = csv.path().display().to_string();
    browser.command(reqwest::Method::POST, &format!("/element/{input}/value"), Some(json!({"text": path}))).await;
    browser.click("#upload").await;
    browser.until_text("#imported", "Imported 2 receivers; 1 rows rejected.").await;
    assert_eq!(browser.text("#import-report tbody tr td").await, "3", "the rejected row's line");
    browser.screenshot("receivers").await;
    let r = h.admin_get("/admin/v1/receivers/rider/u1").await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{:?}", r.body);
    browser.command(reqwest::Method::DELETE, "", None).await;
    h.stop().await;
}

#[tokio::test]
async fn the_composer_previews_rich_content_as_text_and_splits_the_audience_by_variant() {
    let Some(browser) = Browser::start().await else { return };
    let h = TestHerald::spawn().await;
    h.receivers(&[
        ("rider", "v1", "shanghai", &["vip"]),
        ("rider", "p1", "shanghai", &[]),
        ("rider", "p2", "beijing", &[]),
    ])
    .await;
    let console = format!("{}/console/", h.base);
    browser.open(&console).await;
    browser.run("sessionStorage.setItem('herald.token', arguments[0]);", json!([h.admin])).await;
    browser.open(&format!("{console}#/compose")).await;

    // Markup in a title is shown as the text it is, never parsed.
    browser.type_into("#title", "<img src=x onerror=alert(1)>周末 <b>特惠</b>").await;
    browser.type_into("#body", "全场九折").await;
    browser.type_into("#image", "https://cdn.example.com/weekend.png").await;
    let choose =
        "const s = document.querySelector(arguments[0]); s.value = arguments[1]; s.dispatchEvent(new Event('input'));";
    browser.run(choose, json!(["#action-0-kind", "deep_link"])).await;
    browser.type_into("#action-0-target", "javascript:alert(1)").await;
    browser.type_into("#action-0-label", "去看看").await;
    browser.until_text("#preview-title", "<img src=x onerror=alert(1)>周末 <b>特惠</b>").await;
    let parsed =
        "return document.querySelectorAll('#message-preview b, #message-preview img:not(#preview-image)').length;";
    assert_eq!(browser.run(parsed, json!([])).await, 0, "no markup from the title made it into the page");
    let image = "return document.querySelector('#preview-image')?.getAttribute('src');";
    assert_eq!(browser.run(image, json!([])).await, "https://cdn.example.com/weekend.png");
    browser.until_text("#preview-buttons button", "去看看").await;

    // The variants' groups split the audience preview.
    let advanced = r#"{"variants": [{"groups": ["vip"], "title": "VIP 专享", "body": "八折"}], "locales": {"en": {"title": "Weekend", "body": "10% off"}}}"#;
    browser.type_into("#advanced", advanced).await;
    browser.until_text("#preview", "Reaches 3 receivers (beijing 1, shanghai 2); variants 1: 1, default: 2").await;

    // A link the API refuses is shown beside its field; fixed, the notification is sent.
    browser.click("#send").await;
    browser
        .until(
            "the button target's error",
            "return document.querySelector('[data-error-for=\"actions[0].target\"]').textContent !== '';",
            json!([]),
        )
        .await;
    browser.type_into("#action-0-target", "herald://promo/weekend").await;
    browser.click("#send").await;
    browser.until_text("#status", "sent").await;
    assert_eq!(
        browser.run("return document.querySelector('#n-image')?.getAttribute('src');", json!([])).await,
        "https://cdn.example.com/weekend.png"
    );
    browser.until_text("#n-actions button", "去看看").await;
    browser.until_text("#n-variants", "1 variant(s) by group; translations: en").await;
    // Sent and read per content shown: v1 got the VIP variant, p1 and p2 the default.
    browser.until_text("#variant-stats tr:first-child", "VIP 专享 (vip)100.0%").await;
    browser.until_text("#variant-stats tr:last-child", "default200.0%").await;
    browser.screenshot("compose-rich").await;
    let vip = h.app_get(&h.app_token("rider", "v1"), "/app/v1/inbox").await;
    assert_eq!(vip.body["items"][0]["title"], "VIP 专享", "{:?}", vip.body);
    let id = vip.body["items"][0]["id"].as_str().unwrap().to_owned();
    let read = h.app_post(&h.app_token("rider", "v1"), &format!("/app/v1/inbox/{id}/read")).await;
    assert!(read.status.is_success(), "{:?}", read.body);
    browser.open(&format!("{console}#/list")).await;
    browser.open(&format!("{console}#/n/{id}")).await;
    browser.until_text("#variant-stats tr:first-child", "VIP 专享 (vip)11100.0%").await;
    browser.command(reqwest::Method::DELETE, "", None).await;
    h.stop().await;
}
