//! Herald: the `herald` binary's library — adapters, HTTP API, configuration and wiring.

pub mod adapters;
pub mod auth;
pub mod bench;
pub mod config;
pub mod duration;
pub mod http;
pub mod import;
pub mod observed;
pub mod private_files;
pub mod reindex;
pub mod server;
pub mod startup;
pub mod telemetry;
