//! What a transform may know about its run: mode, clock, versions, lineage and deterministic IDs.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{derive_id, RunId};
use crate::manifest::{InputRange, ReferenceData, RunManifest};

pub use crate::mode::ExecutionMode;

/// A source of "now". Inject one; never read the wall clock inside a transform.
///
/// # Contract
/// 1. `now` never panics.
/// 2. A clock handed to a transform context returns the same instant for the whole run
///    ([`FixedClock`]); [`SystemClock`] is for the runner's own bookkeeping (leases, timestamps).
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The current instant according to this clock.
    fn now(&self) -> DateTime<Utc>;
}

/// The system wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock stopped at one instant.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// Lineage stamped on every output row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputLineage {
    /// Producing run.
    pub run_id: RunId,
    /// Execution mode.
    pub mode: ExecutionMode,
    /// Transform name.
    pub transform_name: String,
    /// Transform version.
    pub transform_version: String,
    /// Input snapshot, if pinned.
    pub input_snapshot: Option<String>,
    /// Input range, as text.
    pub input_range: String,
    /// Reference data as `name/version`, comma separated.
    pub reference_data: String,
    /// When the run started (the run's clock, not the wall clock at write time).
    pub produced_at: DateTime<Utc>,
}

/// Everything a deterministic transform may read besides its input.
#[derive(Debug, Clone)]
pub struct TransformContext {
    run_id: RunId,
    mode: ExecutionMode,
    run_started_at: DateTime<Utc>,
    clock: Arc<dyn Clock>,
    transform_version: String,
    config_hash: Option<String>,
    reference_data: Vec<ReferenceData>,
    publish_range: Option<InputRange>,
    lineage: OutputLineage,
}

impl TransformContext {
    /// Records the snapshot planning resolved (not the manifest's text) in the lineage.
    pub fn with_input_snapshot(mut self, snapshot: Option<String>) -> Self {
        if snapshot.is_some() {
            self.lineage.input_snapshot = snapshot;
        }
        self
    }

    /// The context for a manifest, started at `run_started_at`. The clock is fixed at that instant.
    pub fn for_manifest(manifest: &RunManifest, run_started_at: DateTime<Utc>) -> Self {
        let lineage = OutputLineage {
            run_id: manifest.run_id.clone(),
            mode: manifest.mode,
            transform_name: manifest.transform.name.clone(),
            transform_version: manifest.transform.version.clone(),
            input_snapshot: manifest.source.snapshot.clone(),
            input_range: manifest
                .source
                .range
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            reference_data: manifest
                .transform
                .reference_data
                .iter()
                .map(|r| format!("{}/{}", r.name, r.version))
                .collect::<Vec<_>>()
                .join(","),
            produced_at: run_started_at,
        };
        Self {
            run_id: manifest.run_id.clone(),
            mode: manifest.mode,
            run_started_at,
            clock: Arc::new(FixedClock(run_started_at)),
            transform_version: manifest.transform.version.clone(),
            config_hash: manifest.transform.config_hash.clone(),
            reference_data: manifest.transform.reference_data.clone(),
            publish_range: manifest.effective_publish_range().cloned(),
            lineage,
        }
    }

    /// A context for tests: a fixed clock and the given run id and mode, nothing else pinned.
    pub fn fixed(run_id: impl Into<RunId>, mode: ExecutionMode, at: DateTime<Utc>) -> Self {
        let mut m = RunManifest::new(run_id, crate::manifest::RunKind::Backfill, mode);
        m.transform.name = "test".into();
        m.transform.version = "0.0.0".into();
        Self::for_manifest(&m, at)
    }

    /// Replaces the clock (for example to prove a transform does not read it).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the publish range.
    pub fn with_publish_range(mut self, range: Option<InputRange>) -> Self {
        self.publish_range = range;
        self
    }

    /// The run id.
    pub fn run_id(&self) -> &RunId {
        &self.run_id
    }

    /// The execution mode.
    pub fn mode(&self) -> ExecutionMode {
        self.mode
    }

    /// When the run started: the instant to stamp as "processed at".
    pub fn run_started_at(&self) -> DateTime<Utc> {
        self.run_started_at
    }

    /// The injected clock.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// The transform version from the manifest.
    pub fn transform_version(&self) -> &str {
        &self.transform_version
    }

    /// The configuration hash from the manifest.
    pub fn config_hash(&self) -> Option<&str> {
        self.config_hash.as_deref()
    }

    /// Pinned reference data.
    pub fn reference_data(&self) -> &[ReferenceData] {
        &self.reference_data
    }

    /// The pinned version of one reference data set.
    pub fn reference_version(&self, name: &str) -> Option<&str> {
        self.reference_data
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.version.as_str())
    }

    /// The range whose outputs may be published (warm-up input lies outside it).
    pub fn publish_range(&self) -> Option<&InputRange> {
        self.publish_range.as_ref()
    }

    /// Whether an output for this business date may be published. True when no range is set.
    pub fn publishes_date(&self, date: NaiveDate) -> bool {
        self.publish_range
            .as_ref()
            .and_then(|r| r.contains_date(date))
            .unwrap_or(true)
    }

    /// Lineage to stamp on outputs.
    pub fn lineage(&self) -> &OutputLineage {
        &self.lineage
    }

    /// A deterministic output id scoped to this run (see [`derive_id`] for the encoding).
    pub fn output_id(&self, parts: &[&str]) -> String {
        derive_id(self.run_id.as_str(), parts)
    }
}
