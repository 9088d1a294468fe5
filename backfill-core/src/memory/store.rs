//! An in-memory run store.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::poisoned;
use crate::budget::{BucketState, Budget};
use crate::error::{Error, Result};
use crate::ids::RunId;
use crate::manifest::StoredManifest;
use crate::plan::ResolvedPlan;
use crate::state::Transition;
use crate::store::{
    AcceptedPointer, ChunkLease, ChunkOutcome, ChunkRecord, ChunkStatus, Evidence, EvidenceRecord,
    RunFilter, RunRecord, RunStore,
};

#[derive(Debug, Default)]
struct Inner {
    budgets: BTreeMap<(RunId, &'static str), BucketState>,
    tallies: BTreeMap<(RunId, &'static str), BTreeMap<crate::ids::ChunkId, u64>>,
    manifests: BTreeMap<RunId, StoredManifest>,
    runs: BTreeMap<RunId, RunRecord>,
    transitions: BTreeMap<RunId, Vec<Transition>>,
    plans: BTreeMap<RunId, ResolvedPlan>,
    chunks: BTreeMap<RunId, Vec<ChunkRecord>>,
    evidence: BTreeMap<RunId, Vec<Evidence>>,
    accepted: BTreeMap<String, AcceptedPointer>,
}

/// The reference [`RunStore`]: every operation is atomic under one mutex.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

fn conflict(run_id: &RunId, what: &str, expected: impl ToString, found: impl ToString) -> Error {
    Error::Conflict {
        run_id: run_id.clone(),
        what: what.into(),
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

fn lease_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        self.inner.lock().map_err(|_| poisoned())
    }

    /// Overwrites a stored manifest's JSON without touching its digest or approval, the way an
    /// out-of-band edit of the database would. For tests that prove tampering is detected.
    pub fn overwrite_manifest_json(&self, run_id: &RunId, json: &str) -> Result<()> {
        let mut inner = self.lock()?;
        let m = inner
            .manifests
            .get_mut(run_id)
            .ok_or_else(|| Error::NotFound {
                run_id: run_id.clone(),
                what: "manifest".into(),
            })?;
        m.json = json.to_owned();
        Ok(())
    }

    fn chunk_mut<'a>(inner: &'a mut Inner, lease: &ChunkLease) -> Result<&'a mut ChunkRecord> {
        let chunk = inner
            .chunks
            .get_mut(&lease.run_id)
            .and_then(|cs| cs.iter_mut().find(|c| c.chunk_id == lease.chunk_id))
            .ok_or_else(|| Error::NotFound {
                run_id: lease.run_id.clone(),
                what: format!("chunk {}", lease.chunk_id),
            })?;
        let holds = chunk.status == ChunkStatus::Claimed
            && chunk.worker.as_deref() == Some(lease.worker.as_str())
            && chunk.attempts == lease.attempt;
        if !holds {
            return Err(conflict(
                &lease.run_id,
                &format!("lease on chunk {}", lease.chunk_id),
                format!("{} attempt {}", lease.worker, lease.attempt),
                format!(
                    "{} by {} attempt {}",
                    chunk.status.as_str(),
                    chunk.worker.as_deref().unwrap_or("nobody"),
                    chunk.attempts
                ),
            ));
        }
        Ok(chunk)
    }
}

#[async_trait]
impl RunStore for MemoryStore {
    async fn put_manifest(&self, manifest: &StoredManifest) -> Result<()> {
        let mut inner = self.lock()?;
        match inner.manifests.get_mut(&manifest.run_id) {
            Some(existing)
                if existing.digest != manifest.digest || existing.version != manifest.version =>
            {
                Err(conflict(
                    &manifest.run_id,
                    "manifest",
                    &existing.digest,
                    &manifest.digest,
                ))
            }
            Some(existing) => {
                if existing.approval.is_none() {
                    existing.approval.clone_from(&manifest.approval);
                }
                Ok(())
            }
            None => {
                inner
                    .manifests
                    .insert(manifest.run_id.clone(), manifest.clone());
                Ok(())
            }
        }
    }

    async fn manifest(&self, run_id: &RunId) -> Result<Option<StoredManifest>> {
        Ok(self.lock()?.manifests.get(run_id).cloned())
    }

    async fn create_run(&self, run: &RunRecord) -> Result<()> {
        let mut inner = self.lock()?;
        if let Some(existing) = inner.runs.get(&run.run_id) {
            return Err(conflict(&run.run_id, "run", "absent", existing.state));
        }
        inner.runs.insert(run.run_id.clone(), run.clone());
        Ok(())
    }

