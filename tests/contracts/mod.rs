//! One contract suite per port. Every adapter must pass the same suite: the embedded ones here,
//! the server-backed ones wherever their servers are reachable. A harness opens the adapter; opening
//! it again on the same harness must reach the same durable state (as a restarted process would).
#![allow(dead_code)]

pub mod inbox;
pub mod queue;
pub mod store;

/// Generates one `#[tokio::test]` per contract case for one adapter.
#[macro_export]
macro_rules! contract_tests {
    ($suite:ident, $harness:expr, [$($case:ident),* $(,)?]) => {
        $(
            #[tokio::test]
            async fn $case() {
                let harness = $harness;
                contracts::$suite::$case(&harness).await;
            }
        )*
    };
}
