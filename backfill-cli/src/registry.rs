//! What a pipeline team registers so that the tool can run and publish its jobs: transforms with
//! their sources and sinks ([`Job`]), and targets ([`Target`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::control::{Control, RunReport};
use backfill_core::digest::{OutputRow, PartitionDigests};
use backfill_core::estimate::Estimate;
use backfill_core::evidence::bundle::{verify_rows, EvidenceBundle, Verification};
use backfill_core::ids::{PartitionKey, RunId};
use backfill_core::manifest::RunManifest;
use backfill_core::plan::{PlannedChunk, SourcePlan};
use backfill_core::publish::{Publisher, TargetReader};
use backfill_core::runner::{Executor, ProgressListener};
use backfill_core::sink::StagingSink;
use backfill_core::source::BackfillSource;
use backfill_core::transform::DeterministicTransform;
use backfill_core::Result;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt as _, TryStreamExt};

/// Where the tool was pointed: the run store and whatever the team's jobs need (a warehouse).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The run store URL (`sqlite://…`, `postgres://…`, `mysql://…`).
    pub store: String,
    /// `--warehouse` / `BACKFILL_WAREHOUSE`, for the team's own targets and sources.
    pub warehouse: Option<String>,
}

/// A transform the tool can plan and run, with its source, sink and validators.
///
/// # Contract
/// 1. `transform` is the `transform.name` of the manifests this job runs.
/// 2. `plan` resolves a manifest's input without running anything or writing anywhere.
/// 3. `run` executes (or resumes) the run through the given control plane, reporting progress to
///    `progress`, and returns the executor's report; dropping the future stops it (a later `run`
///    resumes at the first unfinished chunk).
/// 4. `estimate`, like `plan`, runs nothing and writes nowhere.
#[async_trait]
pub trait Job: fmt::Debug + Send + Sync + 'static {
    /// The transform's name.
    fn transform(&self) -> &str;

    /// Resolves the manifest's input into chunks.
    async fn plan(&self, manifest: &RunManifest) -> Result<SourcePlan>;

    /// Plans the manifest's input and estimates it ([`Estimate`]) without running anything or
    /// writing anywhere. The default sizes chunks from what [`plan`](Self::plan) records; a job
    /// with its source at hand asks the source ([`BackfillSource::estimate`]).
    async fn estimate(&self, manifest: &RunManifest, now: DateTime<Utc>) -> Result<Estimate> {
        let planned = Planned {
            name: format!("{} (plan)", self.transform()),
            plan: self.plan(manifest).await?,
        };
        Estimate::resolve::<()>(manifest, &planned, now).await
    }

    /// Runs the run.
    async fn run(
        &self,
        control: Control,
        run_id: &RunId,
        progress: Arc<dyn ProgressListener>,
    ) -> Result<RunReport>;
}

type Build<T> = Arc<
    dyn Fn(Control, &RunManifest, Arc<dyn ProgressListener>) -> Result<Executor<T>>
        + Send
        + Sync
        + 'static,
>;

/// A [`Job`] from a function that builds the job's executor (source, transform, sink, publisher,
/// validators) for a control plane, the run's approved manifest (to pick the transform version it
/// names) and a progress listener; the executor's options should keep one worker id per host, so
/// that a restarted `run` gives its predecessor's leases back at once instead of waiting for them
/// to expire.
pub struct ExecutorJob<T: DeterministicTransform> {
    name: String,
    source: Arc<dyn BackfillSource<T::Input>>,
    build: Build<T>,
}

impl<T: DeterministicTransform> fmt::Debug for ExecutorJob<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorJob")
            .field("transform", &self.name)
            .finish_non_exhaustive()
    }
}

impl<T: DeterministicTransform> ExecutorJob<T> {
    /// The job for manifests naming `transform`; `source` plans, `build` makes the executor.
    pub fn new(
        transform: impl Into<String>,
        source: Arc<dyn BackfillSource<T::Input>>,
        build: impl Fn(Control, &RunManifest, Arc<dyn ProgressListener>) -> Result<Executor<T>>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        Self {
            name: transform.into(),
            source,
            build: Arc::new(build),
        }
    }
}

