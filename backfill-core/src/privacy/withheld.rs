//! [`Withheld`]: a source that checks the privacy policy when it plans and withholds forgotten
//! subjects when it reads.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use serde_json::{Map, Value};

use super::{ForgottenSubjects, PrivacyPolicy, QUESTION};
use crate::context::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::finding::{Finding, Severity};
use crate::ids::ChunkId;
use crate::manifest::RunManifest;
use crate::plan::{PlannedChunk, SourcePlan};
use crate::source::BackfillSource;

/// The counter of records withheld because their subject was forgotten (label `registry`), added
/// to when a chunk's read completes.
pub const WITHHELD_RECORDS_TOTAL: &str = "backfill_withheld_records_total";

/// How to find the subject (person, account, device) a record is about; `None` for a record
/// about no one, which is never withheld.
pub type SubjectOf<I> = Arc<dyn Fn(&I) -> Option<String> + Send + Sync>;

/// Why a [`Withheld`] source refused a read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivacyError {
    /// The chunk's range is (no longer) inside the source's retention window.
    #[error("chunk {chunk_id}: retention: {reason}")]
    Retention {
        /// The chunk.
        chunk_id: ChunkId,
        /// Which range and which window.
        reason: String,
    },
    /// A subject was forgotten while the chunk was read; the read is transient and is retried.
    #[error("chunk {chunk_id}: registry `{registry}` went from version {before} to {after} during the read; read again so the chunk stands on one version")]
    RegistryChanged {
        /// The chunk.
        chunk_id: ChunkId,
        /// The registry.
        registry: String,
        /// Its version when the read began.
        before: u64,
        /// Its version when the read ended.
        after: u64,
    },
    /// The registry answered a batch with the wrong number of answers.
    #[error("chunk {chunk_id}: registry `{registry}` answered {answered} of {asked} subjects")]
    RegistryAnswer {
        /// The chunk.
        chunk_id: ChunkId,
        /// The registry.
        registry: String,
        /// Subjects asked about.
        asked: usize,
        /// Answers received.
        answered: usize,
    },
}

/// What one complete read of a chunk withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tally {
    withheld: u64,
    version: u64,
}

type Tallies = Arc<Mutex<HashMap<ChunkId, Tally>>>;

/// A [`BackfillSource`] wrapped in a [`PrivacyPolicy`] and a [`ForgottenSubjects`] registry (see
/// the [module docs](super)).
///
/// - `plan` refuses, with [`Error::BlockingFindings`] naming each field, a manifest the policy
///   finds fault with ([`PrivacyPolicy::findings`]) or one naming another registry in
///   `privacy.forgotten_registry`; it also asks the registry its version, so an unreachable
///   registry fails before any chunk.
/// - `read` refuses a chunk outside the retention window (a [`PrivacyError::Retention`], as a
///   permanent error) and drops every record whose subject is forgotten, with one registry lookup
///   per batch; a batch left empty is skipped.
/// - `chunk_evidence` merges `{"withheld", "registry", "registry_version"}` into the inner
///   source's evidence. It is the tally of the chunk's last complete read in this process; a
///   process that did not read the chunk (evidence recovered from the ledger) counts it by reading
///   again against the registry as it is then, and says `"recounted": true`.
pub struct Withheld<S, I> {
    inner: S,
    policy: PrivacyPolicy,
    registry: Arc<dyn ForgottenSubjects>,
    subject_of: SubjectOf<I>,
    clock: Arc<dyn Clock>,
    tallies: Tallies,
}

impl<S: fmt::Debug, I> fmt::Debug for Withheld<S, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Withheld")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .field("registry", &self.registry.name())
            .finish_non_exhaustive()
    }
}

