//! Macros that expand a suite into one `#[tokio::test]` per check in the caller's crate.

/// One `#[tokio::test]` per run-store check: `store_conformance!(module_name, || harness)`.
#[macro_export]
macro_rules! store_conformance {
    ($name:ident, $harness:expr) => {
        $crate::__conformance_tests!(
            $name,
            $harness,
            store,
            [
                manifests_are_stored_once,
                runs_are_created_once,
                transitions_are_compare_and_set,
                concurrent_transitions_one_wins,
                plans_are_stored_once,
                claims_are_exclusive_and_ordered,
                leases_expire_and_are_fenced,
                claims_stay_within_the_limit,
                evidence_sequence_increases,
                accepted_pointer_is_compare_and_set,
                runs_are_listed_newest_first,
                artifacts_are_stored_with_the_chunk
            ]
        );
    };
}

/// One `#[tokio::test]` per staging-sink check: `sink_conformance!(module_name, || harness)`.
#[macro_export]
macro_rules! sink_conformance {
    ($name:ident, $harness:expr) => {
        $crate::__conformance_tests!(
            $name,
            $harness,
            sink,
            [
                restage_replaces_the_chunk,
                failed_attempt_keeps_previous,
                dropped_attempt_leaves_nothing,
                read_back_is_exact,
                runs_are_isolated,
                discard_is_idempotent,
                stale_attempt_is_fenced
            ]
        );
    };
}

/// One `#[tokio::test]` per publisher check: `publisher_conformance!(module_name, || harness)`.
///
/// Per-mode checks run once for every mutation mode the publisher's `capabilities()` lists; modes
/// and capabilities it does not declare are skipped with a note on stderr.
#[macro_export]
macro_rules! publisher_conformance {
    ($name:ident, $harness:expr) => {
        $crate::__conformance_tests!(
            $name,
            $harness,
            publisher,
            [
                capabilities_are_stable,
                publish_makes_staged_rows_visible,
                publish_is_idempotent,
                publish_is_all_or_nothing,
                inspect_answers_after_publish,
                staged_rows_are_invisible_before_publish,
                replace_changes_only_declared_partitions,
                rollback_restores_the_previous_run,
                rollback_is_idempotent_and_inspectable,
                rollback_works_after_staging_is_discarded
            ]
        );
    };
}

/// One `#[tokio::test]` per source check: `source_conformance!(module_name, || harness)`, where the
/// harness implements [`SourceHarness`](crate::SourceHarness).
#[macro_export]
macro_rules! source_conformance {
    ($name:ident, $harness:expr) => {
        $crate::__conformance_tests!(
            $name,
            $harness,
            source,
            [
                plan_is_deterministic,
                pinned_snapshot_is_honoured,
                chunks_cover_the_input_exactly,
                rereads_are_identical,
                batches_are_not_empty,
                reads_have_no_side_effects
            ]
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($name:ident, $harness:expr, $suite:ident, [$($check:ident),* $(,)?]) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(
                #[$crate::__private::tokio::test(flavor = "multi_thread", worker_threads = 2, crate = "backfill_testkit::__private::tokio")]
                async fn $check() {
                    let harness = ($harness)();
                    if let Err(failure) = $crate::$suite::run_check(&harness, stringify!($check)).await {
                        panic!("{failure}");
                    }
                }
            )*

            #[test]
            fn every_check_of_the_suite_is_expanded() {
                let expanded: &[&str] = &[$(stringify!($check)),*];
                assert_eq!(expanded, $crate::$suite::CHECKS);
            }
        }
    };
}