#[async_trait]
impl<T: DeterministicTransform> Job for ExecutorJob<T> {
    fn transform(&self) -> &str {
        &self.name
    }

    async fn plan(&self, manifest: &RunManifest) -> Result<SourcePlan> {
        self.source.plan(manifest).await
    }

    async fn estimate(&self, manifest: &RunManifest, now: DateTime<Utc>) -> Result<Estimate> {
        Estimate::resolve(manifest, self.source.as_ref(), now).await
    }

    async fn run(
        &self,
        control: Control,
        run_id: &RunId,
        progress: Arc<dyn ProgressListener>,
    ) -> Result<RunReport> {
        let (approved, _) = control.load(run_id).await?;
        (self.build)(control.clone(), approved.manifest(), progress)?
            .run(run_id)
            .await
    }
}

/// A plan already made, as a source that only plans: what the default [`Job::estimate`] sizes.
#[derive(Debug)]
struct Planned {
    name: String,
    plan: SourcePlan,
}

#[async_trait]
impl BackfillSource<()> for Planned {
    fn name(&self) -> &str {
        &self.name
    }

    async fn plan(&self, _: &RunManifest) -> Result<SourcePlan> {
        Ok(self.plan.clone())
    }

    fn read(&self, chunk: &PlannedChunk) -> BoxStream<'static, Result<Vec<()>>> {
        let e = backfill_core::Error::adapter(
            "cli",
            format!(
                "chunk {}: a plan made for an estimate is never read",
                chunk.id
            ),
        );
        futures::stream::once(async move { Err(e) }).boxed()
    }
}

/// One partition of a diff: what readers see now against what the run staged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionDiff {
    /// The partition.
    pub partition: PartitionKey,
    /// Rows readers see now.
    pub rows_before: u64,
    /// Rows the run staged.
    pub rows_after: u64,
    /// Keys whose row differs (added, removed or changed).
    pub changed_keys: Vec<String>,
    /// The target's [key measures](TypedTarget::measure), summed over the partition.
    pub measures: Vec<MeasureDiff>,
}

/// A key measure of one partition (breaches, amount, events): its sum over the rows readers see
/// now and over the rows the run staged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MeasureDiff {
    /// The measure's name.
    pub name: String,
    /// Sum over the visible rows.
    pub before: i128,
    /// Sum over the staged rows.
    pub after: i128,
}

impl MeasureDiff {
    /// `after - before`.
    pub fn delta(&self) -> i128 {
        self.after - self.before
    }
}

/// A published target the tool can publish to, roll back, diff and verify against.
///
/// # Contract
/// 1. `publisher` is the target's [`Publisher`]; its descriptor names the target.
/// 2. `diff` compares what readers see now with what `run` staged, per partition, and never
///    changes either.
/// 3. `verify` re-checks an exported bundle against the staged rows and, when `visible` (the run
///    is the target's accepted one), against the rows readers see (see [`verify_rows`]).
#[async_trait]
pub trait Target: fmt::Debug + Send + Sync + 'static {
    /// The publisher.
    fn publisher(&self) -> Arc<dyn Publisher>;

    /// Per-partition diff of the run's staging against the visible rows.
    async fn diff(&self, run: &RunId, partitions: &[PartitionKey]) -> Result<Vec<PartitionDiff>>;

    /// Online verification of a bundle; `visible` when its run is what readers see now.
    async fn verify(&self, bundle: &EvidenceBundle, visible: bool) -> Result<Verification>;
}

type KeyOf<R> = Arc<dyn Fn(&R) -> String + Send + Sync + 'static>;
type ContentOf<R> = Arc<dyn Fn(&R) -> Vec<u8> + Send + Sync + 'static>;
type MeasureOf<R> = Arc<dyn Fn(&R) -> i64 + Send + Sync + 'static>;

