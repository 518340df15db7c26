//! Adapters: one folder per backend, each implementing the ports of `herald_domain::ports`.

pub mod embedded_inbox;
pub mod embedded_queue;
pub mod sqlite;
