//! Shared fixtures for backfill-core's integration tests.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::clone_on_ref_ptr)]

use std::borrow::Cow;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::memory::{MemoryPublisher, MemorySink, MemorySource, MemoryStore};
use backfill_core::prelude::*;
use backfill_core::sink::{StageReceipt, StageRequest};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

pub fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 4, 9, 0, 0)
        .single()
        .expect("valid instant")
}

/// An input event: an account's amount on a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub day: NaiveDate,
    pub account: String,
    pub cents: i64,
}

/// An output row, partitioned by month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub id: String,
    pub account: String,
    pub day: NaiveDate,
    pub month: String,
    pub cents: i64,
    pub run_id: String,
}

impl OutputRow for Row {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

/// Doubles amounts (or multiplies by `factor`); ids derive from account and day.
#[derive(Debug, Clone)]
pub struct Scale {
    pub factor: i64,
    pub version: &'static str,
}

impl Default for Scale {
    fn default() -> Self {
        Self {
            factor: 2,
            version: "1.0.0",
        }
    }
}

impl DeterministicTransform for Scale {
    type Input = Event;
    type Output = Row;

    fn name(&self) -> &str {
        "scale"
    }

    fn version(&self) -> &str {
        self.version
    }

    fn apply(
        &self,
        e: &Event,
        ctx: &TransformContext,
        out: &mut Vec<Row>,
    ) -> Result<(), TransformError> {
        out.push(Row {
            id: ctx.output_id(&[&e.account, &e.day.to_string()]),
            account: e.account.clone(),
            day: e.day,
            month: e.day.format("%Y-%m").to_string(),
            cents: e.cents * self.factor,
            run_id: ctx.run_id().to_string(),
        });
        Ok(())
    }
}

/// 90 days of events for three accounts, January to March 2025.
pub fn events() -> Vec<Event> {
    let mut v = Vec::new();
    for i in 0..90u64 {
        let d = day(2025, 1, 1) + chrono::Days::new(i);
        for (n, acct) in ["A-1", "B-2", "C-3"].iter().enumerate() {
            v.push(Event {
                day: d,
                account: (*acct).to_owned(),
                cents: i as i64 * 10 + n as i64,
            });
        }
    }
    v
}

pub fn source() -> MemorySource<Event> {
    MemorySource::by_date(events(), |e: &Event| e.day)
        .batch_size(16)
        .snapshot("s-1")
}

/// A manifest that passes `check`: Q1 2025, replace partitions, no side effects, checksums.
pub fn manifest(run_id: &str) -> RunManifest {
    let mut m = RunManifest::new(run_id, RunKind::Restatement, ExecutionMode::Backfill);
    m.reason = "fix amounts".into();
    m.requested_by = "data-platform".into();
    m.source = SourceSpec {
        kind: "memory".into(),
        name: "events".into(),
        snapshot: Some("s-1".into()),
        range: Some(InputRange::Dates {
            from: day(2025, 1, 1),
            to_exclusive: day(2025, 4, 1),
        }),
        ..SourceSpec::default()
    };
    m.transform.name = "scale".into();
    m.transform.version = "1.0.0".into();
    m.transform.git_commit = Some("8d91ab7".into());
    m.target = TargetSpec {
        kind: "memory".into(),
        name: "amounts_daily".into(),
        mutation: Some(Mutation::ReplacePartitions),
        partitions: vec!["2025-01".into(), "2025-02".into(), "2025-03".into()],
        consumers: vec!["finance-report".into()],
        ..Default::default()
    };
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.safety.max_rows_expected = Some(10_000);
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        count_tolerance: Some(0),
        ..Default::default()
    });
    m
}

pub fn approve(m: RunManifest) -> ApprovedManifest {
    m.approve("owner", at()).expect("approvable manifest")
}

/// The parts of a runner, kept so tests can look inside.
pub struct Parts {
    pub store: Arc<MemoryStore>,
    pub sink: Arc<MemorySink<Row>>,
    pub publisher: Arc<MemoryPublisher<Row>>,
}

impl Parts {
    pub fn new() -> Self {
        let sink = Arc::new(MemorySink::new("staging"));
        let publisher = Arc::new(MemoryPublisher::new("amounts_daily", &sink));
        Self {
            store: Arc::new(MemoryStore::new()),
            sink,
            publisher,
        }
    }

    /// The run the target's accepted pointer names (panics when it names none).
    pub async fn accepted_run(&self) -> RunId {
        self.store
            .accepted("amounts_daily")
            .await
            .expect("pointer read")
            .expect("an accepted run")
            .run_id
    }

