//! Planning and chunk execution: claim, read, transform, digest, stage, record.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, BoxStream, StreamExt};
use tracing::Instrument;

use super::throttle::{Throttle, Waited};
use super::{Executor, RunEvent};
use crate::context::TransformContext;
use crate::digest::OutputRow;
use crate::error::{Error, Result};
use crate::evidence::{EvidenceRecord, PlannedChunkSummary, QuarantinedRecord};
use crate::ids::PartitionKey;
use crate::manifest::ApprovedManifest;
use crate::plan::{PlannedChunk, ResolvedPlan};
use crate::sink::StageRequest;
use crate::state::{Event, RunState};
use crate::store::{ChunkLease, ChunkOutcome, ChunkStatus};
use crate::telemetry::RunMetrics;
use crate::transform::DeterministicTransform;

/// State shared by the workers of one invocation.
struct Shared<'a> {
    approved: &'a ApprovedManifest,
    plan: ResolvedPlan,
    ctx: TransformContext,
    allowed: Option<BTreeSet<PartitionKey>>,
    throttle: Throttle,
    metrics: RunMetrics,
    cost: Option<crate::estimate::CostMeter>,
    ceilings: super::ceilings::Ceilings,
    rows: super::ceilings::LocalRows,
    stop: AtomicBool,
    error: Mutex<Option<Error>>,
    done: AtomicUsize,
}

impl Shared<'_> {
    fn fail(&self, e: Error) {
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(e);
        }
    }
}

/// What a chunk attempt staged, refused and waited for.
struct Attempt {
    outcome: ChunkOutcome,
    quarantined: Vec<QuarantinedRecord>,
    throttled_ms: BTreeMap<String, u64>,
}

/// What one chunk attempt has seen so far.
#[derive(Default)]
struct ChunkAcc {
    outcome: ChunkOutcome,
    scratch: Vec<u8>,
    quarantined: Vec<QuarantinedRecord>,
}

impl<T: DeterministicTransform> Executor<T> {
    /// Loads the persisted plan, or resolves and persists one before any work. A plan whose snapshot
    /// is not the manifest's pin, or whose chunks leave gaps or overlap, is refused before any chunk.
    pub(super) async fn ensure_plan(&self, approved: &ApprovedManifest) -> Result<ResolvedPlan> {
        let run_id = approved.run_id();
        let store = self.control.store();
        if let Some(plan) = store.plan(run_id).await? {
            return self.check_plan(approved, plan);
        }
        let source_plan = self.source.plan(approved.manifest()).await?;
        let source_plan = crate::estimate::dry_run_subset(approved.manifest(), source_plan)?;
        let plan = ResolvedPlan::new(
            run_id,
            approved.digest().clone(),
            source_plan,
            self.control.clock().now(),
        );
        let plan = self.check_plan(approved, plan)?;
        match store.put_plan(&plan).await {
            Ok(()) => {}
            // Another worker planned first: use theirs.
            Err(e) if e.kind() == crate::ErrorKind::Conflict => {
                let theirs = store.plan(run_id).await?.ok_or(e)?;
                return self.check_plan(approved, theirs);
            }
            Err(e) => return Err(e),
        }
        let record = EvidenceRecord::PlanResolved {
            source: self.source.name().to_owned(),
            snapshot: plan.snapshot.clone(),
            resolved_from: plan.resolved_from.clone(),
            chunks: plan
                .chunks
                .iter()
                .map(|c| PlannedChunkSummary {
                    id: c.id.clone(),
                    label: c.label.clone(),
                    range: c.range.to_string(),
                })
                .collect(),
        };
        store
            .append_evidence(run_id, plan.planned_at, &self.actor(), &record)
            .await?;
        Ok(plan)
    }

