//! What the SSE examples share: an app's stream opened over a bare socket (so thousands stay
//! cheap on the client side), and a percentile.

use std::time::Instant;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Opens one app stream and waits for its `ready`; then reads it in a task of its own for as long
/// as it stays open, telling `hints` when each `hint` arrived.
pub async fn open_stream(
    addr: &str,
    token: &str,
    hints: Option<mpsc::UnboundedSender<Instant>>,
) -> std::io::Result<()> {
    let mut socket = TcpStream::connect(addr).await?;
    let request = format!("GET /app/v1/inbox/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n");
    socket.write_all(request.as_bytes()).await?;
    let mut buffer = vec![0u8; 4096];
    let mut seen = String::new();
    while !seen.contains("event: ready") {
        let n = socket.read(&mut buffer).await?;
        if n == 0 {
            return Err(std::io::Error::other(format!("closed before ready: {seen}")));
        }
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 1024];
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if let Some(hints) = &hints
                        && String::from_utf8_lossy(&buffer[..n]).contains("event: hint")
                    {
                        let _ = hints.send(Instant::now());
                    }
                }
            }
        }
    });
    Ok(())
}

/// The `p` quantile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Sends a direct message to `rider` through the admin API and answers the milliseconds until
/// `hints` (that rider's stream) hears of it.
pub async fn post_to_hint_ms(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    rider: &str,
    hints: &mut mpsc::UnboundedReceiver<Instant>,
) -> anyhow::Result<f64> {
    let body = serde_json::json!({"title": "ping", "body": "ping", "category": "system", "receiver_kind": "rider",
        "audience": {"include": [rider]}});
    let sent = Instant::now();
    http.post(format!("{base}/admin/v1/notifications"))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await?
        .error_for_status()?;
    let hinted = tokio::time::timeout(std::time::Duration::from_secs(30), hints.recv()).await?.expect("stream open");
    Ok(hinted.duration_since(sent).as_secs_f64() * 1000.0)
}
