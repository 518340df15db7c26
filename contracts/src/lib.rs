//! One contract suite per port. Every adapter must pass the same suite: the embedded ones always,
//! the server-backed ones against their servers (CI starts them). A harness opens the adapter under
//! test; opening it again on the same harness must reach the same durable state (as a restarted
//! process would).
//!
//! An adapter's `tests/contract.rs` is a harness and one macro call per port it implements:
//!
//! ```ignore
//! herald_contracts::queue_contract!(MyHarness::new());
//! ```
//!
//! which expands to one `#[tokio::test]` per case (named as the case, so a failure names it), each
//! on a fresh harness. The cases of a suite are listed once, at the bottom of its module, and a test
//! of this crate checks that list against the case functions the module defines, so a case cannot
//! be written and forgotten: adding one adds it for every adapter. Where a backend may legitimately
//! behave otherwise, the case says so and asks the harness, never skips.
//!
//! The caller needs `tokio` (features `macros`, `rt-multi-thread`) among its dev-dependencies.

pub mod inbox;
pub mod queue;
pub mod search;
pub mod store;

pub use inbox::InboxHarness;
pub use queue::QueueHarness;
pub use search::SearchHarness;
pub use store::{SqlPorts, StoreHarness};

/// Defines a suite's harness macro (`$harness!(factory)`) and `CASES` from the one list of its
/// cases. `$d` is a `$` token, so the macro it defines can have metavariables of its own.
macro_rules! suite {
    ($d:tt $module:ident, $harness:ident, [$($case:ident),* $(,)?]) => {
        /// Every case of this suite, in the order the harness macro expands them.
        pub const CASES: &[&str] = &[$(stringify!($case)),*];

        #[doc = concat!("Runs every case of the `", stringify!($module), "` contract against the harness \
                         `factory` makes (evaluated afresh for each case), one `#[tokio::test]` per case.")]
        #[macro_export]
        macro_rules! $harness {
            ($d factory:expr) => {
                $(
                    #[tokio::test]
                    async fn $case() {
                        let harness = $d factory;
                        $d crate::$module::$case(&harness).await;
                    }
                )*
            };
        }
    };
}
pub(crate) use suite;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The case functions a suite's source defines: every `pub async fn` (helpers are private).
    fn defined(source: &str) -> BTreeSet<&str> {
        source
            .lines()
            .filter_map(|line| line.strip_prefix("pub async fn "))
            .filter_map(|rest| rest.split('(').next())
            .collect()
    }

    fn check(source: &str, listed: &[&str]) {
        let listed: BTreeSet<&str> = listed.iter().copied().collect();
        let defined = defined(source);
        assert!(!defined.is_empty(), "the scan finds the cases");
        let unlisted: Vec<_> = defined.difference(&listed).collect();
        assert!(unlisted.is_empty(), "cases defined but not in the suite's list, so run by no adapter: {unlisted:?}");
        let undefined: Vec<_> = listed.difference(&defined).collect();
        assert!(undefined.is_empty(), "listed cases that are not `pub async fn`s of the suite: {undefined:?}");
    }

    #[test]
    fn every_queue_case_is_listed() {
        check(include_str!("queue.rs"), super::queue::CASES);
    }

    #[test]
    fn every_inbox_case_is_listed() {
        check(include_str!("inbox.rs"), super::inbox::CASES);
    }

    #[test]
    fn every_store_case_is_listed() {
        check(include_str!("store.rs"), super::store::CASES);
    }

    #[test]
    fn every_search_case_is_listed() {
        check(include_str!("search.rs"), super::search::CASES);
    }
}
