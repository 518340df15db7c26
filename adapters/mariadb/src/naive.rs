//! The naive inbox `herald bench fanout --peer naive-mysql` measures Herald against: the design the
//! seed systems abandoned, one InnoDB row per receiver, written in 500-row multi-row `INSERT`s.

use std::time::Instant;

use sqlx::{Connection as _, MySql, MySqlConnection, QueryBuilder};

/// Rows per `INSERT`.
const ROWS_PER_INSERT: usize = 500;

/// Seconds to write `rows` inbox rows (receiver, notification, created) into a scratch InnoDB table
/// (`bench_naive_inbox`, a name no Herald table has) in the database `url` names, 500 rows per autocommitted `INSERT` from one connection; the table
/// is dropped afterwards, whether the writes succeeded or not.
pub async fn naive_inbox_write_seconds(url: &str, rows: u64) -> anyhow::Result<f64> {
    let mut conn = MySqlConnection::connect(url).await?;
    sqlx::raw_sql("DROP TABLE IF EXISTS bench_naive_inbox").execute(&mut conn).await?;
    sqlx::raw_sql(
        "CREATE TABLE bench_naive_inbox (receiver VARCHAR(64) NOT NULL, notification_id CHAR(26) NOT NULL, \
         created_at BIGINT NOT NULL, PRIMARY KEY (receiver, notification_id)) ENGINE=InnoDB",
    )
    .execute(&mut conn)
    .await?;
    let written = write(&mut conn, rows).await;
    sqlx::raw_sql("DROP TABLE bench_naive_inbox").execute(&mut conn).await?;
    written
}

async fn write(conn: &mut MySqlConnection, rows: u64) -> anyhow::Result<f64> {
    let receivers: Vec<String> = (0..rows).map(|i| format!("rider:r{i:09}")).collect();
    let started = Instant::now();
    for chunk in receivers.chunks(ROWS_PER_INSERT) {
        let mut qb =
            QueryBuilder::<MySql>::new("INSERT INTO bench_naive_inbox (receiver, notification_id, created_at) ");
        qb.push_values(chunk.iter().enumerate(), |mut row, (i, receiver)| {
            row.push_bind(receiver.as_str()).push_bind("01NAIVEPEER000000000000000").push_bind(i as i64);
        });
        qb.build().execute(&mut *conn).await?;
    }
    Ok(started.elapsed().as_secs_f64())
}
