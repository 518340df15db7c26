//! The HTTP server loop. Herald faces millions of app devices, some buggy, some hostile: a socket that
//! never finishes its request must not hold a file descriptor for ever, and a flood of sockets must
//! not exhaust them. So every connection has a deadline for its headers (also while idle between
//! keep-alive requests), every request one for its body and answer, and connections are capped
//! below the process's file limit; past the cap new sockets wait in the kernel's backlog.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::http::ApiError;

/// File descriptors kept free for the stores, the queue and the logs when capping connections.
const RESERVED_FDS: u64 = 256;
/// How long in-flight requests may take to finish once shutdown began.
const DRAIN: Duration = Duration::from_secs(10);

/// Deadlines and caps for the HTTP server.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// From accepting a connection (or finishing a response on it) to having the next request's
    /// headers: a slow or idle socket is closed after this.
    pub header_timeout: Duration,
    /// From the headers to the end of the answer, body read included: 408 after this.
    pub request_timeout: Duration,
    /// Connections served at once, at most; lowered to fit the process's open-file limit.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 10_000,
        }
    }
}

impl HttpLimits {
    /// The cap actually used: the configured one, or fewer when the open-file limit is lower.
    pub fn effective_max_connections(&self) -> usize {
        let fitting = open_file_limit().map(|n| n.saturating_sub(RESERVED_FDS).max(16) as usize);
        fitting.map_or(self.max_connections, |f| f.min(self.max_connections)).max(1)
    }
}

/// The soft limit on open files (Linux: `/proc/self/limits`), if known.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_file_limit(&limits)
}

fn parse_open_file_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// Answers 408 in the contract's error shape when a request (its body included) takes too long.
async fn deadline(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request was not complete within {} s", limit.as_secs_f64()),
        )
        .into_response(),
    }
}

/// Serves `app` on `listener` until `shutdown`, then lets in-flight requests finish (up to `DRAIN`).
pub async fn serve(listener: TcpListener, app: Router, limits: HttpLimits, shutdown: CancellationToken) {
    let request_timeout = limits.request_timeout;
    let app =
        app.layer(axum::middleware::from_fn(move |req: Request, next: Next| deadline(request_timeout, req, next)));
    let max = limits.effective_max_connections();
    tracing::debug!(max_connections = max, "serving HTTP");
    let permits = Arc::new(Semaphore::new(max));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: back off, don't spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            app.clone().oneshot(request.map(axum::body::Body::new))
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A timed-out or reset connection is an ordinary end, not an error worth a log line.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("some HTTP connections were still busy after {} s and were dropped", DRAIN.as_secs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_open_file_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_open_file_limit(limits), Some(1024));
        assert_eq!(parse_open_file_limit("nothing"), None);
        let small = HttpLimits { max_connections: 10_000, ..HttpLimits::default() };
        assert!(small.effective_max_connections() <= 10_000);
    }
}
