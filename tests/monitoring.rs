//! The monitoring in `deploy/monitoring/` reads only what `/metrics` exports: every metric name and
//! label that an alert rule or a dashboard panel uses is scraped from a real Herald that has sent
//! notices. Renaming a metric or a label without the rules and the dashboard fails here. Beside
//! that, the series the monitoring was built for carry real samples: send delays, the backlog per
//! consumer group, the oldest open send, backend errors by backend and operation.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use common::*;
use herald::startup::{Roles, Running, start};
use herald_domain::listing::NotificationFilter;
use herald_domain::ports::{PortError, PortResult};
use herald_domain::search::{SearchCursor, SearchDocument, SearchHits, SearchIndex, SearchRebuild};
use serde_json::{Value, json};

const RULES: &str = include_str!("../deploy/monitoring/herald-alerts.yml");
const DASHBOARD: &str = include_str!("../deploy/monitoring/herald-dashboard.json");

/// Series Prometheus makes itself for every target, and the labels it adds to every series.
const PROMETHEUS_OWN: [&str; 1] = ["up"];
const TARGET_LABELS: [&str; 2] = ["job", "instance"];
/// The gauges read from the backends at scrape time: the same answer from any process.
const BACKEND_GAUGES: [&str; 4] =
    ["herald_queue_lag_pages", "herald_outbox_pages", "herald_oldest_open_send_seconds", "herald_search_lag_changes"];

// ---------------------------------------------------------------------------------------------
// What /metrics exports
// ---------------------------------------------------------------------------------------------

/// Sample names, each with its samples: labels and value.
type Scraped = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

/// Each sample name in Prometheus' text format (a histogram's `_bucket`, `_sum` and `_count` are
/// sample names of their own) with the label names its samples carry and their values.
fn exported(text: &str) -> Scraped {
    let mut series: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (name, rest) = line.split_at(line.find(['{', ' ']).expect("a sample line has a value"));
        let (labels, value) = match rest.strip_prefix('{') {
            Some(inner) => {
                let end = inner.rfind('}').expect("labels close");
                (parse_labels(&inner[..end]), inner[end + 1..].trim())
            }
            None => (BTreeMap::new(), rest.trim()),
        };
        let value: f64 = value.split(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("a value: {line}"));
        series.entry(name.to_string()).or_default().push((labels, value));
    }
    series
}

fn parse_labels(inner: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = inner;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq].trim_start_matches([',', ' ']).to_string();
        let value_start = eq + 2;
        let mut end = value_start;
        let bytes = rest.as_bytes();
        while bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        labels.insert(name, rest[value_start..end].to_string());
        rest = &rest[end + 1..];
    }
    labels
}

/// The sum of the samples of `name` whose labels include `matching`.
fn value(series: &Scraped, name: &str, matching: &[(&str, &str)]) -> f64 {
    let samples = series.get(name).unwrap_or_else(|| panic!("{name} is exported"));
    samples
        .iter()
        .filter(|(labels, _)| matching.iter().all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, v)| v)
        .sum()
}

// ---------------------------------------------------------------------------------------------
// What a PromQL expression uses (a small extractor: names, matchers, by/without/on/ignoring)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Open,
    Close,
    /// A `{...}` selector: the label names its matchers use.
    Matchers(Vec<String>),
    Other,
}

