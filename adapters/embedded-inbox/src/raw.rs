//! The raw limit `herald bench fanout` measures Herald against: inbox rows written the most direct
//! way this store's engine allows, in the same run.

use std::path::Path;
use std::time::Instant;

use sqlx::{QueryBuilder, Sqlite};

/// Rows per statement: one page.
const PAGE: usize = 500;
/// Pages per commit: grouped commits, as the fastest embedded writers do.
const PAGES_PER_COMMIT: usize = 40;

/// Seconds to write `entries` inbox rows (receiver, notification, version) into a fresh SQLite file
/// at `path` with this store's settings: pages of 500 rows as one multi-row `INSERT`, 40 pages per
/// commit, nothing else (no counters, no page ledger, no queue).
pub async fn raw_write_seconds(path: &Path, entries: u64) -> anyhow::Result<f64> {
    let db = herald_sqlite::open(
        path,
        &[(
            1,
            "CREATE TABLE entries (receiver TEXT NOT NULL, notification_id TEXT NOT NULL, version INTEGER NOT NULL, \
             PRIMARY KEY (receiver, notification_id)) WITHOUT ROWID",
        )],
    )
    .await?;
    let receivers: Vec<String> = (0..entries).map(|i| format!("rider:r{i:09}")).collect();
    let started = Instant::now();
    for commit in receivers.chunks(PAGE * PAGES_PER_COMMIT) {
        let mut tx = db.begin_write().await?;
        for page in commit.chunks(PAGE) {
            let mut qb = QueryBuilder::<Sqlite>::new("INSERT INTO entries (receiver, notification_id, version) ");
            qb.push_values(page.iter().enumerate(), |mut row, (i, receiver)| {
                row.push_bind(receiver.as_str()).push_bind("raw").push_bind(i as i64);
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    Ok(started.elapsed().as_secs_f64())
}