/// A [`Target`] over a typed sink and reader (a SQL table, an Iceberg table, a topic), rows keyed by
/// `key` within their partition for diffs, and compared on their canonical encoding unless
/// [`compare_by`](Self::compare_by) says what their content is.
pub struct TypedTarget<R: OutputRow> {
    publisher: Arc<dyn Publisher>,
    reader: Arc<dyn TargetReader<R>>,
    sink: Arc<dyn StagingSink<R>>,
    key: KeyOf<R>,
    content: ContentOf<R>,
    measures: Vec<(String, MeasureOf<R>)>,
}

impl<R: OutputRow> fmt::Debug for TypedTarget<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedTarget")
            .field("target", &self.publisher.descriptor().name)
            .finish_non_exhaustive()
    }
}

impl<R: OutputRow> TypedTarget<R> {
    /// A target from its publisher, its reader, the sink that stages its runs, and a row key.
    pub fn new(
        publisher: Arc<dyn Publisher>,
        reader: Arc<dyn TargetReader<R>>,
        sink: Arc<dyn StagingSink<R>>,
        key: impl Fn(&R) -> String + Send + Sync + 'static,
    ) -> Self {
        Self {
            publisher,
            reader,
            sink,
            key: Arc::new(key),
            content: Arc::new(canonical::<R>),
            measures: Vec::new(),
        }
    }

    /// A key measure the diff sums per partition before and after (the business numbers an owner
    /// reviews: breaches, revenue, counts of a status), in the order declared.
    ///
    /// ```ignore
    /// target.measure("breaches", |r: &CaseSlaMonth| i64::from(r.breached))
    /// ```
    pub fn measure(
        mut self,
        name: impl Into<String>,
        f: impl Fn(&R) -> i64 + Send + Sync + 'static,
    ) -> Self {
        self.measures.push((name.into(), Arc::new(f)));
        self
    }

    fn sums<'r>(&self, rows: impl Iterator<Item = &'r R> + Clone) -> Vec<i128>
    where
        R: 'r,
    {
        self.measures
            .iter()
            .map(|(_, f)| rows.clone().map(|r| i128::from(f(r))).sum())
            .collect()
    }

    /// Compares rows on `content` instead of their whole canonical encoding: a key whose content is
    /// equal before and after is unchanged. Use it when rows carry fields that differ in every run
    /// (ids derived from the run id, a run's reason or timestamp), which would otherwise make every
    /// key look changed.
    pub fn compare_by(mut self, content: impl Fn(&R) -> String + Send + Sync + 'static) -> Self {
        self.content = Arc::new(move |r: &R| content(r).into_bytes());
        self
    }
}

/// Canonical bytes of a row, for "did this key's row change".
fn canonical<R: OutputRow>(r: &R) -> Vec<u8> {
    let mut out = Vec::new();
    if r.encode_canonical(&mut out).is_err() {
        out.clear();
    }
    out
}

#[async_trait]
impl<R: OutputRow> Target for TypedTarget<R> {
    fn publisher(&self) -> Arc<dyn Publisher> {
        Arc::clone(&self.publisher)
    }

