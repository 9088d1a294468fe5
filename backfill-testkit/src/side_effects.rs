//! The side-effect guard check: in Backfill, Replay and DryRun a sink with external side effects
//! (live topics, notifications, caches, external APIs) is never written.
//!
//! [`check_side_effect_guard`] runs backfill-core's [`Executor`] with your [`SinkPolicy`] over a small
//! memory scenario whose manifest forbids side effects, once per mode and per position (the forbidden
//! descriptor on the staging sink, then on the publisher), and checks that the run is refused and the
//! forbidden sink received no write. A control run with internal sinks only must not be refused.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use backfill_core::context::{ExecutionMode, FixedClock, TransformContext};
use backfill_core::control::Control;
use backfill_core::digest::OutputRow;
use backfill_core::memory::{MemoryPublisher, MemorySink, MemorySource, MemoryStore};
use backfill_core::policy::SinkPolicy;
use backfill_core::runner::Executor;
use backfill_core::sink::{SinkDescriptor, StagingSink};
use backfill_core::transform::{DeterministicTransform, TransformError};
use backfill_core::ErrorKind;
use chrono::{NaiveDate, TimeZone, Utc};

use crate::conformance::{publisher_of, reader_of, PublishTarget};
use crate::faults::{FaultKind, FaultyPublisher, FaultySink, PublisherCall, SinkFault};
use crate::strategy::valid_manifest;

/// Where the forbidden descriptor was put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// On the staging sink.
    StagingSink,
    /// On the publisher.
    Publisher,
}

/// A broken guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardFailure {
    /// The descriptor passed to the check has no external side effects: nothing to guard.
    NotSideEffecting {
        /// The sink's name.
        sink: String,
    },
    /// The forbidden sink was written.
    Written {
        /// The execution mode.
        mode: ExecutionMode,
        /// The sink's name.
        sink: String,
        /// Where it was.
        position: Position,
        /// Writes it received (stage or publish calls).
        writes: usize,
    },
    /// The run was not refused (even if nothing was written yet).
    NotRefused {
        /// The execution mode.
        mode: ExecutionMode,
        /// The sink's name.
        sink: String,
        /// Where it was.
        position: Position,
        /// What the run returned instead.
        outcome: String,
    },
    /// A run with internal sinks only was refused or failed: the policy refuses too much.
    ControlRefused {
        /// The execution mode.
        mode: ExecutionMode,
        /// The error.
        error: String,
    },
}

impl fmt::Display for GuardFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSideEffecting { sink } => {
                write!(f, "sink `{sink}` has no external side effects: nothing to guard")
            }
            Self::Written {
                mode,
                sink,
                position,
                writes,
            } => write!(
                f,
                "forbidden sink `{sink}` ({position:?}) was written {writes} times in {mode} mode"
            ),
            Self::NotRefused {
                mode,
                sink,
                position,
                outcome,
            } => write!(
                f,
                "a {mode} run with forbidden sink `{sink}` ({position:?}) was not refused: {outcome}"
            ),
            Self::ControlRefused { mode, error } => {
                write!(f, "a {mode} run with internal sinks only failed: {error}")
            }
        }
    }
}

impl std::error::Error for GuardFailure {}

#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    id: String,
    month: String,
    day: NaiveDate,
}