    fn check_plan(&self, approved: &ApprovedManifest, plan: ResolvedPlan) -> Result<ResolvedPlan> {
        if plan.manifest_digest != *approved.digest() {
            return Err(Error::Tampered {
                run_id: approved.run_id().clone(),
                expected: approved.digest().to_string(),
                actual: format!("plan made for {}", plan.manifest_digest),
            });
        }
        let m = approved.manifest();
        plan.check_pin(m.source.snapshot.as_deref())?;
        if let Some(range) = &m.source.range {
            // A dry run's subset was checked whole before it was cut down.
            if m.safety.dry_run_chunks.is_empty() {
                plan.check_coverage(range)?;
            }
        }
        Ok(plan)
    }

    /// Runs every unfinished chunk with bounded parallelism. Returns when all chunks are done.
    pub(super) async fn execute(&self, approved: &ApprovedManifest) -> Result<()> {
        let m = approved.manifest();
        let run_id = approved.run_id();
        let plan = self.ensure_plan(approved).await?;
        let chunks = self.control.store().chunks(run_id).await?;
        if let Some(old) = chunks.iter().find(|c| {
            c.status == ChunkStatus::Done && c.digest_format != crate::digest::DIGEST_FORMAT_VERSION
        }) {
            return Err(Error::Unsupported {
                run_id: run_id.clone(),
                part: format!(
                    "this release (digest format {})",
                    crate::digest::DIGEST_FORMAT_VERSION
                ),
                what: format!(
                    "resume chunk {} digested with format {}: amend the manifest into a new run",
                    old.chunk_id, old.digest_format
                ),
            });
        }
        self.recover_chunk_evidence(run_id, &plan, &chunks).await?;
        let now = self.control.clock().now();
        super::leases::give_back_own(
            &**self.control.store(),
            &chunks,
            &self.options.worker_id,
            now,
        )
        .await?;
        let done = chunks
            .iter()
            .filter(|c| c.status == ChunkStatus::Done)
            .count();
        let rows_done: u64 = chunks
            .iter()
            .filter(|c| c.status == ChunkStatus::Done)
            .map(|c| c.output_count)
            .sum();
        self.emit(
            run_id,
            RunEvent::Planned {
                total: plan.chunks.len(),
                done,
            },
        );
        let metrics = RunMetrics::new(m);
        let cost = self
            .estimate_at_start(approved, &plan, &chunks, &metrics)
            .await?;
        let shared = Shared {
            approved,
            ctx: TransformContext::for_manifest(m, plan.planned_at)
                .with_input_snapshot(plan.snapshot.clone()),
            plan,
            allowed: (!m.target.partitions.is_empty())
                .then(|| m.target.partitions.iter().cloned().collect()),
            throttle: Throttle::new(
                &m.safety.limits,
                run_id,
                Arc::clone(self.control.store()),
                Arc::clone(self.control.clock()),
            ),
            metrics,
            cost,
            ceilings: super::ceilings::Ceilings::new(),
            rows: super::ceilings::LocalRows::new(rows_done),
            stop: AtomicBool::new(false),
            error: Mutex::new(None),
            done: AtomicUsize::new(done),
        };
        shared.throttle.check().await?;
        let run_wide = m.safety.limits.max_chunks_in_parallel.max(1) as usize;
        let workers = self
            .options
            .local_workers
            .map_or(run_wide, |n| n.min(run_wide));
        futures::future::join_all((0..workers).map(|i| self.worker(&shared, i))).await;
        let error = shared.error.lock().ok().and_then(|mut e| e.take());
        if let Some(e) = error {
            let event = match e.root().kind() {
                crate::ErrorKind::Cancelled => Event::Cancel,
                crate::ErrorKind::Paused => Event::Pause,
                _ => Event::Fail,
            };
            // An operator's cancel already moved the run; a local cancel or a failure moves it here.
            let state = self.control.run(run_id).await?.state;
            if state == RunState::Running {
                self.step(run_id, state, event, &e.to_string()).await?;
            }
            return Err(e);
        }
        Ok(())
    }