    async fn diff(&self, run: &RunId, partitions: &[PartitionKey]) -> Result<Vec<PartitionDiff>> {
        let staged: Vec<R> = self.sink.read_staged(run).try_concat().await?;
        let mut new: BTreeMap<PartitionKey, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
        let mut staged_by: BTreeMap<PartitionKey, Vec<&R>> = BTreeMap::new();
        for r in &staged {
            let p = PartitionKey::from(r.partition().as_ref());
            new.entry(p.clone())
                .or_default()
                .insert((self.key)(r), (self.content)(r));
            staged_by.entry(p).or_default().push(r);
        }
        let mut keys: Vec<PartitionKey> = new.keys().cloned().collect();
        keys.extend(partitions.iter().cloned());
        keys.sort();
        keys.dedup();
        let mut out = Vec::with_capacity(keys.len());
        for p in keys {
            let old_rows: Vec<R> = self.reader.read_current(&p).try_concat().await?;
            let old: BTreeMap<String, Vec<u8>> = old_rows
                .iter()
                .map(|r| ((self.key)(r), (self.content)(r)))
                .collect();
            let empty = BTreeMap::new();
            let now = new.get(&p).unwrap_or(&empty);
            let mut changed: Vec<String> = now
                .iter()
                .filter(|(k, v)| old.get(*k) != Some(*v))
                .map(|(k, _)| k.clone())
                .chain(old.keys().filter(|k| !now.contains_key(*k)).cloned())
                .collect();
            changed.sort();
            let before = self.sums(old_rows.iter());
            let after = self.sums(staged_by.get(&p).into_iter().flatten().copied());
            let measures = self
                .measures
                .iter()
                .zip(before.into_iter().zip(after))
                .map(|((name, _), (before, after))| MeasureDiff {
                    name: name.clone(),
                    before,
                    after,
                })
                .collect();
            out.push(PartitionDiff {
                partition: p,
                rows_before: old.len() as u64,
                rows_after: now.len() as u64,
                changed_keys: changed,
                measures,
            });
        }
        Ok(out)
    }

    async fn verify(&self, bundle: &EvidenceBundle, visible: bool) -> Result<Verification> {
        let current = visible.then_some(self.reader.as_ref());
        verify_rows(bundle, Some(self.sink.as_ref()), current).await
    }
}

/// Jobs and targets by name.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    pub(crate) jobs: BTreeMap<String, Arc<dyn Job>>,
    pub(crate) targets: BTreeMap<String, Arc<dyn Target>>,
}

impl Registry {
    /// Nothing registered: the generic binary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a job under its transform name.
    pub fn job(mut self, job: impl Job) -> Self {
        self.jobs.insert(job.transform().to_owned(), Arc::new(job));
        self
    }

    /// Registers a target under its publisher's name.
    pub fn target(mut self, target: impl Target) -> Self {
        let name = target.publisher().descriptor().name;
        self.targets.insert(name, Arc::new(target));
        self
    }

    /// The registered job for a manifest's transform.
    pub(crate) fn job_for(&self, m: &RunManifest) -> std::result::Result<&Arc<dyn Job>, String> {
        self.jobs.get(&m.transform.name).ok_or_else(|| {
            format!(
                "run {}: no job is registered for transform `{}` (registered: {}); run it from the \
                 pipeline's own binary built on backfill_cli::run",
                m.run_id,
                m.transform.name,
                names(self.jobs.keys())
            )
        })
    }

    /// The registered target named `name`.
    pub(crate) fn target_named(&self, name: &str) -> std::result::Result<&Arc<dyn Target>, String> {
        self.targets.get(name).ok_or_else(|| {
            format!(
                "target `{name}` is not registered (registered: {}); publishing, rollback, diff and \
                 verify --against need the pipeline's binary built on backfill_cli::run",
                names(self.targets.keys())
            )
        })
    }

    /// A control plane over `store` with every registered target.
    pub(crate) fn control(
        &self,
        store: Arc<dyn backfill_core::store::RunStore>,
    ) -> Result<Control> {
        let mut c = Control::new(store);
        for t in self.targets.values() {
            c = c.with_target(t.publisher())?;
        }
        Ok(c)
    }
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Digests of two runs' ledgers compared per partition: `(partition, before, after)`.
pub(crate) fn ledger_diff(
    before: &PartitionDigests,
    after: &PartitionDigests,
) -> Vec<(PartitionKey, Option<String>, Option<String>)> {
    let mut keys: Vec<&PartitionKey> = before.0.keys().chain(after.0.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (a, b) = (before.0.get(k), after.0.get(k));
            (a != b).then(|| {
                (
                    k.clone(),
                    a.map(ToString::to_string),
                    b.map(ToString::to_string),
                )
            })
        })
        .collect()
}
