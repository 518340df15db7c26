//! SQLite: the embedded SQL truth (`SqliteStore`: receivers, notifications, send ledger), and the
//! plumbing (`db`) that Herald's embedded queue and inbox store share with it, so each SQLite file
//! is opened, tuned, migrated and protected the same way.

mod config;
mod db;
mod private_files;
mod store;

pub use config::SqliteConfig;
pub(crate) use db::failure_of;
pub use db::{Db, ReadLimits, millis, now_millis, open, push_list};
pub use store::SqliteStore;