impl<S, I> Withheld<S, I> {
    /// Wraps `inner`: `subject_of` says whom a record is about.
    pub fn new(
        inner: S,
        policy: PrivacyPolicy,
        registry: impl ForgottenSubjects,
        subject_of: impl Fn(&I) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner,
            policy,
            registry: Arc::new(registry),
            subject_of: Arc::new(subject_of),
            clock: Arc::new(SystemClock),
            tallies: Arc::default(),
        }
    }

    /// Uses `clock` for the retention window (the system clock by default).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The wrapped source.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The policy.
    pub fn policy(&self) -> &PrivacyPolicy {
        &self.policy
    }

    /// How many records the last complete read of `chunk` in this process withheld.
    pub fn withheld(&self, chunk: &ChunkId) -> Option<u64> {
        self.tally(chunk).map(|t| t.withheld)
    }

    fn tally(&self, chunk: &ChunkId) -> Option<Tally> {
        self.tallies.lock().ok()?.get(chunk).copied()
    }
}

struct ReadState<I> {
    inner: BoxStream<'static, Result<Vec<I>>>,
    registry: Arc<dyn ForgottenSubjects>,
    subject_of: SubjectOf<I>,
    chunk_id: ChunkId,
    tallies: Tallies,
    version: Option<u64>,
    withheld: u64,
    /// Whether a complete read adds to [`WITHHELD_RECORDS_TOTAL`] (not for a recount).
    metric: bool,
    done: bool,
}

impl<I> ReadState<I> {
    fn fail(mut self, e: Error) -> Option<(Result<Vec<I>>, Self)> {
        self.done = true;
        Some((Err(e), self))
    }
}

async fn step<I: Send + 'static>(mut s: ReadState<I>) -> Option<(Result<Vec<I>>, ReadState<I>)> {
    if s.done {
        return None;
    }
    let before = match s.version {
        Some(v) => v,
        None => match s.registry.version().await {
            Ok(v) => {
                s.version = Some(v);
                v
            }
            Err(e) => return s.fail(e),
        },
    };
    loop {
        match s.inner.next().await {
            Some(Ok(batch)) => {
                let registry = Arc::clone(&s.registry);
                match withhold(&*registry, &s.subject_of, &s.chunk_id, batch).await {
                    Ok((kept, n)) => {
                        s.withheld += n;
                        if !kept.is_empty() {
                            return Some((Ok(kept), s));
                        }
                    }
                    Err(e) => return s.fail(e),
                }
            }
            Some(Err(e)) => return s.fail(e),
            None => {
                let after = match s.registry.version().await {
                    Ok(v) => v,
                    Err(e) => return s.fail(e),
                };
                if after != before {
                    let e = PrivacyError::RegistryChanged {
                        chunk_id: s.chunk_id.clone(),
                        registry: s.registry.name().to_owned(),
                        before,
                        after,
                    };
                    return s.fail(Error::transient("privacy", e));
                }
                let tally = Tally {
                    withheld: s.withheld,
                    version: before,
                };
                if let Ok(mut t) = s.tallies.lock() {
                    t.insert(s.chunk_id.clone(), tally);
                }
                if s.metric {
                    metrics::counter!(WITHHELD_RECORDS_TOTAL, "registry" => s.registry.name().to_owned())
                        .increment(s.withheld);
                }
                return None;
            }
        }
    }
}

/// Drops the records of forgotten subjects from `batch`, with one registry lookup.
async fn withhold<I>(
    registry: &dyn ForgottenSubjects,
    subject_of: &SubjectOf<I>,
    chunk_id: &ChunkId,
    batch: Vec<I>,
) -> Result<(Vec<I>, u64)> {
    let subjects: Vec<Option<String>> = batch.iter().map(|r| subject_of(r)).collect();
    let distinct: BTreeSet<&str> = subjects.iter().flatten().map(String::as_str).collect();
    if distinct.is_empty() {
        return Ok((batch, 0));
    }
    let asked: Vec<&str> = distinct.into_iter().collect();
    let answer = registry.forgotten(&asked).await?;
    if answer.len() != asked.len() {
        return Err(Error::adapter(
            "privacy",
            PrivacyError::RegistryAnswer {
                chunk_id: chunk_id.clone(),
                registry: registry.name().to_owned(),
                asked: asked.len(),
                answered: answer.len(),
            },
        ));
    }
    let gone: HashSet<&str> = asked
        .iter()
        .zip(answer)
        .filter_map(|(s, f)| f.then_some(*s))
        .collect();
    let mut kept = Vec::with_capacity(batch.len());
    let mut withheld = 0;
    for (record, subject) in batch.into_iter().zip(&subjects) {
        if subject.as_deref().is_some_and(|s| gone.contains(s)) {
            withheld += 1;
        } else {
            kept.push(record);
        }
    }
    Ok((kept, withheld))
}