    async fn run(&self, run_id: &RunId) -> Result<Option<RunRecord>> {
        Ok(self.lock()?.runs.get(run_id).cloned())
    }

    async fn transition(&self, t: &Transition) -> Result<()> {
        let mut inner = self.lock()?;
        let run = inner
            .runs
            .get_mut(&t.run_id)
            .ok_or_else(|| Error::NotFound {
                run_id: t.run_id.clone(),
                what: "run".into(),
            })?;
        if run.state != t.from {
            return Err(conflict(&t.run_id, "run state", t.from, run.state));
        }
        run.state = t.to;
        run.updated_at = t.at;
        inner
            .transitions
            .entry(t.run_id.clone())
            .or_default()
            .push(t.clone());
        Ok(())
    }

    async fn transitions(&self, run_id: &RunId) -> Result<Vec<Transition>> {
        Ok(self
            .lock()?
            .transitions
            .get(run_id)
            .cloned()
            .unwrap_or_default())
    }

    async fn put_plan(&self, plan: &ResolvedPlan) -> Result<()> {
        let mut inner = self.lock()?;
        if let Some(existing) = inner.plans.get(&plan.run_id) {
            return if existing.same_work(plan) {
                Ok(())
            } else {
                Err(conflict(
                    &plan.run_id,
                    "plan",
                    "no plan or the same plan",
                    "a different plan",
                ))
            };
        }
        let chunks = plan
            .chunks
            .iter()
            .map(|c| ChunkRecord {
                run_id: plan.run_id.clone(),
                chunk_id: c.id.clone(),
                index: c.index,
                range: c.range.clone(),
                status: ChunkStatus::Pending,
                attempts: 0,
                worker: None,
                lease_expires_at: None,
                input_count: 0,
                output_count: 0,
                digests: Default::default(),
                artifact: Default::default(),
                digest_format: crate::digest::DIGEST_FORMAT_VERSION,
                last_error: None,
                started_at: None,
                finished_at: None,
            })
            .collect();
        inner.plans.insert(plan.run_id.clone(), plan.clone());
        inner.chunks.insert(plan.run_id.clone(), chunks);
        Ok(())
    }

    async fn plan(&self, run_id: &RunId) -> Result<Option<ResolvedPlan>> {
        Ok(self.lock()?.plans.get(run_id).cloned())
    }

    async fn claim_chunk(
        &self,
        run_id: &RunId,
        worker: &str,
        now: DateTime<Utc>,
        lease_for: Duration,
    ) -> Result<Option<ChunkLease>> {
        let mut inner = self.lock()?;
        Ok(claim_in(&mut inner, run_id, true, worker, now, lease_for))
    }

    async fn claim_chunk_within(
        &self,
        run_id: &RunId,
        worker: &str,
        now: DateTime<Utc>,
        lease_for: Duration,
        max_leased: u32,
    ) -> Result<Option<ChunkLease>> {
        // Counted and claimed under one lock: atomic for every worker sharing this store.
        let mut inner = self.lock()?;
        let live = inner.chunks.get(run_id).map_or(0, |cs| {
            cs.iter()
                .filter(|c| c.status == ChunkStatus::Claimed && !expired(c, now))
                .count()
        });
        if live >= max_leased as usize {
            return Ok(None);
        }
        Ok(claim_in(&mut inner, run_id, false, worker, now, lease_for))
    }

    async fn take_budget(
        &self,
        run_id: &RunId,
        budget: &Budget,
        amount: u64,
        now: DateTime<Utc>,
    ) -> Result<Duration> {
        let mut inner = self.lock()?;
        let key = (run_id.clone(), budget.name);
        let (state, wait) = budget.take(inner.budgets.get(&key).copied(), now, amount as f64);
        inner.budgets.insert(key, state);
        Ok(wait)
    }

    async fn tally(
        &self,
        run_id: &RunId,
        name: &'static str,
        chunk_id: &crate::ids::ChunkId,
        value: u64,
    ) -> Result<u64> {
        let mut inner = self.lock()?;
        let chunks = inner.tallies.entry((run_id.clone(), name)).or_default();
        chunks.insert(chunk_id.clone(), value);
        Ok(chunks.values().fold(0u64, |a, v| a.saturating_add(*v)))
    }

    async fn heartbeat(
        &self,
        lease: &ChunkLease,
        now: DateTime<Utc>,
        lease_for: Duration,
    ) -> Result<ChunkLease> {
        let mut inner = self.lock()?;
        let chunk = Self::chunk_mut(&mut inner, lease)?;
        let expires_at = now + lease_duration(lease_for);
        chunk.lease_expires_at = Some(expires_at);
        Ok(ChunkLease {
            expires_at,
            ..lease.clone()
        })
    }