    /// The control plane over this store and target, at the fixed clock.
    pub fn control(&self) -> Control {
        Control::new(self.store.clone())
            .with_clock(Arc::new(FixedClock(at())))
            .with_target(self.publisher.clone())
            .expect("one target")
    }

    pub fn runner(
        &self,
        source: Arc<MemorySource<Event>>,
        transform: Scale,
    ) -> backfill_core::runner::ExecutorBuilder<Scale> {
        self.runner_with_sink(source, transform, self.sink.clone())
    }

    pub fn runner_with_sink(
        &self,
        source: Arc<MemorySource<Event>>,
        transform: Scale,
        sink: Arc<dyn StagingSink<Row>>,
    ) -> backfill_core::runner::ExecutorBuilder<Scale> {
        Executor::builder(
            self.control(),
            source,
            Arc::new(transform),
            sink,
            self.publisher.clone(),
        )
    }
}

/// A staging sink that fails while staging the `fail_at`-th chunk (0-based count of stage calls),
/// `times` times, with a transient or permanent error; otherwise delegates.
#[derive(Debug)]
pub struct FailingSink {
    pub inner: Arc<MemorySink<Row>>,
    pub fail_at: u32,
    pub times: u32,
    pub transient: bool,
    /// Ask the run to pause (an adapter's [`ErrorKind::Paused`]) instead of failing.
    pub pause: bool,
    /// Fail with a conflict that is not a lost lease (input changed under the chunk).
    pub conflict: bool,
    /// Read the chunk's rows to the end before failing (the attempt counted them all).
    pub read_all: bool,
    pub calls: AtomicU32,
    pub failures: AtomicU32,
}

impl FailingSink {
    pub fn new(inner: Arc<MemorySink<Row>>, fail_at: u32, times: u32, transient: bool) -> Self {
        Self {
            inner,
            fail_at,
            times,
            transient,
            pause: false,
            conflict: false,
            read_all: false,
            calls: AtomicU32::new(0),
            failures: AtomicU32::new(0),
        }
    }

    /// The injected failures are conflicts that are not a lost lease.
    pub fn conflicting(mut self) -> Self {
        self.conflict = true;
        self
    }

    /// The injected failures ask the run to pause instead.
    pub fn pausing(mut self) -> Self {
        self.pause = true;
        self
    }

    /// The failing attempts read every row of their chunk first.
    pub fn after_reading(mut self) -> Self {
        self.read_all = true;
        self
    }
}

#[derive(Debug, thiserror::Error)]
#[error("injected sink failure")]
pub struct Injected;

#[async_trait]
impl StagingSink<Row> for FailingSink {
    fn descriptor(&self) -> SinkDescriptor {
        self.inner.descriptor()
    }

    async fn stage(
        &self,
        req: StageRequest<'_>,
        rows: BoxStream<'_, backfill_core::Result<Vec<Row>>>,
    ) -> backfill_core::Result<StageReceipt> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call >= self.fail_at && self.failures.load(Ordering::SeqCst) < self.times {
            self.failures.fetch_add(1, Ordering::SeqCst);
            if self.read_all {
                let read: Vec<Vec<Row>> = futures::TryStreamExt::try_collect(rows).await?;
                assert!(!read.is_empty(), "the failing attempt read rows");
            }
            return Err(if self.conflict {
                Error::Conflict {
                    run_id: req.run_id.clone(),
                    what: "input file".into(),
                    expected: "the planned content".into(),
                    found: "other content".into(),
                }
            } else if self.pause {
                Error::paused("test", "vendor asks to wait")
            } else if self.transient {
                Error::transient("test", Injected)
            } else {
                Error::adapter("test", Injected)
            });
        }
        self.inner.stage(req, rows).await
    }

    fn read_staged<'a>(
        &'a self,
        run_id: &'a RunId,
    ) -> BoxStream<'a, backfill_core::Result<Vec<Row>>> {
        self.inner.read_staged(run_id)
    }

    async fn discard(&self, run_id: &RunId) -> backfill_core::Result<()> {
        self.inner.discard(run_id).await
    }
}

/// A current-thread runtime for tests that install thread-local recorders or subscribers.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Submits and runs one approved run over the fixtures.
pub async fn run_one(id: &str) -> RunReport {
    let parts = Parts::new();
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    let approved = approve(manifest(id));
    runner.control().submit(&approved).await.unwrap();
    runner.run(approved.run_id()).await.unwrap()
}