#[async_trait]
impl<S, I> BackfillSource<I> for Withheld<S, I>
where
    S: BackfillSource<I>,
    I: Send + 'static,
{
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn plan(&self, manifest: &RunManifest) -> Result<SourcePlan> {
        let mut findings = self.policy.findings(manifest, self.clock.now());
        let named = manifest
            .privacy
            .as_ref()
            .and_then(|p| p.forgotten_registry.as_deref())
            .map(str::trim);
        if let Some(named) = named.filter(|n| !n.is_empty() && *n != self.registry.name()) {
            findings.push(Finding {
                code: "privacy_registry_mismatch".into(),
                severity: Severity::Blocking,
                question: QUESTION.into(),
                field: "privacy.forgotten_registry".into(),
                message: format!(
                    "the manifest consults registry `{named}`, the source `{}`",
                    self.registry.name()
                ),
            });
        }
        if !findings.is_empty() {
            return Err(Error::BlockingFindings {
                run_id: manifest.run_id.clone(),
                findings,
            });
        }
        self.registry.version().await?;
        self.inner.plan(manifest).await
    }

    fn read(&self, chunk: &PlannedChunk) -> BoxStream<'static, Result<Vec<I>>> {
        self.read_counted(chunk, true)
    }

    async fn chunk_evidence(&self, chunk: &PlannedChunk) -> Result<Option<Value>> {
        let inner = self.inner.chunk_evidence(chunk).await?;
        let (tally, recounted) = match self.tally(&chunk.id) {
            Some(t) => (t, false),
            None => {
                let mut read = self.read_counted(chunk, false);
                while let Some(batch) = read.next().await {
                    batch?;
                }
                let t = self.tally(&chunk.id).ok_or_else(|| {
                    Error::adapter(
                        "privacy",
                        format!("chunk {}: no tally after a read", chunk.id),
                    )
                })?;
                (t, true)
            }
        };
        let mut out = match inner {
            Some(Value::Object(m)) => m,
            Some(other) => Map::from_iter([("inner".to_owned(), other)]),
            None => Map::new(),
        };
        out.insert("withheld".into(), tally.withheld.into());
        out.insert("registry".into(), self.registry.name().into());
        out.insert("registry_version".into(), tally.version.into());
        if recounted {
            out.insert("recounted".into(), true.into());
        }
        Ok(Some(Value::Object(out)))
    }
}

impl<S, I> Withheld<S, I>
where
    S: BackfillSource<I>,
    I: Send + 'static,
{
    /// Reads `chunk` through the policy and the registry; `metric`: whether a complete read adds
    /// to the withheld counter.
    fn read_counted(
        &self,
        chunk: &PlannedChunk,
        metric: bool,
    ) -> BoxStream<'static, Result<Vec<I>>> {
        if let Ok(mut t) = self.tallies.lock() {
            t.remove(&chunk.id);
        }
        if let Err(reason) = self.policy.check_range(&chunk.range, self.clock.now()) {
            let e = Error::adapter(
                "privacy",
                PrivacyError::Retention {
                    chunk_id: chunk.id.clone(),
                    reason,
                },
            );
            return stream::once(async move { Err(e) }).boxed();
        }
        let state = ReadState {
            inner: self.inner.read(chunk),
            registry: Arc::clone(&self.registry),
            subject_of: Arc::clone(&self.subject_of),
            chunk_id: chunk.id.clone(),
            tallies: Arc::clone(&self.tallies),
            version: None,
            withheld: 0,
            metric,
            done: false,
        };
        stream::unfold(state, step).boxed()
    }
}
