//! What this adapter promises beyond the port's contract: a rebuild moves the alias with no moment
//! where searches fail or find the mirror empty, and leaves only the index in use (also after an
//! abandoned one); a server that is down or silent is reported as unavailable or timed out.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use herald_domain::listing::NotificationFilter;
use herald_domain::ports::Failure;
use herald_domain::search::{SearchDocument, SearchIndex};
use herald_domain::{
    Audience, Body, Category, City, NewNotification, Notification, NotificationId, ReceiverKind, Status, Title,
    ValidityWindow,
};
use herald_elasticsearch::{ElasticsearchConfig, ElasticsearchIndex};
use support::TestServer;

fn document(n: i64, title: &str) -> SearchDocument {
    let content = NewNotification {
        title: Title::parse("title", title).unwrap(),
        body: Body::parse("body", "明日系统维护").unwrap(),
        category: Category::System,
        receiver_kind: ReceiverKind::Rider,
        audience: serde_json::from_str::<Audience>(r#"{"cities": ["shanghai"]}"#).unwrap(),
        pinned: false,
        force_read: false,
        validity: ValidityWindow::new(None, None).unwrap(),
        send_at: None,
        draft: false,
        image: None,
        actions: Default::default(),
        locales: Default::default(),
        variants: Default::default(),
    };
    let created_at = Utc.timestamp_millis_opt(1_700_000_000_000 + n).unwrap();
    let notification = Notification {
        id: NotificationId::generate(),
        content,
        status: Status::Sent,
        created_at,
        sent_at: None,
        revoked_at: None,
    };
    SearchDocument {
        notification,
        cities_reached: vec![City::parse("city", "beijing").unwrap()],
        matched: 10,
        sent: 8,
        read: n as u64 % 8,
    }
}

fn text(q: &str) -> NotificationFilter {
    NotificationFilter { text: Some(q.to_string()), ..NotificationFilter::default() }
}

#[tokio::test]
async fn a_rebuild_swaps_the_alias_while_every_search_finds_the_old_or_new_mirror() {
    let Some(server) = TestServer::from_env() else { return };
    let mirror = Arc::new(server.open());
    let old: Vec<SearchDocument> = (0..40).map(|n| document(n, "骑手端升级通知")).collect();
    mirror.index(7, &old).await.unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let searching = {
        let (mirror, done) = (mirror.clone(), done.clone());
        tokio::spawn(async move {
            let mut totals = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let hits = mirror.search(&text("骑手"), None, 5).await.expect("no search fails during a rebuild");
                totals.push(hits.total);
            }
            totals
        })
    };
    let mut rebuild = mirror.begin_rebuild().await.unwrap();
    let new: Vec<SearchDocument> = (0..60).map(|n| document(n, "骑手端升级通知")).collect();
    for chunk in new.chunks(10) {
        rebuild.add(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rebuild.finish(5).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    done.store(true, Ordering::Relaxed);
    let totals = searching.await.unwrap();

    assert!(totals.len() > 3, "searches ran during the rebuild: {totals:?}");
    assert!(totals.iter().all(|&t| t == 40 || t == 60), "each search saw the old or the new mirror whole: {totals:?}");
    assert_eq!(totals.last(), Some(&60), "the rebuilt mirror serves once finished");
    // The rebuilt mirror took the position it was given, below what the old one had applied.
    assert_eq!(mirror.applied().await.unwrap(), 5);
    let reopened = server.open();
    assert_eq!(reopened.search(&NotificationFilter::default(), None, 1).await.unwrap().total, 60);
}

#[tokio::test]
async fn a_server_that_is_down_is_unavailable() {
    // Nothing listens on port 9 (discard) of loopback here.
    let mirror = ElasticsearchIndex::new(ElasticsearchConfig::new("http://127.0.0.1:9")).unwrap();
    assert_eq!(mirror.search(&text("x"), None, 10).await.unwrap_err().failure, Failure::Unavailable);
    assert_eq!(mirror.ping().await.unwrap_err().failure, Failure::Unavailable);
    assert_eq!(mirror.index(1, &[document(1, "x")]).await.unwrap_err().failure, Failure::Unavailable);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Accepts connections and keeps them, answering nothing.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let config = ElasticsearchConfig { search_timeout: Duration::from_millis(300), ..ElasticsearchConfig::new(&url) };
    let mirror = ElasticsearchIndex::new(config).unwrap();
    assert_eq!(mirror.search(&text("x"), None, 10).await.unwrap_err().failure, Failure::TimedOut);
    assert_eq!(mirror.ping().await.unwrap_err().failure, Failure::TimedOut);
    silent.abort();
}

/// The names of the indices under this test's prefix, asked of the server directly.
async fn indices_on_server(server: &TestServer) -> Vec<String> {
    let client = elasticsearch::Elasticsearch::new(
        elasticsearch::http::transport::Transport::single_node(&server.config.url).unwrap(),
    );
    let pattern = format!("{}*", server.config.prefix);
    let answer =
        client.indices().get(elasticsearch::indices::IndicesGetParts::Index(&[&pattern])).send().await.unwrap();
    let body: serde_json::Value = answer.json().await.unwrap();
    let mut names: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_rebuild_leaves_only_the_index_in_use_also_after_an_abandoned_one() {
    let Some(server) = TestServer::from_env() else { return };
    let mirror = server.open();
    mirror.index(1, &[document(1, "first")]).await.unwrap();
    let first = indices_on_server(&server).await;
    assert_eq!(first.len(), 1, "{first:?}");

    let mut abandoned = mirror.begin_rebuild().await.unwrap();
    abandoned.add(&[document(2, "abandoned")]).await.unwrap();
    drop(abandoned);
    assert_eq!(indices_on_server(&server).await.len(), 2, "an abandoned rebuild's index stays until the next");

    let mut rebuild = mirror.begin_rebuild().await.unwrap();
    rebuild.add(&[document(3, "rebuilt")]).await.unwrap();
    rebuild.finish(1).await.unwrap();
    let after = indices_on_server(&server).await;
    assert_eq!(after.len(), 1, "the replaced and the abandoned index are deleted: {after:?}");
    assert_ne!(after, first, "the rebuilt index serves");
    assert_eq!(mirror.search(&text("rebuilt"), None, 10).await.unwrap().total, 1);
}
