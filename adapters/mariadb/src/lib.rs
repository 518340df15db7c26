//! MariaDB / MySQL: the SQL truth (`MariaDbStore`: receivers, notifications, send ledger) on a
//! server, so several Herald processes — schedulers included — share one truth.

mod config;
mod databases;
mod db;
mod naive;
mod store;

pub use config::MariaDbConfig;
pub use databases::{create_database, database_url, drop_database};
pub use db::ReadLimits;
pub use naive::naive_inbox_write_seconds;
pub use store::MariaDbStore;
