//! The run store: a backfill's durable memory (manifests, runs, transitions, chunk ledger, evidence,
//! accepted-output pointers).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::context::ExecutionMode;
use crate::digest::PartitionDigests;
use crate::error::Result;
use crate::ids::{ChunkId, RunId};
use crate::manifest::{InputRange, ManifestDigest, StoredManifest};
use crate::plan::ResolvedPlan;
use crate::sink::StagedArtifact;
use crate::state::{RunState, Transition};

pub use crate::evidence::{Evidence, EvidenceKind, EvidenceRecord};

/// One run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run.
    pub run_id: RunId,
    /// Manifest version it executes.
    pub manifest_version: u32,
    /// Digest of that manifest.
    pub manifest_digest: ManifestDigest,
    /// Target (data product) name.
    pub target: String,
    /// Execution mode.
    pub mode: ExecutionMode,
    /// Who asked for the run (the manifest's `requested_by`).
    #[serde(default)]
    pub requested_by: String,
    /// Current state.
    pub state: RunState,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Last transition at.
    pub updated_at: DateTime<Utc>,
}

/// Ledger status of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkStatus {
    /// Not started.
    Pending,
    /// Leased by a worker.
    Claimed,
    /// Staged and recorded.
    Done,
    /// Last attempt failed.
    Failed,
}

impl ChunkStatus {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Claimed => "claimed",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// Parses [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Claimed, Self::Done, Self::Failed]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// The ledger row of a chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// The run.
    pub run_id: RunId,
    /// The chunk.
    pub chunk_id: ChunkId,
    /// Position in the plan.
    pub index: u32,
    /// Exact input range.
    pub range: InputRange,
    /// Status.
    pub status: ChunkStatus,
    /// Claims so far.
    pub attempts: u32,
    /// Worker holding or last holding the lease.
    pub worker: Option<String>,
    /// When the lease ends.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Input records read by the successful attempt.
    pub input_count: u64,
    /// Output rows staged by the successful attempt.
    pub output_count: u64,
    /// Per-partition digests of the staged rows.
    pub digests: PartitionDigests,
    /// What the successful attempt staged, for the publisher.
    #[serde(default)]
    pub artifact: StagedArtifact,
    /// The [digest format](crate::digest::DIGEST_FORMAT_VERSION) the digests were computed with.
    #[serde(default = "format_one")]
    pub digest_format: u32,
    /// Last error message.
    pub last_error: Option<String>,
    /// First claim.
    pub started_at: Option<DateTime<Utc>>,
    /// Done at.
    pub finished_at: Option<DateTime<Utc>>,
}

impl ChunkRecord {
    /// The lease of the chunk's current claim: `Some` while it is `Claimed` (expired or not).
    pub fn current_lease(&self) -> Option<ChunkLease> {
        match (self.status, &self.worker, self.lease_expires_at) {
            (ChunkStatus::Claimed, Some(worker), Some(expires_at)) => Some(ChunkLease {
                run_id: self.run_id.clone(),
                chunk_id: self.chunk_id.clone(),
                index: self.index,
                range: self.range.clone(),
                attempt: self.attempts,
                worker: worker.clone(),
                expires_at,
            }),
            _ => None,
        }
    }
}

/// A worker's lease on a chunk. The attempt number fences stale workers out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkLease {
    /// The run.
    pub run_id: RunId,
    /// The chunk.
    pub chunk_id: ChunkId,
    /// Position in the plan.
    pub index: u32,
    /// Exact input range.
    pub range: InputRange,
    /// Attempt number of this claim (1-based).
    pub attempt: u32,
    /// The worker.
    pub worker: String,
    /// Lease end.
    pub expires_at: DateTime<Utc>,
}

/// What a finished chunk recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkOutcome {
    /// Input records read.
    pub input_count: u64,
    /// Output rows staged.
    pub output_count: u64,
    /// Per-partition digests.
    pub digests: PartitionDigests,
    /// What the sink staged.
    #[serde(default)]
    pub artifact: StagedArtifact,
    /// The [digest format](crate::digest::DIGEST_FORMAT_VERSION) of `digests`.
    #[serde(default = "format_one")]
    pub digest_format: u32,
}

impl Default for ChunkOutcome {
    /// Nothing read or staged yet, digests in this release's format.
    fn default() -> Self {
        Self {
            input_count: 0,
            output_count: 0,
            digests: PartitionDigests::default(),
            artifact: StagedArtifact::default(),
            digest_format: crate::digest::DIGEST_FORMAT_VERSION,
        }
    }
}

/// Ledger rows written before formats were recorded used format 1 (JSON rows).
fn format_one() -> u32 {
    1
}