    async fn complete_chunk(
        &self,
        lease: &ChunkLease,
        outcome: &ChunkOutcome,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut inner = self.lock()?;
        let chunk = Self::chunk_mut(&mut inner, lease)?;
        chunk.status = ChunkStatus::Done;
        chunk.input_count = outcome.input_count;
        chunk.output_count = outcome.output_count;
        chunk.digests = outcome.digests.clone();
        chunk.artifact = outcome.artifact.clone();
        chunk.digest_format = outcome.digest_format;
        chunk.lease_expires_at = None;
        chunk.finished_at = Some(now);
        chunk.last_error = None;
        Ok(())
    }

    async fn fail_chunk(&self, lease: &ChunkLease, error: &str, _now: DateTime<Utc>) -> Result<()> {
        let mut inner = self.lock()?;
        let chunk = Self::chunk_mut(&mut inner, lease)?;
        chunk.status = ChunkStatus::Failed;
        chunk.lease_expires_at = None;
        chunk.last_error = Some(error.to_owned());
        Ok(())
    }

    async fn chunks(&self, run_id: &RunId) -> Result<Vec<ChunkRecord>> {
        Ok(self.lock()?.chunks.get(run_id).cloned().unwrap_or_default())
    }

    async fn append_evidence(
        &self,
        run_id: &RunId,
        at: DateTime<Utc>,
        by: &str,
        record: &EvidenceRecord,
    ) -> Result<u64> {
        let mut inner = self.lock()?;
        let list = inner.evidence.entry(run_id.clone()).or_default();
        let seq = list.len() as u64 + 1;
        list.push(Evidence {
            run_id: run_id.clone(),
            seq,
            at,
            by: by.into(),
            record: record.clone(),
        });
        Ok(seq)
    }

    async fn evidence(&self, run_id: &RunId) -> Result<Vec<Evidence>> {
        Ok(self
            .lock()?
            .evidence
            .get(run_id)
            .cloned()
            .unwrap_or_default())
    }

    async fn accepted(&self, target: &str) -> Result<Option<AcceptedPointer>> {
        Ok(self.lock()?.accepted.get(target).cloned())
    }

    async fn swap_accepted(&self, expected: Option<&RunId>, new: &AcceptedPointer) -> Result<()> {
        let mut inner = self.lock()?;
        let current = inner.accepted.get(&new.target).map(|p| &p.run_id);
        if current != expected {
            return Err(conflict(
                &new.run_id,
                &format!("accepted pointer of {}", new.target),
                expected.map_or("none", |r| r.as_str()),
                current.map_or("none", |r| r.as_str()),
            ));
        }
        inner.accepted.insert(new.target.clone(), new.clone());
        Ok(())
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let inner = self.lock()?;
        let mut runs: Vec<RunRecord> = inner
            .runs
            .values()
            .filter(|r| filter.matches(r))
            .cloned()
            .collect();
        runs.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| b.run_id.cmp(&a.run_id))
        });
        runs.truncate(filter.limit.unwrap_or(usize::MAX));
        Ok(runs)
    }
}

/// Whether a claimed chunk's lease has run out at `now`.
fn expired(c: &ChunkRecord, now: DateTime<Utc>) -> bool {
    c.lease_expires_at.is_none_or(|t| t <= now)
}

/// Leases the lowest claimable chunk of the run, under the store's lock; with `take_back`, the
/// worker's own unexpired leases are claimable too (clause 5; not for `claim_chunk_within`,
/// clause 11).
fn claim_in(
    inner: &mut Inner,
    run_id: &RunId,
    take_back: bool,
    worker: &str,
    now: DateTime<Utc>,
    lease_for: Duration,
) -> Option<ChunkLease> {
    let chunks = inner.chunks.get_mut(run_id)?;
    let claimable = chunks.iter_mut().find(|c| match c.status {
        ChunkStatus::Pending | ChunkStatus::Failed => true,
        ChunkStatus::Claimed => {
            (take_back && c.worker.as_deref() == Some(worker)) || expired(c, now)
        }
        ChunkStatus::Done => false,
    });
    let c = claimable?;
    let expires_at = now + lease_duration(lease_for);
    c.status = ChunkStatus::Claimed;
    c.attempts += 1;
    c.worker = Some(worker.to_owned());
    c.lease_expires_at = Some(expires_at);
    c.started_at.get_or_insert(now);
    c.current_lease()
}