fn tokens(expr: &str) -> Vec<Token> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' || c == '`' {
            // A string literal (an argument such as label_replace's): nothing to check in it.
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(Token::Other);
        } else if c == '[' {
            // A range or subquery: `[5m]`, `[$__rate_interval]`, `[1h:5m]`.
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '{' {
            let end = i + chars[i..].iter().position(|&c| c == '}').expect("a selector closes");
            let inner: String = chars[i + 1..end].iter().collect();
            let names = tokens(&inner)
                .into_iter()
                .filter_map(|t| if let Token::Ident(n) = t { Some(n) } else { None })
                .collect();
            out.push(Token::Matchers(names));
            i = end + 1;
        } else if c == '(' {
            out.push(Token::Open);
            i += 1;
        } else if c == ')' {
            out.push(Token::Close);
            i += 1;
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            // A number or a duration (`0.99`, `5m`, `1e3`).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            out.push(Token::Other);
        } else if c == '$' {
            // A Grafana variable outside a range (`$__interval`): not a metric.
            i += 1;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            out.push(Token::Other);
        } else if ident_start(c) {
            let start = i;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            i += 1;
            out.push(Token::Other);
        }
    }
    out
}

/// What an expression needs of the exporter.
#[derive(Debug, Default, PartialEq)]
struct Uses {
    /// Each metric selected, with the labels its matchers name.
    metrics: Vec<(String, BTreeSet<String>)>,
    /// Labels grouped by (`by`, `without`), with the metrics of the aggregated expression.
    grouped: Vec<(BTreeSet<String>, BTreeSet<String>)>,
    /// Labels vectors are matched on (`on`, `ignoring`): every metric of the expression needs them.
    matched_on: BTreeSet<String>,
}

const KEYWORDS: [&str; 11] =
    ["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"];

const AGGREGATIONS: [&str; 12] =
    ["sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"];

fn uses(expr: &str) -> Uses {
    let t = tokens(expr);
    // The index of the parenthesis closing each opening one.
    let mut closing = vec![usize::MAX; t.len()];
    let mut open = Vec::new();
    for (i, token) in t.iter().enumerate() {
        match token {
            Token::Open => open.push(i),
            Token::Close => closing[open.pop().expect("parentheses balance")] = i,
            _ => {}
        }
    }
    assert!(open.is_empty(), "parentheses balance in {expr}");
    let metrics_in =
        |from: usize, to: usize| -> BTreeSet<String> { selected(&t[from..to]).into_iter().map(|(m, _)| m).collect() };
    let label_list = |open: usize| -> BTreeSet<String> {
        t[open + 1..closing[open]]
            .iter()
            .filter_map(|t| if let Token::Ident(n) = t { Some(n.clone()) } else { None })
            .collect()
    };
    let mut u = Uses { metrics: selected(&t), ..Uses::default() };
    for (i, token) in t.iter().enumerate() {
        let Token::Ident(word) = token else { continue };
        if t.get(i + 1) != Some(&Token::Open) {
            continue;
        }
        match word.as_str() {
            "by" | "without" => {
                let labels = label_list(i + 1);
                let after = closing[i + 1] + 1;
                // `sum by (l) (expr)`, or `sum(expr) by (l)`.
                let argument = if t.get(after) == Some(&Token::Open) {
                    (after + 1, closing[after])
                } else {
                    let close = i - 1;
                    let open = (0..close).rev().find(|&o| closing[o] == close).expect("the aggregated expression");
                    (open + 1, close)
                };
                u.grouped.push((labels, metrics_in(argument.0, argument.1)));
            }
            "on" | "ignoring" => u.matched_on.extend(label_list(i + 1)),
            _ => {}
        }
    }
    u
}

/// The metrics a token run selects: identifiers that are no function, keyword or label list, with
/// the labels of the matchers that follow them (a bare `{...}` selects no name and is refused).
fn selected(t: &[Token]) -> Vec<(String, BTreeSet<String>)> {
    let mut out = Vec::new();
    let mut in_label_list = 0usize;
    let mut depth_of_lists = Vec::new();
    let mut depth = 0usize;
    for (i, token) in t.iter().enumerate() {
        match token {
            Token::Open => {
                depth += 1;
                let before = if i > 0 { t.get(i - 1) } else { None };
                if let Some(Token::Ident(w)) = before
                    && ["by", "without", "on", "ignoring", "group_left", "group_right"].contains(&w.as_str())
                {
                    in_label_list += 1;
                    depth_of_lists.push(depth);
                }
            }
            Token::Close => {
                if depth_of_lists.last() == Some(&depth) {
                    depth_of_lists.pop();
                    in_label_list -= 1;
                }
                depth -= 1;
            }
            Token::Ident(name) if in_label_list == 0 => {
                // A function call, or an aggregation with its grouping first (`sum by (l) (…)`).
                let function = match t.get(i + 1) {
                    Some(Token::Open) => true,
                    Some(Token::Ident(next)) => {
                        AGGREGATIONS.contains(&name.as_str()) && ["by", "without"].contains(&next.as_str())
                    }
                    _ => false,
                };
                if !function && !KEYWORDS.contains(&name.as_str()) {
                    let labels = match t.get(i + 1) {
                        Some(Token::Matchers(names)) => names.iter().cloned().collect(),
                        _ => BTreeSet::new(),
                    };
                    out.push((name.clone(), labels));
                }
            }
            Token::Matchers(_) => {
                let named = i > 0 && matches!(&t[i - 1], Token::Ident(_));
                assert!(named, "a selector without a metric name cannot be checked");
            }
            _ => {}
        }
    }
    out
}

/// What of `uses` the exporter lacks, as sentences (empty when everything is exported).
fn missing(expr: &str, exported: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let u = uses(expr);
    let mut problems = Vec::new();
    let labels_of = |metric: &str| -> Option<BTreeSet<String>> {
        let own = PROMETHEUS_OWN.contains(&metric).then(BTreeSet::new);
        let labels = own.or_else(|| exported.get(metric).cloned())?;
        Some(labels.into_iter().chain(TARGET_LABELS.map(String::from)).collect())
    };
    if u.metrics.is_empty() {
        problems.push(format!("no metric found in `{expr}`"));
    }
    for (metric, labels) in &u.metrics {
        match labels_of(metric) {
            None => problems.push(format!("`{metric}` is not exported (in `{expr}`)")),
            Some(has) => {
                for l in labels.iter().filter(|l| l.as_str() != "__name__" && !has.contains(*l)) {
                    problems.push(format!("`{metric}` has no label `{l}` (in `{expr}`)"));
                }
            }
        }
    }
    let every_metric = u.metrics.iter().map(|(m, _)| m.clone()).collect::<BTreeSet<_>>();
    let grouped = u.grouped.iter().map(|(l, m)| (l.clone(), m.clone()));
    for (labels, metrics) in grouped.chain([(u.matched_on.clone(), every_metric)]) {
        for m in &metrics {
            let has = labels_of(m).unwrap_or_default();
            for l in labels.iter().filter(|l| !has.contains(*l)) {
                problems.push(format!("`{m}` has no label `{l}` to group or match by (in `{expr}`)"));
            }
        }
    }
    problems
}

/// Every `expr:` of the rules file (one line, or a folded or literal block below it).
fn rule_expressions(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else { continue };
        let value = value.trim();
        if matches!(value, ">-" | ">" | "|" | "|-") {
            let indent = line.len() - line.trim_start().len();
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            out.push(block.join(" "));
        } else {
            out.push(value.to_string());
        }
    }
    out
}

/// Every panel target's `expr` in the dashboard, rows' nested panels included.
fn panel_expressions(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let nested = panel["panels"].as_array().cloned().unwrap_or_default();
        for p in std::iter::once(panel).chain(nested.iter()) {
            for target in p["targets"].as_array().cloned().unwrap_or_default() {
                out.push(target["expr"].as_str().expect("a target has an expr").to_string());
            }
        }
    }
    out
}

fn label_names(series: &Scraped) -> BTreeMap<String, BTreeSet<String>> {
    series
        .iter()
        .map(|(name, samples)| (name.clone(), samples.iter().flat_map(|(l, _)| l.keys().cloned()).collect()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------

/// The extractor finds what it must, so that the real check can fail.
#[test]
fn the_extractor_finds_names_matchers_and_grouping_labels() {
    let u = uses(
        r#"histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{route=~"/app/.*", status="5xx"}[$__rate_interval]))) > 1"#,
    );
    assert_eq!(u.metrics, [("a_bucket".to_string(), BTreeSet::from(["route".to_string(), "status".to_string()]))]);
    assert_eq!(u.grouped, [(BTreeSet::from(["le".into(), "route".into()]), BTreeSet::from(["a_bucket".into()]))]);
    let u = uses("max by (group) (lag) > 0 and on () sum(rate(consumed[10m])) == 0");
    assert_eq!(u.metrics.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(), ["lag", "consumed"]);
    let u = uses("sum(rate(x_total[5m] offset 1h)) by (stage) / ignoring(stage) group_left sum(rate(y[5m]))");
    assert_eq!(u.metrics.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(), ["x_total", "y"]);
    assert_eq!(u.grouped, [(BTreeSet::from(["stage".into()]), BTreeSet::from(["x_total".into()]))]);
    assert_eq!(u.matched_on, BTreeSet::from(["stage".into()]));

    let exported = BTreeMap::from([("a_bucket".to_string(), BTreeSet::from(["le".to_string(), "route".to_string()]))]);
    assert!(missing(r#"sum by (le, route) (rate(a_bucket{route="/x"}[5m]))"#, &exported).is_empty());
    assert_eq!(missing("rate(a_renamed_bucket[5m])", &exported).len(), 1, "a renamed metric is caught");
    assert_eq!(missing(r#"rate(a_bucket{path="/x"}[5m])"#, &exported).len(), 1, "a renamed label is caught");
    assert_eq!(missing("sum by (path) (rate(a_bucket[5m]))", &exported).len(), 1, "a grouping label too");
    assert_eq!(missing("rate(a[5m])", &exported).len(), 1, "a histogram is scraped by its samples' names");
}

/// A failing search backend: what `herald_backend_errors_total` must count.
struct SearchDown;

fn down<T>() -> PortResult<T> {
    Err(PortError::new("test search", "down for the test"))
}

#[async_trait]
impl SearchIndex for SearchDown {
    async fn index(&self, _: u64, _: &[SearchDocument]) -> PortResult<()> {
        down()
    }
    async fn applied(&self) -> PortResult<u64> {
        down()
    }
    async fn search(&self, _: &NotificationFilter, _: Option<&SearchCursor>, _: usize) -> PortResult<SearchHits> {
        down()
    }
    async fn begin_rebuild(&self) -> PortResult<Box<dyn SearchRebuild>> {
        down()
    }
    async fn ping(&self) -> PortResult<()> {
        down()
    }
}

async fn scrape(h: &TestHerald) -> String {
    let r = h.client.get(format!("{}/metrics", h.base)).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    r.text().await.unwrap()
}

#[tokio::test]
async fn every_metric_and_label_the_rules_and_the_dashboard_use_is_exported() {
    let h = TestHerald::spawn_on(|_| {}, |ports| ports.search = std::sync::Arc::new(SearchDown)).await;
    h.riders("mon", 20, &["sh", "bj"]).await;
    h.send_and_wait(&TestHerald::notification("broadcast", json!({"all": true}), json!({}))).await;
    h.send_and_wait(&TestHerald::notification("direct", json!({"include": ["mon000000", "mon000001"]}), json!({})))
        .await;
    let ready = h.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.body["checks"]["search"], json!("test search: down for the test"), "{:?}", ready.body);

    let text = scrape(&h).await;
    let series = exported(&text);
    let names = label_names(&series);

    // The series the monitoring was built for, with real samples.
    for topic in ["herald_bulk", "herald_direct"] {
        for stage in ["first_page", "sent"] {
            let n = value(&series, "herald_send_delay_seconds_count", &[("stage", stage), ("topic", topic)]);
            assert!(n >= 1.0, "a send delay to {stage} on {topic} is observed:\n{text}");
        }
    }
    // Two cities' first pages of the broadcast, one of the direct send (its receivers' city).
    assert!(
        value(&series, "herald_send_delay_seconds_count", &[("stage", "first_page"), ("topic", "herald_bulk")]) >= 2.0
    );
    assert_eq!(value(&series, "herald_queue_lag_pages", &[("group", "herald_inbox")]), 0.0, "all consumed:\n{text}");
    assert_eq!(value(&series, "herald_oldest_open_send_seconds", &[]), 0.0, "nothing is open:\n{text}");
    let search_errors = value(&series, "herald_backend_errors_total", &[("backend", "search"), ("operation", "ping")]);
    assert!(search_errors >= 1.0, "the failed ping of /readyz is counted:\n{text}");
    assert_eq!(value(&series, "herald_backend_errors_total", &[("backend", "sql")]), 0.0, "nothing else failed");
    assert_eq!(value(&series, "herald_pages_dead_lettered_total", &[]), 0.0);

    let rules = rule_expressions(RULES);
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let panels = panel_expressions(&dashboard);
    assert!(rules.len() >= 10 && panels.len() >= 15, "found {} rules and {} panel targets", rules.len(), panels.len());
    let problems: Vec<String> = rules.iter().chain(&panels).flat_map(|e| missing(e, &names)).collect();
    assert!(problems.is_empty(), "the monitoring uses what /metrics does not export:\n{}", problems.join("\n"));
    h.stop().await;
}

/// A send still open shows its age; once every city is delivered, it is 0 again.
#[tokio::test]
async fn the_oldest_open_send_ages_while_a_city_is_not_delivered() {
    let h = TestHerald::spawn_with(|s| s.scheduler.max_pages_per_second = Some(1)).await;
    h.riders("slow", 1500, &["sh"]).await;
    let id = h.create(&TestHerald::notification("slow", json!({"all": true}), json!({}))).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let age = loop {
        let age = value(&exported(&scrape(&h).await), "herald_oldest_open_send_seconds", &[]);
        if age > 0.0 {
            break age;
        }
        assert!(std::time::Instant::now() < deadline, "the open send never showed an age");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(age < 3600.0, "its age is since it began, not since some old time: {age}");
    h.wait_status(&id, "sent").await;
    assert_eq!(value(&exported(&scrape(&h).await), "herald_oldest_open_send_seconds", &[]), 0.0);
    h.stop().await;
}

/// A role's own listener for its health and metrics (`HERALD_OPS_ADDR`), on a free port.
async fn start_role(dir: &std::path::Path, servers: &TestServers, roles: Roles) -> Running {
    let mut settings = test_settings(dir, servers);
    settings.scheduler.tick = std::time::Duration::from_millis(50);
    settings.ops_listen = Some("127.0.0.1:0".to_string());
    start(&settings, roles).await.expect("the role starts")
}

async fn get(client: &reqwest::Client, url: String) -> (reqwest::StatusCode, String) {
    let r = client.get(url).send().await.expect("the ops listener answers");
    (r.status(), r.text().await.unwrap())
}

/// In a split deployment every role shows its own health and exports what it does: the consumers
/// their send delays and pages consumed, the scheduler its pages and, alone, the gauges read from
/// the backends (backlog per group, outbox, oldest open send, search lag) so that an alert on one
/// fires once, not once per process. Every rule can be evaluated on what the roles export.
#[tokio::test]
async fn a_scheduler_and_a_consumer_alone_serve_their_health_and_the_metrics_the_rules_need() {
    let dir = tempfile::tempdir().unwrap();
    let servers = TestServers::new().await;
    let only = |api, scheduler, consumer| Roles { api, scheduler, consumer };
    let api = start_role(dir.path(), &servers, only(true, false, false)).await;
    let scheduler = start_role(dir.path(), &servers, only(false, true, false)).await;
    let consumer = start_role(dir.path(), &servers, only(false, false, true)).await;
    assert!(scheduler.addr.is_none() && consumer.addr.is_none(), "a role without the api serves no API");
    let h = TestHerald::attach(&format!("http://{}", api.addr.expect("the api role listens")));
    h.riders("split", 20, &["sh", "bj"]).await;
    h.send_and_wait(&TestHerald::notification("split roles", json!({"all": true}), json!({}))).await;

    let client = reqwest::Client::new();
    let mut scraped = Vec::new();
    for (name, running) in [("api", &api), ("scheduler", &scheduler), ("consumer", &consumer)] {
        let base = format!("http://{}", running.ops_addr.expect("an ops listener"));
        let (status, body) = get(&client, format!("{base}/healthz")).await;
        assert_eq!((status.as_u16(), body.as_str()), (200, r#"{"status":"ok"}"#), "{name}'s /healthz");
        let (status, body) = get(&client, format!("{base}/readyz")).await;
        let ready: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status.as_u16(), 200, "{name}'s /readyz: {body}");
        for backend in ["sql", "inbox", "queue"] {
            assert_eq!(ready["checks"][backend], json!("ok"), "{name}'s /readyz: {body}");
        }
        let (status, _) = get(&client, format!("{base}/admin/v1/notifications")).await;
        assert_eq!(status.as_u16(), 404, "{name}'s ops listener serves operations only");
        let (status, text) = get(&client, format!("{base}/metrics")).await;
        assert_eq!(status.as_u16(), 200);
        scraped.push((name, text));
    }
    let of = |role: &str| exported(&scraped.iter().find(|(n, _)| *n == role).unwrap().1);

    let c = of("consumer");
    for stage in ["first_page", "sent"] {
        let n = value(&c, "herald_send_delay_seconds_count", &[("stage", stage), ("topic", "herald_bulk")]);
        assert!(n >= 1.0, "the consumer observes the send delay to {stage}");
    }
    assert!(value(&c, "herald_pages_consumed_total", &[("outcome", "delivered")]) >= 2.0, "two cities' pages");
    assert_eq!(value(&c, "herald_deliveries_total", &[]), 20.0);
    assert_eq!(value(&c, "herald_pages_dead_lettered_total", &[]), 0.0);
    let s = of("scheduler");
    assert_eq!(value(&s, "herald_queue_lag_pages", &[("group", "herald_inbox")]), 0.0, "all consumed");
    assert!(value(&s, "herald_pages_published_total", &[]) >= 2.0, "the scheduler counts its pages");
    assert_eq!(value(&s, "herald_oldest_open_send_seconds", &[]), 0.0, "nothing is open");
    assert_eq!(value(&s, "herald_outbox_pages", &[]), 0.0);
    assert!(!s.contains_key("herald_send_delay_seconds_count"), "the consumers observe send delays, not it");

    for gauge in BACKEND_GAUGES {
        for (role, text) in &scraped {
            let has = exported(text).contains_key(gauge);
            assert_eq!(has, *role == "scheduler", "{gauge} is exported by the scheduler only, {role} has it: {has}");
        }
    }

    // Prometheus evaluates a rule over every target's series: each rule finds what it reads in what
    // the three roles export together.
    let mut union: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, text) in &scraped {
        for (name, labels) in label_names(&exported(text)) {
            union.entry(name).or_default().extend(labels);
        }
    }
    let unmet: Vec<String> = rule_expressions(RULES)
        .into_iter()
        .filter_map(|expr| Some(format!("{expr}: {:?}", Some(missing(&expr, &union)).filter(|m| !m.is_empty())?)))
        .collect();
    assert!(unmet.is_empty(), "the roles together do not export what these rules read:\n{}", unmet.join("\n"));
    for r in [api, scheduler, consumer] {
        r.stop().await.expect("clean stop");
    }
}