/// The accepted run of a target (data product).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedPointer {
    /// Target name.
    pub target: String,
    /// Accepted run.
    pub run_id: RunId,
    /// When.
    pub accepted_at: DateTime<Utc>,
    /// By whom.
    pub accepted_by: String,
}

/// Durable state of runs. Every mutation that can race is a compare-and-set.
///
/// # Contract
/// 1. `put_manifest` stores bytes as given; storing the same `(run, version)` again with the same digest
///    is a no-op, with another digest a [`Error::Conflict`](crate::Error::Conflict).
/// 2. `create_run` fails with `Conflict` when the run exists.
/// 3. `transition` succeeds only when the stored state equals `t.from` (atomically) and then appends `t`
///    to the run's transitions; otherwise `Conflict` and nothing changes.
/// 4. `put_plan` stores the plan and one `Pending` ledger row per chunk; repeating it with the same work
///    is a no-op, with different work a `Conflict`.
/// 5. `claim_chunk` atomically leases the lowest-index chunk that is `Pending`, `Failed`, or `Claimed`
///    with an expired lease or by the same worker, increments its attempts and returns the lease;
///    `None` when no chunk is claimable. Two concurrent claims never get the same chunk and attempt.
/// 6. `heartbeat`, `complete_chunk` and `fail_chunk` succeed only for the current lease (same worker and
///    attempt, status `Claimed`); a stale lease gets `Conflict`. `Done` chunks are never claimed again.
/// 7. `append_evidence` assigns increasing sequence numbers per run; evidence is never changed.
/// 8. `swap_accepted` sets the pointer only if the current accepted run equals `expected`, atomically.
/// 9. `runs` lists runs matching the filter, newest first (by `created_at`, then run id).
/// 10. `complete_chunk` stores the outcome's artifact and digest format with the ledger row; `chunks`
///     returns them.
/// 11. `claim_chunk_within` leases the lowest-index chunk that is `Pending`, `Failed`, or `Claimed`
///     with an expired lease, and claims nothing while `max_leased` chunks of the run hold unexpired
///     leases, whoever holds them (the claimer included), atomically: concurrent claimers on any
///     number of processes never lease more than `max_leased` chunks at once. Unlike `claim_chunk`
///     it never takes an unexpired lease back, not even the claimer's own: processes may share a
///     worker id, and a live one's lease is not a dead one's. A restarted worker gives its
///     predecessor's leases back with `fail_chunk` first (the runner does, once, at start).
///     (The default implementation counts and then claims, which is not atomic across processes,
///     and claims nothing while the claimer holds an unexpired lease; stores shared by processes
///     override it.)
/// 12. `take_budget` applies [`Budget::take`](crate::budget::Budget::take) to the run's stored
///     bucket of that name atomically and returns the wait; every worker of the run shares it.
#[async_trait]
pub trait RunStore: fmt::Debug + Send + Sync + 'static {
    /// Stores a manifest version.
    async fn put_manifest(&self, manifest: &StoredManifest) -> Result<()>;
    /// The manifest of a run.
    async fn manifest(&self, run_id: &RunId) -> Result<Option<StoredManifest>>;
    /// Creates a run.
    async fn create_run(&self, run: &RunRecord) -> Result<()>;
    /// Reads a run.
    async fn run(&self, run_id: &RunId) -> Result<Option<RunRecord>>;
    /// Compare-and-set of the run state, recording the transition.
    async fn transition(&self, t: &Transition) -> Result<()>;
    /// Every recorded transition of a run, in order.
    async fn transitions(&self, run_id: &RunId) -> Result<Vec<Transition>>;
    /// Persists the resolved plan and its ledger rows.
    async fn put_plan(&self, plan: &ResolvedPlan) -> Result<()>;
    /// The persisted plan.
    async fn plan(&self, run_id: &RunId) -> Result<Option<ResolvedPlan>>;
    /// Leases the next claimable chunk.
    async fn claim_chunk(
        &self,
        run_id: &RunId,
        worker: &str,
        now: DateTime<Utc>,
        lease_for: Duration,
    ) -> Result<Option<ChunkLease>>;
    /// Leases the next claimable chunk unless `max_leased` chunks of the run are leased already
    /// (the manifest's `max_chunks_in_parallel`, run-wide).
    async fn claim_chunk_within(
        &self,
        run_id: &RunId,
        worker: &str,
        now: DateTime<Utc>,
        lease_for: Duration,
        max_leased: u32,
    ) -> Result<Option<ChunkLease>> {
        let chunks = self.chunks(run_id).await?;
        let live = || {
            chunks.iter().filter(|c| {
                c.status == ChunkStatus::Claimed && c.lease_expires_at.is_some_and(|t| t > now)
            })
        };
        // `claim_chunk` would take the claimer's own unexpired lease back: wait for it instead.
        if live().count() >= max_leased as usize
            || live().any(|c| c.worker.as_deref() == Some(worker))
        {
            return Ok(None);
        }
        self.claim_chunk(run_id, worker, now, lease_for).await
    }
    /// Takes `amount` units from the run-wide `budget` (see [`crate::budget`]); returns how long the
    /// caller waits before using them.
    async fn take_budget(
        &self,
        run_id: &RunId,
        budget: &crate::budget::Budget,
        amount: u64,
        now: DateTime<Utc>,
    ) -> Result<Duration> {
        let _ = (run_id, budget, amount, now);
        Err(crate::Error::NotSupported {
            adapter: "run store",
            operation: "take_budget (run-wide rate limits)",
        })
    }
    /// Records `value` as chunk `chunk_id`'s count on the run's tally `name` (replacing what the
    /// chunk recorded before, so a retried attempt counts once) and returns the tally's total over
    /// every chunk of the run: how run-wide ceilings (`safety.max_rows_expected`,
    /// `safety.max_cost_usd`) see every worker's progress, finished chunks and chunks under way.
    /// The default answers [`NotSupported`](crate::Error::NotSupported): the runner then holds
    /// the ceilings per process.
    async fn tally(
        &self,
        run_id: &RunId,
        name: &'static str,
        chunk_id: &ChunkId,
        value: u64,
    ) -> Result<u64> {
        let _ = (run_id, name, chunk_id, value);
        Err(crate::Error::NotSupported {
            adapter: "run store",
            operation: "tally (run-wide ceilings)",
        })
    }
    /// Extends a lease.
    async fn heartbeat(
        &self,
        lease: &ChunkLease,
        now: DateTime<Utc>,
        lease_for: Duration,
    ) -> Result<ChunkLease>;
    /// Records a chunk as done.
    async fn complete_chunk(
        &self,
        lease: &ChunkLease,
        outcome: &ChunkOutcome,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Records a failed attempt.
    async fn fail_chunk(&self, lease: &ChunkLease, error: &str, now: DateTime<Utc>) -> Result<()>;
    /// Ledger rows of a run, by index.
    async fn chunks(&self, run_id: &RunId) -> Result<Vec<ChunkRecord>>;
    /// Appends an evidence record; returns its sequence number.
    async fn append_evidence(
        &self,
        run_id: &RunId,
        at: DateTime<Utc>,
        by: &str,
        record: &EvidenceRecord,
    ) -> Result<u64>;
    /// Evidence of a run, in order.
    async fn evidence(&self, run_id: &RunId) -> Result<Vec<Evidence>>;
    /// The accepted run of a target.
    async fn accepted(&self, target: &str) -> Result<Option<AcceptedPointer>>;
    /// Compare-and-set of the accepted pointer.
    async fn swap_accepted(&self, expected: Option<&RunId>, new: &AcceptedPointer) -> Result<()>;
    /// Runs matching a filter, newest first.
    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;
}

