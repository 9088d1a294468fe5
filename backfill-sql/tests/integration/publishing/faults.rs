//! Crashes on purpose, with the testkit's fault wrappers, plus the one window they cannot reach:
//! a target transaction that committed while the view switch after it never ran (MySQL/MariaDB,
//! whose DDL is not transactional).
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::error::Result;
use backfill_core::evidence::EvidenceKind;
use backfill_core::ids::RunId;
use backfill_core::publish::{
    PublishReceipt, PublishRequest, Publisher, PublisherCapabilities, RollbackRequest,
};
use backfill_core::sink::SinkDescriptor;
use backfill_core::state::RunState;
use backfill_core::store::RunStore;
use backfill_core::Error;
use backfill_sql::SqlPool;
use backfill_testkit::faults::{FaultKind, FaultyPublisher, FaultyStore, PublishFault, StoreFault};

/// Where a publication or a rollback crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// The publisher fails before the target commits anything.
    BeforeCommit,
    /// The target commits, then the call fails (a timeout after commit: unknown outcome).
    AfterCommit,
    /// The target's transaction commits, the view switch after it never runs, the call fails.
    BeforeViewSwitch,
    /// Recording this evidence kind fails.
    Evidence(EvidenceKind),
    /// The first transition into this state fails.
    TransitionTo(RunState),
    /// Moving the store's accepted pointer fails.
    BeforeSwap,
    /// The store's accepted pointer moves, then the call fails.
    AfterSwap,
}

/// The wrappers that inject one crash into a control plane's store or publisher.
#[derive(Debug)]
pub enum Injected<P> {
    Store(Arc<FaultyStore<dyn RunStore>>),
    Publisher(Arc<FaultyPublisher<P>>),
    View(Arc<ViewSwitchLost<P>>),
}

impl<P: Publisher> Injected<P> {
    /// The crash `c`, in a publication (`rollback = false`) or a rollback, around `store` and
    /// `publisher`; `view` names the view readers query (for [`Crash::BeforeViewSwitch`]).
    pub fn new(
        c: Crash,
        rollback: bool,
        store: Arc<dyn RunStore>,
        publisher: Arc<P>,
        pool: &SqlPool,
        view: Option<String>,
    ) -> Self {
        let on_store = |f| {
            Self::Store(Arc::new(FaultyStore::new(
                store.clone(),
                f,
                FaultKind::Fatal,
            )))
        };
        let on_publisher = |f| {
            Self::Publisher(Arc::new(FaultyPublisher::new(
                publisher.clone(),
                f,
                FaultKind::Fatal,
            )))
        };
        match c {
            Crash::BeforeCommit if rollback => on_publisher(PublishFault::RollbackBeforeCommit),
            Crash::BeforeCommit => on_publisher(PublishFault::BeforeCommit),
            Crash::AfterCommit if rollback => on_publisher(PublishFault::RollbackCommitThenFail),
            Crash::AfterCommit => on_publisher(PublishFault::CommitThenFail),
            Crash::BeforeViewSwitch => Self::View(Arc::new(ViewSwitchLost {
                inner: publisher.clone(),
                pool: pool.clone(),
                view,
                fired: AtomicU32::new(0),
            })),
            Crash::Evidence(kind) => on_store(StoreFault::Evidence(kind)),
            Crash::TransitionTo(state) => on_store(StoreFault::TransitionTo(state)),
            Crash::BeforeSwap => on_store(StoreFault::SwapAccepted(0)),
            Crash::AfterSwap => Self::Store(Arc::new(
                FaultyStore::new(store, StoreFault::SwapAccepted(0), FaultKind::Fatal)
                    .after_commit(),
            )),
        }
    }

    /// How many times the crash happened.
    pub fn fired(&self) -> u32 {
        match self {
            Self::Store(s) => s.fired(),
            Self::Publisher(p) => p.fired(),
            Self::View(v) => v.fired.load(Ordering::SeqCst),
        }
    }
}

/// Commits through the wrapped publisher once, then puts the view readers query back as it was
/// and fails: what a crash between the target's transaction and its view switch leaves.
#[derive(Debug)]
pub struct ViewSwitchLost<P> {
    inner: Arc<P>,
    pool: SqlPool,
    view: Option<String>,
    fired: AtomicU32,
}

impl<P: Publisher> ViewSwitchLost<P> {
    async fn around<T>(&self, commit: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        if self.fired.load(Ordering::SeqCst) > 0 {
            return commit.await;
        }
        let before = match &self.view {
            Some(v) => super::view_sql(&self.pool, v).await,
            None => None,
        };
        commit.await?;
        self.fired.fetch_add(1, Ordering::SeqCst);
        if let (Some(v), Some(def)) = (&self.view, &before) {
            super::restore_view(&self.pool, v, def).await;
        }
        Err(Error::adapter(
            "test",
            "crashed between the target's transaction and its view switch",
        ))
    }
}

#[async_trait]
impl<P: Publisher> Publisher for ViewSwitchLost<P> {
    fn descriptor(&self) -> SinkDescriptor {
        self.inner.descriptor()
    }

    fn capabilities(&self) -> PublisherCapabilities {
        self.inner.capabilities()
    }

    async fn publish(&self, req: PublishRequest<'_>) -> Result<PublishReceipt> {
        self.around(self.inner.publish(req)).await
    }

    async fn inspect(&self, run_id: &RunId) -> Result<Option<PublishReceipt>> {
        self.inner.inspect(run_id).await
    }

    async fn rollback(&self, req: RollbackRequest<'_>) -> Result<PublishReceipt> {
        self.around(self.inner.rollback(req)).await
    }

    async fn inspect_rollback(&self, from: &RunId, to: &RunId) -> Result<Option<PublishReceipt>> {
        self.inner.inspect_rollback(from, to).await
    }
}
