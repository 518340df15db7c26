//! Measures the SQL truth on a MariaDB / MySQL server: rows/s of a receiver import (batches of
//! 5,000, as `herald receivers import` writes them) and keyset page reads/s (pages of 500 of one
//! city, as the scheduler reads them), for `RECEIVERS` receivers (default 1,000,000) in `CITIES`
//! cities (default 300). Each run imports into a fresh database (`herald_bench_<random>`, dropped
//! afterwards) on the server of `HERALD_TEST_MYSQL_URL`; `RUNS` runs (default 3), medians printed.
//!
//! `HERALD_TEST_MYSQL_URL=$(scripts/mariadb-user.sh) cargo run --release -p herald-mariadb --example keyset_bench`

use std::time::Instant;

use herald_domain::ports::ReceiverDirectory;
use herald_domain::{City, Group, Receiver, ReceiverId, ReceiverKind, Selection};
use herald_mariadb::{MariaDbConfig, MariaDbStore};
use sqlx::Connection as _;

const BATCH: usize = 5_000;
const PAGE: usize = 500;

fn number(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

async fn admin(url: &str, sql: String) -> anyhow::Result<()> {
    let mut conn = sqlx::MySqlConnection::connect(url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("HERALD_TEST_MYSQL_URL")
        .map_err(|_| anyhow::anyhow!("set HERALD_TEST_MYSQL_URL (scripts/mariadb-user.sh prints one)"))?;
    let base = &url[..url.rfind('/').filter(|&i| i > url.find("://").unwrap_or(0) + 2).unwrap_or(url.len())];
    let (receivers, cities, runs) = (number("RECEIVERS", 1_000_000), number("CITIES", 300), number("RUNS", 3));
    let city_names: Vec<City> = (0..cities).map(|c| City::parse("city", &format!("city{c:03}")).unwrap()).collect();
    let vip = Group::parse("group", "vip").unwrap();
    let (mut imports, mut reads) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let database = format!("herald_bench_{:016x}", rand::random::<u64>());
        admin(&url, format!("CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")).await?;
        let store = MariaDbStore::open(&MariaDbConfig::new(&format!("{base}/{database}"))).await?;

        // One receiver in ten is in a group, as a real directory's few segments.
        let started = Instant::now();
        for first in (0..receivers).step_by(BATCH) {
            let batch: Vec<Receiver> = (first..(first + BATCH).min(receivers))
                .map(|i| {
                    let groups = if i % 10 == 0 { vec![vip.clone()] } else { vec![] };
                    let id = ReceiverId::parse("id", &format!("r{i:08}")).unwrap();
                    Receiver::new(ReceiverKind::Rider, id, city_names[i % cities].clone(), groups).unwrap()
                })
                .collect();
            store.upsert_receivers(&batch).await?;
        }
        let import_rows_per_s = receivers as f64 / started.elapsed().as_secs_f64();

        let everyone = Selection::everyone();
        let (started, mut pages, mut seen) = (Instant::now(), 0u64, 0usize);
        for city in &city_names {
            let mut after: Option<ReceiverId> = None;
            loop {
                let page = store.page_selection(ReceiverKind::Rider, &everyone, city, after.as_ref(), PAGE).await?;
                pages += 1;
                seen += page.len();
                if page.len() < PAGE {
                    break;
                }
                after = page.last().cloned();
            }
        }
        anyhow::ensure!(seen == receivers, "paged {seen} receivers of {receivers}");
        let pages_per_s = pages as f64 / started.elapsed().as_secs_f64();
        println!("run {run}: import {import_rows_per_s:.0} rows/s; keyset {pages_per_s:.0} pages/s ({pages} pages)");
        imports.push(import_rows_per_s);
        reads.push(pages_per_s);
        drop(store);
        admin(&url, format!("DROP DATABASE `{database}`")).await?;
    }
    println!(
        "{receivers} receivers in {cities} cities, {runs} runs: import median {:.0} rows/s; keyset page reads median \
         {:.0} pages/s",
        median(imports),
        median(reads)
    );
    Ok(())
}
