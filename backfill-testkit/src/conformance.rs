//! Shared pieces of the conformance suites: failures, harnesses, the test row, namespaces.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::digest::OutputRow;
use backfill_core::ids::{PartitionKey, RunId};
use backfill_core::publish::{
    PublishReceipt, PublishRequest, Publisher, PublisherCapabilities, RollbackRequest, TargetReader,
};
use backfill_core::sink::{SinkDescriptor, StagingSink};
use backfill_core::store::RunStore;
use futures::stream::BoxStream;

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

/// A publisher together with a reader of the rows its readers see: what the publisher suite and the
/// partial-failure scenarios need of a target.
///
/// Implemented for every type that is both a [`Publisher`] and a [`TargetReader<R>`] (such as
/// [`MemoryPublisher`](backfill_core::memory::MemoryPublisher)); wrap a publisher and a separate
/// reader in [`Paired`]. An `Arc<dyn PublishTarget<R>>` is itself a `Publisher` and a
/// `TargetReader<R>`, so `Arc::new(target.clone())` registers it with a
/// [`Control`](backfill_core::control::Control) or hands it to an
/// [`Executor`](backfill_core::runner::Executor) as the reader.
pub trait PublishTarget<R: OutputRow>: Publisher + TargetReader<R> {}

impl<R: OutputRow, P: Publisher + TargetReader<R> + ?Sized> PublishTarget<R> for P {}

/// A publisher and a separate reader of its target, as one [`PublishTarget`].
pub struct Paired<R> {
    publisher: Arc<dyn Publisher>,
    reader: Arc<dyn TargetReader<R>>,
}

impl<R> Paired<R> {
    /// Pairs `publisher` with `reader`, which reads what readers of the publisher's target see.
    pub fn new(publisher: Arc<dyn Publisher>, reader: Arc<dyn TargetReader<R>>) -> Self {
        Self { publisher, reader }
    }
}

impl<R> fmt::Debug for Paired<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Paired")
            .field("publisher", &self.publisher)
            .field("reader", &self.reader)
            .finish()
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<R: OutputRow> Publisher for Paired<R> {
    fn descriptor(&self) -> SinkDescriptor {
        self.publisher.descriptor()
    }

    fn capabilities(&self) -> PublisherCapabilities {
        self.publisher.capabilities()
    }

    async fn publish(&self, req: PublishRequest<'_>) -> backfill_core::Result<PublishReceipt> {
        self.publisher.publish(req).await
    }

    async fn inspect(&self, run_id: &RunId) -> backfill_core::Result<Option<PublishReceipt>> {
        self.publisher.inspect(run_id).await
    }

    async fn rollback(&self, req: RollbackRequest<'_>) -> backfill_core::Result<PublishReceipt> {
        self.publisher.rollback(req).await
    }

    async fn inspect_rollback(
        &self,
        from: &RunId,
        to: &RunId,
    ) -> backfill_core::Result<Option<PublishReceipt>> {
        self.publisher.inspect_rollback(from, to).await
    }
}

#[deny(clippy::missing_trait_methods)]
impl<R: OutputRow> TargetReader<R> for Paired<R> {
    fn read_current<'a>(
        &'a self,
        partition: &'a PartitionKey,
    ) -> BoxStream<'a, backfill_core::Result<Vec<R>>> {
        self.reader.read_current(partition)
    }
}

/// The untyped publisher of a target, for [`Control::with_target`](backfill_core::control::Control::with_target).
pub fn publisher_of<R: OutputRow>(target: &Arc<dyn PublishTarget<R>>) -> Arc<dyn Publisher> {
    Arc::new(Arc::clone(target))
}

/// The typed reader of a target, for [`Executor::builder`](backfill_core::runner::Executor::builder).
pub fn reader_of<R: OutputRow>(target: &Arc<dyn PublishTarget<R>>) -> Arc<dyn TargetReader<R>> {
    Arc::new(Arc::clone(target))
}

/// Builds a staging sink and the publisher paired with it (one that publishes what the sink staged,
/// from the artifacts of its receipts), per check.
///
/// What the publisher can do is read from its [`capabilities`](Publisher::capabilities): the suite
/// exercises every mutation mode listed there and skips, with a note, what is not.
#[async_trait]
pub trait PublisherHarness: Send + Sync + 'static {
    /// Staging and publisher sharing one fresh namespace.
    async fn build(
        &self,
        namespace: &str,
    ) -> backfill_core::Result<(
        Arc<dyn StagingSink<TestRow>>,
        Arc<dyn PublishTarget<TestRow>>,
    )>;
    /// Drops the namespace. Called only when the check passed.
    async fn teardown(&self, namespace: &str) -> backfill_core::Result<()>;
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

/// Tells the person running the suite that part of a check did not run, and why (a capability the
/// implementation does not declare). Skips are not failures.
pub(crate) fn note(check: &str, what: impl fmt::Display) {
    eprintln!("backfill-testkit: {check}: skipped {what}");
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