/// Which runs [`RunStore::runs`] lists. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunFilter {
    /// Only runs in one of these states.
    pub states: Vec<RunState>,
    /// Only runs of this target.
    pub target: Option<String>,
    /// Only runs requested by this principal.
    pub requested_by: Option<String>,
    /// Only runs created at or after this instant.
    pub created_after: Option<DateTime<Utc>>,
    /// At most this many runs.
    pub limit: Option<usize>,
}

impl RunFilter {
    /// Every run.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only runs in `state`.
    pub fn state(mut self, state: RunState) -> Self {
        self.states.push(state);
        self
    }

    /// Only runs of `target`.
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// Only runs requested by `who`.
    pub fn requested_by(mut self, who: impl Into<String>) -> Self {
        self.requested_by = Some(who.into());
        self
    }

    /// Only runs created at or after `at`.
    pub fn created_after(mut self, at: DateTime<Utc>) -> Self {
        self.created_after = Some(at);
        self
    }

    /// At most `n` runs.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Whether a run matches (stores may filter in their query and use this for the rest).
    pub fn matches(&self, run: &RunRecord) -> bool {
        (self.states.is_empty() || self.states.contains(&run.state))
            && self.target.as_ref().is_none_or(|t| *t == run.target)
            && self
                .requested_by
                .as_ref()
                .is_none_or(|r| *r == run.requested_by)
            && self.created_after.is_none_or(|a| run.created_at >= a)
    }
}
