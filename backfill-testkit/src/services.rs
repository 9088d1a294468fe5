//! Services a test needs (a broker, a database server, an independent reader), named by
//! environment variables: missing is a loud skip on a developer's machine and a failure in CI.
//!
//! ```no_run
//! // In a test that needs a Kafka broker:
//! let Some(brokers) = backfill_testkit::services::service("MY_TEST_KAFKA_BROKERS", "a Kafka broker")
//! else {
//!     return; // skipped, loudly (in CI, or with BACKFILL_REQUIRE_SERVICES=1, it panics instead)
//! };
//! # let _ = brokers;
//! ```

/// The value of `var` (for example `BACKFILL_TEST_KAFKA_BROKERS`), or `None` after printing a
/// `SKIPPED` line naming `what` is missing.
///
/// # Panics
/// When `var` is unset or empty and the environment requires services (`CI=true` or `CI=1`, or
/// `BACKFILL_REQUIRE_SERVICES=1`): a test that cannot run where it must is a failure, never a pass.
pub fn service(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            let required = ["CI", "BACKFILL_REQUIRE_SERVICES"]
                .iter()
                .any(|k| std::env::var(k).is_ok_and(|v| v == "true" || v == "1"));
            assert!(
                !required,
                "{var} is not set: {what} is required here (scripts/test.sh provides it)"
            );
            eprintln!("SKIPPED: {what} is missing (set {var}, or run scripts/test.sh)");
            None
        }
    }
}