    /// One worker: claim, run, record, until no chunk is left.
    async fn worker(&self, sh: &Shared<'_>, index: usize) {
        let run_id = sh.approved.run_id();
        let worker = format!("{}/{index}", self.options.worker_id);
        let retry = self.options.retry;
        let mut attempts: HashMap<crate::ids::ChunkId, u32> = HashMap::new();
        // A worker with nothing to claim while others finish the last chunks looks at the ledger
        // again this often: at most every 100 ms, so the end of the run is seen promptly (it was
        // up to 500 ms, the whole tail of a short run with several workers).
        let poll = (self.options.lease_for / 10)
            .clamp(Duration::from_millis(10), Duration::from_millis(100));
        while !sh.stop.load(Ordering::SeqCst) {
            if self.cancel.is_cancelled() {
                sh.fail(Error::Cancelled {
                    run_id: run_id.clone(),
                });
                return;
            }
            if let Some(e) = self.stopped_elsewhere(run_id).await {
                sh.fail(e);
                return;
            }
            let lease = match self
                .control
                .store()
                // Run-wide: no more than `max_chunks_in_parallel` leases of the run at once,
                // whichever process holds them.
                .claim_chunk_within(
                    run_id,
                    &worker,
                    self.control.clock().now(),
                    self.options.lease_for,
                    sh.approved
                        .manifest()
                        .safety
                        .limits
                        .max_chunks_in_parallel
                        .max(1),
                )
                .await
            {
                Ok(Some(lease)) => lease,
                Ok(None) => match self.control.store().chunks(run_id).await {
                    Ok(chunks) if chunks.iter().all(|c| c.status == ChunkStatus::Done) => return,
                    // Another worker holds the rest; wait for it to finish or its lease to expire.
                    Ok(_) => {
                        tokio::time::sleep(poll).await;
                        continue;
                    }
                    Err(e) => {
                        sh.fail(e);
                        return;
                    }
                },
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(retry.initial_backoff).await;
                    continue;
                }
                Err(e) => {
                    sh.fail(e);
                    return;
                }
            };
            let label = sh
                .plan
                .chunks
                .get(lease.index as usize)
                .map_or_else(|| lease.chunk_id.to_string(), |c| c.label.clone());
            let span = tracing::info_span!(
                "backfill.chunk",
                run_id = %run_id,
                chunk_id = %lease.chunk_id,
                source_range = %lease.range,
                transform_version = %sh.approved.manifest().transform.version,
                target = %sh.approved.manifest().target.name,
                processing_mode = %sh.approved.manifest().mode,
                attempt = lease.attempt,
            );
            let started = Instant::now();
            let result = self.run_chunk(sh, &lease).instrument(span.clone()).await;
            let now = self.control.clock().now();
            if result.is_err() {
                sh.rows.end(&lease, 0);
            }
            match result {
                Ok(attempt) => {
                    let rows = attempt.outcome.output_count;
                    let recorded = self
                        .record_chunk(sh, &lease, &label, attempt, started)
                        .instrument(span)
                        .await;
                    sh.rows.end(&lease, if recorded.is_ok() { rows } else { 0 });
                    if let Err(e) = recorded {
                        // A lost lease means another worker owns the chunk now; its result counts.
                        if e.kind() != crate::ErrorKind::Conflict {
                            sh.fail(e);
                            return;
                        }
                    }
                    sh.throttle.pause().await;
                }
                // Fenced off: this worker's lease ran out (a pause, a slow heartbeat) and another
                // worker holds the chunk now. That attempt is the chunk's; this one is void. (Any
                // other conflict, such as a source whose input changed, fails the attempt below.)
                Err(e)
                    if e.root().kind() == crate::ErrorKind::Conflict
                        && self.lease_lost(&lease).await =>
                {
                    tracing::info!(run_id = %run_id, chunk_id = %lease.chunk_id, attempt = lease.attempt, error = %e, "chunk attempt fenced off: another worker owns the chunk");
                }
                // An adapter asked the run to wait: the chunk goes back to the ledger (its attempt is
                // recorded, not counted against the retry budget) and the run pauses.
                Err(e) if e.root().kind() == crate::ErrorKind::Paused => {
                    let msg = e.to_string();
                    tracing::warn!(run_id = %run_id, chunk_id = %lease.chunk_id, attempt = lease.attempt, error = %msg, "chunk paused: the run pauses");
                    let _ = self.control.store().fail_chunk(&lease, &msg, now).await;
                    sh.fail(Error::Chunk {
                        run_id: run_id.clone(),
                        chunk_id: lease.chunk_id.clone(),
                        attempt: lease.attempt,
                        source: Box::new(e),
                    });
                    return;
                }
                Err(e) => {
                    let msg = e.to_string();
                    tracing::warn!(run_id = %run_id, chunk_id = %lease.chunk_id, attempt = lease.attempt, error = %msg, "chunk failed");
                    let _ = self.control.store().fail_chunk(&lease, &msg, now).await;
                    let failed = EvidenceRecord::ChunkFailed {
                        chunk_id: lease.chunk_id.clone(),
                        attempt: lease.attempt,
                        error: msg.clone(),
                        retryable: e.is_retryable(),
                    };
                    let _ = self
                        .control
                        .store()
                        .append_evidence(run_id, now, &worker, &failed)
                        .await;
                    self.emit(run_id, RunEvent::ChunkFailed { label, error: msg });
                    let n = attempts.entry(lease.chunk_id.clone()).or_default();
                    *n += 1;
                    if e.is_retryable() && *n < retry.max_attempts {
                        tokio::time::sleep(retry.backoff(*n)).await;
                        continue;
                    }
                    sh.fail(Error::Chunk {
                        run_id: run_id.clone(),
                        chunk_id: lease.chunk_id.clone(),
                        attempt: lease.attempt,
                        source: Box::new(e),
                    });
                    return;
                }
            }
        }
    }

    /// [`recover_chunk_evidence`](Self::recover_chunk_evidence) from the stored plan and ledger:
    /// before validation (a worker killed between a chunk's ledger commit and its evidence while
    /// the others were already past their start, found by the fault campaign) and on every later
    /// visit of a published run (which heals a trail left short by an earlier release).
    pub(super) async fn heal_chunk_evidence(&self, run_id: &crate::ids::RunId) -> Result<()> {
        let store = self.control.store();
        let Some(plan) = store.plan(run_id).await? else {
            return Ok(());
        };
        let chunks = store.chunks(run_id).await?;
        self.recover_chunk_evidence(run_id, &plan, &chunks).await
    }

    /// A worker that died between recording a chunk in the ledger and appending its evidence left a
    /// done chunk with no `chunk_staged` record; the ledger is the truth, so the record is appended
    /// from it before any new work, and the trail again names every staged chunk.
    async fn recover_chunk_evidence(
        &self,
        run_id: &crate::ids::RunId,
        plan: &ResolvedPlan,
        chunks: &[crate::store::ChunkRecord],
    ) -> Result<()> {
        let store = self.control.store();
        let recorded: BTreeSet<(crate::ids::ChunkId, u32)> = store
            .evidence(run_id)
            .await?
            .into_iter()
            .filter_map(|e| match e.record {
                EvidenceRecord::ChunkStaged {
                    chunk_id, attempt, ..
                } => Some((chunk_id, attempt)),
                _ => None,
            })
            .collect();
        for c in chunks.iter().filter(|c| c.status == ChunkStatus::Done) {
            if recorded.contains(&(c.chunk_id.clone(), c.attempts)) {
                continue;
            }
            let source = match plan.chunks.iter().find(|p| p.id == c.chunk_id) {
                Some(chunk) => self.source.chunk_evidence(chunk).await?,
                None => None,
            };
            let record = EvidenceRecord::ChunkStaged {
                chunk_id: c.chunk_id.clone(),
                attempt: c.attempts,
                input: c.input_count,
                output: c.output_count,
                digests: c.digests.clone(),
                artifact: c.artifact.clone(),
                source,
                // Only the attempt that staged the chunk knew its quarantine and waits; the ledger
                // does not.
                quarantined: Vec::new(),
                throttled_ms: BTreeMap::new(),
            };
            let at = c.finished_at.unwrap_or_else(|| self.control.clock().now());
            let actor = format!("{} (recovered from the ledger)", self.actor());
            store.append_evidence(run_id, at, &actor, &record).await?;
        }
        Ok(())
    }

    async fn record_chunk(
        &self,
        sh: &Shared<'_>,
        lease: &ChunkLease,
        label: &str,
        attempt: Attempt,
        started: Instant,
    ) -> Result<()> {
        let Attempt {
            outcome,
            quarantined,
            throttled_ms,
        } = attempt;
        let outcome = &outcome;
        let run_id = &lease.run_id;
        let now = self.control.clock().now();
        // Asked before the ledger commit: a source that cannot say what the read stood on fails
        // the attempt rather than leaving a staged chunk without its evidence.
        let source = match sh.plan.chunks.get(lease.index as usize) {
            Some(chunk) => self.source.chunk_evidence(chunk).await?,
            None => None,
        };
        self.control
            .store()
            .complete_chunk(lease, outcome, now)
            .await?;
        let staged = EvidenceRecord::ChunkStaged {
            chunk_id: lease.chunk_id.clone(),
            attempt: lease.attempt,
            input: outcome.input_count,
            output: outcome.output_count,
            digests: outcome.digests.clone(),
            artifact: outcome.artifact.clone(),
            source,
            quarantined,
            throttled_ms,
        };
        self.control
            .store()
            .append_evidence(run_id, now, &lease.worker, &staged)
            .await?;
        tracing::info!(
            attempt = lease.attempt,
            input = outcome.input_count,
            output = outcome.output_count,
            "chunk staged"
        );
        sh.metrics.chunks.increment(1);
        sh.metrics
            .chunk_seconds
            .record(started.elapsed().as_secs_f64());
        let done = sh.done.fetch_add(1, Ordering::SeqCst) + 1;
        self.emit(
            run_id,
            RunEvent::ChunkStaged {
                label: label.to_owned(),
                rows: outcome.output_count,
                done,
                total: sh.plan.chunks.len(),
            },
        );
        Ok(())
    }

    /// Streams one chunk through the transform into the staging sink, renewing the lease meanwhile.
    async fn run_chunk(&self, sh: &Shared<'_>, lease: &ChunkLease) -> Result<Attempt> {
        let chunk = match sh.plan.chunks.get(lease.index as usize) {
            Some(c) if c.id == lease.chunk_id => c.clone(),
            _ => {
                return Err(Error::corrupt(
                    "chunk ledger",
                    format!(
                        "run {} chunk {} (index {}) is not in the persisted plan",
                        lease.run_id, lease.chunk_id, lease.index
                    ),
                ))
            }
        };
        if let Some(cost) = &sh.cost {
            cost.start_chunk(&lease.run_id, &chunk.id)?;
        }
        let acc = Mutex::new(ChunkAcc::default());
        let waited = Waited::default();
        let rows = self.chunk_rows(sh, lease, &chunk, &acc, &waited);
        let req = StageRequest {
            run_id: &lease.run_id,
            chunk_id: &lease.chunk_id,
            attempt: lease.attempt,
            lineage: sh.ctx.lineage(),
        };
        let started = Instant::now();
        let receipt = tokio::select! {
            // The commit budget is waited for under the lease, then the chunk is staged.
            staged = async {
                sh.throttle.commit(&waited).await?;
                self.sink.stage(req, rows).await
            } => staged?,
            lost = self.keep_lease(lease) => return Err(lost),
        };
        sh.metrics
            .sink_ms
            .record(started.elapsed().as_secs_f64() * 1000.0);
        let acc = acc
            .into_inner()
            .map_err(|_| Error::adapter("runner", "chunk accumulator poisoned"))?;
        let mut outcome = acc.outcome;
        outcome.artifact = receipt.artifact;
        Ok(Attempt {
            outcome,
            quarantined: acc.quarantined,
            throttled_ms: waited.into_inner().unwrap_or_default(),
        })
    }

    /// The chunk's output as a stream of batches; digests and counts accumulate in `acc`.
    fn chunk_rows<'s>(
        &'s self,
        sh: &'s Shared<'_>,
        lease: &'s ChunkLease,
        chunk: &PlannedChunk,
        acc: &'s Mutex<ChunkAcc>,
        waited: &'s Waited,
    ) -> BoxStream<'s, Result<Vec<T::Output>>> {
        let source = self.source.read(chunk);
        stream::unfold(Some(source), move |state| async move {
            let mut source = state?;
            let next = source.next().await?;
            let result = match next {
                Err(e) => Err(e),
                Ok(batch) => self.process_batch(sh, lease, &batch, acc),
            };
            let result = match result {
                Ok((rows, bytes, counts)) => {
                    let store = self.control.store().as_ref();
                    let m = sh.approved.manifest();
                    if let Err(e) = sh
                        .ceilings
                        .hold(store, m, sh.cost.as_ref(), lease, counts)
                        .await
                    {
                        Err(e)
                    } else if let Err(e) = sh.throttle.admit(rows.len() as u64, bytes, waited).await
                    {
                        Err(e)
                    } else if self.cancel.is_cancelled() {
                        Err(Error::Cancelled {
                            run_id: lease.run_id.clone(),
                        })
                    } else {
                        Ok(rows)
                    }
                }
                Err(e) => Err(e),
            };
            // After an error the stream ends.
            let state = result.is_ok().then_some(source);
            Some((result, state))
        })
        .boxed()
    }

    /// Transforms one input batch; checks scope and limits (per process); updates digests; answers
    /// the chunk's counts so far. Synchronous on purpose.
    fn process_batch(
        &self,
        sh: &Shared<'_>,
        lease: &ChunkLease,
        batch: &[T::Input],
        acc: &Mutex<ChunkAcc>,
    ) -> Result<(Vec<T::Output>, u64, super::ceilings::Counts)> {
        let run_id = &lease.run_id;
        let mut out = Vec::with_capacity(batch.len());
        let mut acc = acc
            .lock()
            .map_err(|_| Error::adapter("runner", "chunk accumulator poisoned"))?;
        let ChunkAcc {
            outcome,
            scratch,
            quarantined,
        } = &mut *acc;
        let budget = sh.approved.manifest().safety.max_rejected_per_chunk;
        for (i, input) in batch.iter().enumerate() {
            let before = out.len();
            if let Err(source) = self.transform.apply(input, &sh.ctx, &mut out) {
                sh.metrics.rejected.increment(1);
                // A retryable failure is not the record's fault; and past the budget the chunk fails.
                if source.retryable || quarantined.len() as u64 >= budget {
                    if !source.retryable && budget > 0 {
                        return Err(Error::LimitExceeded {
                            run_id: run_id.clone(),
                            limit: "safety.max_rejected_per_chunk",
                            value: quarantined.len() as u64 + 1,
                            max: budget,
                        });
                    }
                    return Err(Error::Transform {
                        run_id: run_id.clone(),
                        chunk_id: lease.chunk_id.clone(),
                        source,
                    });
                }
                // Whatever the transform emitted for the refused record is dropped with it.
                out.truncate(before);
                tracing::warn!(run_id = %run_id, chunk_id = %lease.chunk_id, input = source.input.as_deref().unwrap_or(""), error = %source.message, "record quarantined");
                quarantined.push(QuarantinedRecord {
                    ordinal: outcome.input_count + i as u64,
                    input: source.input,
                    error: source.message,
                });
            }
        }
        let mut bytes = 0u64;
        for row in &out {
            let partition = row.partition();
            // One map lookup per row: a partition already in the chunk's digests passed the scope check.
            let digest = outcome.digests.0.get_mut(partition.as_ref());
            if digest.is_none() {
                if let Some(allowed) = &sh.allowed {
                    if !allowed.contains(partition.as_ref()) {
                        sh.metrics.rejected.increment(1);
                        return Err(Error::OutOfScope {
                            run_id: run_id.clone(),
                            chunk_id: lease.chunk_id.clone(),
                            partition: partition.into_owned(),
                        });
                    }
                }
            }
            scratch.clear();
            if let Err(source) = row.encode_canonical(scratch) {
                sh.metrics.rejected.increment(1);
                return Err(Error::Encode {
                    run_id: run_id.clone(),
                    source,
                });
            }
            bytes += scratch.len() as u64;
            match digest {
                Some(d) => d.add_encoded(scratch),
                None => outcome.digests.add_encoded(&partition, scratch),
            }
        }
        outcome.input_count += batch.len() as u64;
        outcome.output_count += out.len() as u64;
        sh.metrics.input.increment(batch.len() as u64);
        sh.metrics.output.increment(out.len() as u64);
        if let Some(cost) = &sh.cost {
            cost.add(run_id, batch.len() as u64)?;
        }
        let total = sh.rows.add(lease, out.len() as u64);
        if let Some(max) = sh.approved.manifest().safety.max_rows_expected {
            if total > max {
                return Err(Error::LimitExceeded {
                    run_id: run_id.clone(),
                    limit: "safety.max_rows_expected",
                    value: total,
                    max,
                });
            }
        }
        let counts = super::ceilings::Counts {
            input: outcome.input_count,
            output: outcome.output_count,
        };
        Ok((out, bytes, counts))
    }

    /// Whether the ledger no longer holds `lease`: another worker claimed the chunk since (or
    /// finished it). A store that cannot be read counts as held, so the attempt is failed and
    /// retried rather than silently dropped.
    async fn lease_lost(&self, lease: &ChunkLease) -> bool {
        match self.control.store().chunks(&lease.run_id).await {
            Ok(chunks) => chunks
                .iter()
                .find(|c| c.chunk_id == lease.chunk_id)
                .is_none_or(|c| {
                    c.status != ChunkStatus::Claimed
                        || c.attempts != lease.attempt
                        || c.worker.as_deref() != Some(lease.worker.as_str())
                }),
            Err(_) => false,
        }
    }

    /// The error that stops this worker when the run was stopped through the control plane: an
    /// operator cancelled it, or another worker paused it.
    async fn stopped_elsewhere(&self, run_id: &crate::ids::RunId) -> Option<Error> {
        match self.control.store().run(run_id).await {
            Ok(Some(r)) if r.state == RunState::Cancelled => Some(Error::Cancelled {
                run_id: run_id.clone(),
            }),
            Ok(Some(r)) if r.state == RunState::Paused => Some(Error::paused(
                "runner",
                format!("run {run_id} was paused by another worker"),
            )),
            _ => None,
        }
    }

    /// Renews the lease until it is lost or the run is cancelled; returns the error that ended it.
    async fn keep_lease(&self, lease: &ChunkLease) -> Error {
        let every = (self.options.lease_for / 3).max(Duration::from_millis(1));
        let mut lease = lease.clone();
        loop {
            tokio::time::sleep(every).await;
            if let Some(e) = self.stopped_elsewhere(&lease.run_id).await {
                return e;
            }
            match self
                .control
                .store()
                .heartbeat(&lease, self.control.clock().now(), self.options.lease_for)
                .await
            {
                Ok(renewed) => lease = renewed,
                Err(e) if e.is_retryable() => {}
                Err(e) => return e,
            }
        }
    }
}
