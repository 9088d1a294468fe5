//! Shared pieces of the conformance suites: failures, harnesses, the test row, namespaces.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::digest::OutputRow;
use backfill_core::manifest::Mutation;
use backfill_core::publish::Publisher;
use backfill_core::sink::StagingSink;
use backfill_core::store::RunStore;

/// A contract clause an implementation broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConformanceFailure {
    /// The check's name.
    pub check: &'static str,
    /// The contract clause, as in the trait's `# Contract` section.
    pub clause: &'static str,
    /// What was observed.
    pub details: String,
}

impl fmt::Display for ConformanceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violates \"{}\": {}",
            self.check, self.clause, self.details
        )
    }
}

impl std::error::Error for ConformanceFailure {}

/// The outcome of one check.
pub type CheckResult = Result<(), ConformanceFailure>;

/// A row type the sink and publisher suites write. Adapters must be able to store it.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct TestRow {
    /// Unique id.
    pub id: String,
    /// Publish partition.
    pub partition: String,
    /// Business key.
    pub key: String,
    /// A value.
    pub value: i64,
    /// An optional note.
    pub note: Option<String>,
}

impl OutputRow for TestRow {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.partition)
    }
}

/// Builds a fresh run store per check.
#[async_trait]
pub trait StoreHarness: Send + Sync + 'static {
    /// A fresh, empty store isolated under `namespace`.
    async fn build(&self, namespace: &str) -> backfill_core::Result<Arc<dyn RunStore>>;
    /// Drops the namespace. Called only when the check passed.
    async fn teardown(&self, namespace: &str) -> backfill_core::Result<()>;
}

/// Builds a fresh staging sink per check.
#[async_trait]
pub trait SinkHarness: Send + Sync + 'static {
    /// A fresh, empty sink isolated under `namespace`.
    async fn build(&self, namespace: &str) -> backfill_core::Result<Arc<dyn StagingSink<TestRow>>>;
    /// Drops the namespace. Called only when the check passed.
    async fn teardown(&self, namespace: &str) -> backfill_core::Result<()>;
}

/// Builds a staging sink and a publisher that reads what it staged, per check.
#[async_trait]
pub trait PublisherHarness: Send + Sync + 'static {
    /// Staging and publisher sharing one fresh namespace.
    async fn build(
        &self,
        namespace: &str,
    ) -> backfill_core::Result<(Arc<dyn StagingSink<TestRow>>, Arc<dyn Publisher<TestRow>>)>;
    /// Drops the namespace. Called only when the check passed.
    async fn teardown(&self, namespace: &str) -> backfill_core::Result<()>;
    /// Mutations the publisher supports.
    fn mutations(&self) -> Vec<Mutation> {
        vec![Mutation::ReplacePartitions]
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique namespace name for a check: `bt_<check>_<pid>_<n>`, at most 63 characters, made of
/// lower-case letters, digits and underscores (valid as a schema, database or file name).
pub fn namespace_for(check: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let suffix = format!("_{}_{n}", std::process::id());
    let room = 63 - 3 - suffix.len();
    let check: String = check
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(room)
        .collect();
    format!("bt_{check}{suffix}").to_ascii_lowercase()
}

pub(crate) fn fail(
    check: &'static str,
    clause: &'static str,
    details: impl Into<String>,
) -> ConformanceFailure {
    ConformanceFailure {
        check,
        clause,
        details: details.into(),
    }
}

/// Turns an unexpected error into a failure of the check.
pub(crate) fn op<T>(
    check: &'static str,
    what: &str,
    r: backfill_core::Result<T>,
) -> Result<T, ConformanceFailure> {
    r.map_err(|e| {
        fail(
            check,
            "operations succeed on a healthy backend",
            format!("{what}: {e}"),
        )
    })
}

pub(crate) fn ensure(
    cond: bool,
    check: &'static str,
    clause: &'static str,
    details: impl FnOnce() -> String,
) -> CheckResult {
    if cond {
        Ok(())
    } else {
        Err(fail(check, clause, details()))
    }
}

/// After a check: tears the namespace down on success, keeps it (and says so) on failure.
pub(crate) async fn finish(
    check: &'static str,
    ns: &str,
    result: CheckResult,
    teardown: impl std::future::Future<Output = backfill_core::Result<()>>,
) -> CheckResult {
    match &result {
        Ok(()) => op(check, "tearing down", teardown.await)?,
        Err(_) => {
            eprintln!("backfill-testkit: {check} failed; namespace `{ns}` kept for inspection")
        }
    }
    result
}

/// The failure for a check name a suite does not have.
pub(crate) fn unknown(check: &str) -> ConformanceFailure {
    ConformanceFailure {
        check: "unknown",
        clause: "the suite has a check of this name",
        details: format!("no check named `{check}`"),
    }
}

/// Declares a suite: `CHECKS`, a dispatcher from name to check function, and `run_check`/`run_all`
/// over a harness (`$build` turns the harness and a namespace into the value checks take).
macro_rules! suite {
    ($harness:ident, $built:ty, $arg:ty, |$h:ident, $ns:ident| $build:expr, |$b:ident| $target:expr; $($check:ident),* $(,)?) => {
        /// The checks of this suite, by name.
        pub const CHECKS: &[&str] = &[$(stringify!($check)),*];

        /// Runs one check with a fresh namespace from `harness`; the namespace is torn down only when
        /// the check passes.
        pub async fn run_check<H: $harness + ?Sized>(harness: &H, check: &str) -> CheckResult {
            let ns = $crate::namespace_for(check);
            let name = CHECKS.iter().find(|c| **c == check).copied().ok_or_else(|| unknown(check))?;
            let built: $built = {
                let $h = harness;
                let $ns = ns.as_str();
                op(name, "building the harness", $build.await)?
            };
            let $b = &built;
            let (name, result) = dispatch(check, $target).await.ok_or_else(|| unknown(check))?;
            finish(name, &ns, result, harness.teardown(&ns)).await
        }

        /// Runs every check of the suite.
        pub async fn run_all<H: $harness + ?Sized>(harness: &H) -> Vec<(&'static str, CheckResult)> {
            let mut out = Vec::new();
            for c in CHECKS {
                out.push((*c, run_check(harness, c).await));
            }
            out
        }

        async fn dispatch(name: &str, target: $arg) -> Option<(&'static str, CheckResult)> {
            match name {
                $(stringify!($check) => Some((stringify!($check), $check(target).await)),)*
                _ => None,
            }
        }
    };
}
pub(crate) use suite;
