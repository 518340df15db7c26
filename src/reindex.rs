//! `herald reindex --server URL`: the rebuild of the admin search mirror run by a running api
//! process (`POST /admin/v1/search/reindex`), followed until it ends. The embedded index has one
//! writing process, the api's, so a rebuild beside a running api goes through it.

use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// How often the rebuild's state is asked for.
const POLL: Duration = Duration::from_millis(500);

#[derive(Deserialize)]
struct State {
    state: String,
    indexed: u64,
    applied: Option<u64>,
    error: Option<String>,
}

/// Starts (or joins) the rebuild on `server` with an operator `token`, prints its progress and
/// returns once it is done; an error when it failed or the server refused.
pub async fn through_server(server: &str, token: &str) -> anyhow::Result<()> {
    let url = format!("{}/admin/v1/search/reindex", server.trim_end_matches('/'));
    let client = reqwest::Client::new();
    let answer = client.post(&url).bearer_auth(token).send().await.with_context(|| format!("POST {url}"))?;
    let mut state = read(answer, &url).await?;
    let mut shown = 0;
    while state.state == "running" {
        if state.indexed >= shown + 10_000 {
            shown = state.indexed;
            eprintln!("… {} notifications written into the new index", state.indexed);
        }
        tokio::time::sleep(POLL).await;
        let answer = client.get(&url).bearer_auth(token).send().await.with_context(|| format!("GET {url}"))?;
        state = read(answer, &url).await?;
    }
    match (state.state.as_str(), state.applied) {
        ("done", Some(applied)) => {
            eprintln!(
                "search mirror rebuilt from SQL by {server}: {} notifications, change log applied to {applied}",
                state.indexed
            );
            Ok(())
        }
        ("failed", _) => bail!("the rebuild on {server} failed: {}", state.error.unwrap_or_default()),
        (other, _) => bail!("the rebuild on {server} ended as {other:?}"),
    }
}

async fn read(answer: reqwest::Response, url: &str) -> anyhow::Result<State> {
    let status = answer.status();
    if !status.is_success() {
        let body = answer.text().await.unwrap_or_default();
        bail!("{url} answered {status}: {body}");
    }
    answer.json().await.with_context(|| format!("reading {url}'s answer"))
}