impl OutputRow for Row {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

/// One row per input date; named as [`valid_manifest`] expects.
#[derive(Debug)]
struct Days;

impl DeterministicTransform for Days {
    type Input = NaiveDate;
    type Output = Row;
    fn name(&self) -> &str {
        "test"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    fn apply(
        &self,
        d: &NaiveDate,
        ctx: &TransformContext,
        out: &mut Vec<Row>,
    ) -> Result<(), TransformError> {
        out.push(Row {
            id: ctx.output_id(&[&d.to_string()]),
            month: d.format("%Y-%m").to_string(),
            day: *d,
        });
        Ok(())
    }
}

/// The modes in which side effects are forbidden by default.
pub const GUARDED_MODES: [ExecutionMode; 3] = [
    ExecutionMode::Backfill,
    ExecutionMode::Replay,
    ExecutionMode::DryRun,
];

/// Checks that `policy` keeps a sink described as `forbidden` (which must have external side effects)
/// from being written in Backfill, Replay and DryRun, as staging sink and as publisher, when the
/// manifest forbids side effects; and that it does not refuse internal sinks.
pub async fn check_side_effect_guard(
    policy: Arc<dyn SinkPolicy>,
    forbidden: SinkDescriptor,
) -> Result<(), GuardFailure> {
    if !forbidden.external_side_effects {
        return Err(GuardFailure::NotSideEffecting {
            sink: forbidden.name,
        });
    }
    for mode in GUARDED_MODES {
        control(&policy, mode).await?;
        for position in [Position::StagingSink, Position::Publisher] {
            guarded(&policy, &forbidden, mode, position).await?;
        }
    }
    Ok(())
}

fn day(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, m, d).unwrap_or_default()
}

/// Runs the fixture with `policy`; the manifest's target is the publisher's descriptor name.
async fn run(
    policy: &Arc<dyn SinkPolicy>,
    mode: ExecutionMode,
    sink: Arc<dyn StagingSink<Row>>,
    target: Arc<dyn PublishTarget<Row>>,
    run_id: &str,
) -> backfill_core::Result<backfill_core::control::RunReport> {
    let at = Utc
        .with_ymd_and_hms(2026, 7, 4, 9, 0, 0)
        .single()
        .unwrap_or_default();
    let days: Vec<NaiveDate> = (0..59).map(|i| day(1, 1) + chrono::Days::new(i)).collect();
    let source = MemorySource::by_date(days, |d: &NaiveDate| *d);
    let mut manifest = valid_manifest(run_id, mode, day(1, 1), day(3, 1), None);
    manifest.target.name = target.descriptor().name;
    let approved = manifest.approve("testkit-owner", at)?;
    let control = Control::new(Arc::new(MemoryStore::new()))
        .with_clock(Arc::new(FixedClock(at)))
        .with_target(publisher_of(&target))?;
    let executor = Executor::builder(
        control,
        Arc::new(source),
        Arc::new(Days),
        sink,
        reader_of(&target),
    )
    .policy(Arc::clone(policy))
    .build();
    executor.control().submit(&approved).await?;
    executor.run(approved.run_id()).await
}

async fn control(policy: &Arc<dyn SinkPolicy>, mode: ExecutionMode) -> Result<(), GuardFailure> {
    let sink = Arc::new(MemorySink::new("testkit_staging"));
    let target = Arc::new(MemoryPublisher::new("testkit_target", &sink));
    run(policy, mode, sink, target, "bf-guard-control")
        .await
        .map(|_| ())
        .map_err(|e| GuardFailure::ControlRefused {
            mode,
            error: e.to_string(),
        })
}

async fn guarded(
    policy: &Arc<dyn SinkPolicy>,
    forbidden: &SinkDescriptor,
    mode: ExecutionMode,
    position: Position,
) -> Result<(), GuardFailure> {
    let (sink_descriptor, publisher_descriptor) = match position {
        Position::StagingSink => (
            forbidden.clone(),
            SinkDescriptor::internal("testkit_target", "memory"),
        ),
        Position::Publisher => (
            SinkDescriptor::internal("testkit_staging", "memory"),
            forbidden.clone(),
        ),
    };
    // Pass-through wrappers (their faults never fire) that count writes.
    let staging = Arc::new(MemorySink::<Row>::with_descriptor(sink_descriptor));
    let target = MemoryPublisher::<Row>::with_descriptor(publisher_descriptor, &staging);
    let sink =
        Arc::new(FaultySink::new(staging, SinkFault::AtStageCall(0), FaultKind::Fatal).times(0));
    let publisher = Arc::new(
        FaultyPublisher::new(
            Arc::new(target),
            crate::faults::PublishFault::BeforeCommit,
            FaultKind::Fatal,
        )
        .times(0),
    );
    let result = run(
        policy,
        mode,
        Arc::clone(&sink) as _,
        Arc::clone(&publisher) as _,
        "bf-guard",
    )
    .await;
    let writes = match position {
        Position::StagingSink => sink.stage_calls() as usize,
        Position::Publisher => publisher
            .calls()
            .iter()
            .filter(|c| matches!(c, PublisherCall::Publish { .. }))
            .count(),
    };
    if writes > 0 {
        return Err(GuardFailure::Written {
            mode,
            sink: forbidden.name.clone(),
            position,
            writes,
        });
    }
    match result {
        Err(e) if e.kind() == ErrorKind::Refused => Ok(()),
        other => Err(GuardFailure::NotRefused {
            mode,
            sink: forbidden.name.clone(),
            position,
            outcome: match other {
                Ok(report) => format!("run ended {}", report.state),
                Err(e) => format!("{:?} error: {e}", e.kind()),
            },
        }),
    }
}
