//! [`FileSource`]: plans a date range into chunks of hashed, manifest-checked, ledger-decided files
//! and reads them back verified.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::estimate::SizeEstimate;
use backfill_core::manifest::{InputRange, RunManifest};
use backfill_core::plan::{ChunkSpec, PlannedChunk, SourcePlan, SourceState};
use backfill_core::source::BackfillSource;
use backfill_core::{Error, ErrorKind, Result};
use chrono::{Days, NaiveDate};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;

use crate::decode::{decode, FileRow, Format};
use crate::landing::Landing;
use crate::layout::{self, PeriodManifest};
use crate::ledger::{decide, ImportLedger, ImportRecord, ImportStatus};
use crate::state::{snapshot_of, Decision, FileEntry, FilesState};

/// How planning splits the date range into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Period {
    /// One chunk per calendar month (the default).
    #[default]
    Month,
    /// One chunk per day.
    Day,
}

/// A landing area as a [`BackfillSource`] of [`FileRow<I>`]s.
///
/// Planning lists `landing/YYYY/MM/` for every month of the manifest's `dates` range, checks each
/// month against its `manifest/YYYY/MM/manifest.json` when there is one, hashes every file
/// (sha256), asks the import ledger (if any) what each file is under the manifest's
/// `source.duplicate_files` policy, and persists the sorted file list of each chunk as its source
/// state. With a ledger, the files it holds as imported for those dates (and not corrected now)
/// are part of the plan too ([`Decision::Imported`]): a chunk is the whole content of its dates,
/// so publishing it with `replace_partitions` never drops earlier imports. The plan's snapshot is
/// `files:sha256:<digest of the list>`.
///
/// Reading a chunk verifies every file's size and hash before decoding a row of it (a file
/// changed after planning is an [`Error::NonDeterministic`] naming it and both hashes), then
/// yields its rows in batches, file by file in path order. One file's content is held in memory
/// at a time (it is verified whole before any row is used). Files archived after an import are
/// read from the archive.
///
/// ```no_run
/// use std::sync::Arc;
/// use backfill_files::{FileRow, FileSource, LocalLanding, MemoryLedger};
///
/// #[derive(Debug, Clone, PartialEq, serde::Deserialize)]
/// struct Order { id: String, cents: i64 }
///
/// let source: FileSource<Order> = FileSource::new(Arc::new(LocalLanding::new("/data/orders")))
///     .with_ledger(Arc::new(MemoryLedger::new()))
///     .batch_size(1_000);
/// ```
pub struct FileSource<I> {
    landing: Arc<dyn Landing>,
    ledger: Option<Arc<dyn ImportLedger>>,
    period: Period,
    batch_size: usize,
    _records: PhantomData<fn() -> I>,
}

impl<I> fmt::Debug for FileSource<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSource")
            .field("landing", &self.landing)
            .field("ledger", &self.ledger)
            .field("period", &self.period)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

impl<I> FileSource<I> {
    /// A source over `landing`, without an import ledger (every file is read), chunked by month,
    /// in batches of 10 000 rows.
    pub fn new(landing: Arc<dyn Landing>) -> Self {
        Self {
            landing,
            ledger: None,
            period: Period::Month,
            batch_size: 10_000,
            _records: PhantomData,
        }
    }

    /// Decides every file against `ledger` at planning (see [`decide`]).
    pub fn with_ledger(mut self, ledger: Arc<dyn ImportLedger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Chunks by `period`.
    pub fn chunk_by(mut self, period: Period) -> Self {
        self.period = period;
        self
    }

    /// At most `n` rows per batch (at least 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The landing area.
    pub fn landing(&self) -> &Arc<dyn Landing> {
        &self.landing
    }

    /// Lists, checks and hashes the files of `[from, to_exclusive)`, sorted by path, undecided.
    async fn list(
        &self,
        run_id: &str,
        from: NaiveDate,
        to_exclusive: NaiveDate,
    ) -> Result<Vec<FileEntry>> {
        let mut out = Vec::new();
        for month in layout::months(from, to_exclusive) {
            let listed = self.period_manifest(run_id, month).await?;
            let mut landed = self.landing.list(&layout::landing_dir(month)).await?;
            landed.retain(|o| !layout::is_marker(&o.path));
            landed.sort_by(|a, b| a.path.cmp(&b.path));
            let mut expected: BTreeMap<&str, &layout::ManifestFile> = listed
                .as_ref()
                .map(|(_, m)| m.files.iter().map(|f| (f.path.as_str(), f)).collect())
                .unwrap_or_default();
            for object in landed {
                let readable = match Format::of(&object.path) {
                    Some(Format::Parquet) => cfg!(feature = "parquet"),
                    Some(_) => true,
                    None => false,
                };
                if !readable {
                    return Err(Error::Unsupported {
                        run_id: run_id.into(),
                        part: "files source".into(),
                        what: format!(
                            "read {}: its extension is none of csv, jsonl, ndjson{}",
                            object.path,
                            if cfg!(feature = "parquet") {
                                ", parquet"
                            } else {
                                " (parquet needs the `parquet` feature)"
                            }
                        ),
                    });
                }
                let (size, sha256) = self.landing.hash(&object.path).await?;
                if size != object.size {
                    return Err(conflict(
                        run_id,
                        &object.path,
                        format!("{} bytes as listed", object.size),
                        format!("{size} bytes while hashing (the file is being written)"),
                    ));
                }
                let mut entry = FileEntry {
                    business_date: layout::date_from_path(&object.path, month),
                    path: object.path,
                    size,
                    sha256,
                    e_tag: object.e_tag,
                    manifest_id: None,
                    producer_ts: None,
                    schema_version: None,
                    decision: Decision::Process,
                };
                if let Some((manifest_path, m)) = &listed {
                    let Some(f) = expected.remove(entry.path.as_str()) else {
                        return Err(conflict(
                            run_id,
                            &entry.path,
                            format!("listed in {manifest_path}"),
                            "a landed file the manifest does not list".into(),
                        ));
                    };
                    check_listed(run_id, manifest_path, f, &entry)?;
                    entry.business_date = f.business_date;
                    entry.manifest_id = Some(m.manifest_id.clone());
                    entry.producer_ts = f.producer_ts.or(m.producer_ts);
                    entry.schema_version = f
                        .schema_version
                        .clone()
                        .or_else(|| m.schema_version.clone());
                }
                if entry.business_date >= from && entry.business_date < to_exclusive {
                    out.push(entry);
                }
            }
            if let Some((manifest_path, _)) = &listed {
                for (missing, f) in expected {
                    if !self.archived(f).await? {
                        return Err(Error::NotFound {
                            run_id: run_id.into(),
                            what: format!("file {missing}, listed in {manifest_path},"),
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Whether a listed file that is not in landing was archived by an import (its listed hash
    /// names the archive path).
    async fn archived(&self, f: &layout::ManifestFile) -> Result<bool> {
        let Some(sha256) = &f.sha256 else {
            return Ok(false);
        };
        for status in ["accepted", "rejected", "ignored"] {
            let path = layout::archive_path(status, &sha256.to_ascii_lowercase(), &f.path);
            if self.landing.exists(&path).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The month's manifest, if the layout has one.
    async fn period_manifest(
        &self,
        run_id: &str,
        month: NaiveDate,
    ) -> Result<Option<(String, PeriodManifest)>> {
        let path = layout::manifest_path(month);
        if !self.landing.exists(&path).await? {
            return Ok(None);
        }
        let bytes = self.landing.get(&path).await?;
        let m: PeriodManifest = serde_json::from_slice(&bytes).map_err(|e| {
            Error::corrupt(
                format!("run {run_id}: period manifest {path}"),
                e.to_string(),
            )
        })?;
        Ok(Some((path, m)))
    }

    /// Decides every landed file against the ledger and against the files before it in the
    /// plan, and adds the files the ledger holds as imported for the dates (unless corrected
    /// now): what the dates are made of. Sorted by path, then hash.
    async fn decide_all(
        &self,
        manifest: &RunManifest,
        mut files: Vec<FileEntry>,
        from: NaiveDate,
        to_exclusive: NaiveDate,
    ) -> Result<Vec<FileEntry>> {
        let policy = manifest.duplicate_file_policy()?;
        let source = manifest.source.name.as_str();
        let Some(ledger) = &self.ledger else {
            let mut known = Vec::new();
            decide_each(policy, manifest, &mut files, &mut known);
            return Ok(files);
        };
        let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        let hashes: Vec<String> = files.iter().map(|f| f.sha256.clone()).collect();
        let mut known = ledger.known(source, &paths, &hashes).await?;
        decide_each(policy, manifest, &mut files, &mut known);
        let corrected: Vec<&str> = files
            .iter()
            .filter_map(|f| match &f.decision {
                Decision::Correction { corrects } => Some(corrects.as_str()),
                _ => None,
            })
            .collect();
        let mut carried: Vec<FileEntry> = ledger
            .accepted(source, from, to_exclusive)
            .await?
            .into_iter()
            .filter(|r| !corrected.contains(&r.sha256.as_str()))
            .map(|r| FileEntry {
                path: r.path,
                size: r.size,
                sha256: r.sha256,
                e_tag: None,
                manifest_id: None,
                producer_ts: None,
                business_date: r.business_date,
                schema_version: r.schema_version,
                decision: Decision::Imported { by_run: r.run_id },
            })
            .collect();
        files.append(&mut carried);
        files.sort_by(|a, b| (&a.path, &a.sha256).cmp(&(&b.path, &b.sha256)));
        Ok(files)
    }

    /// The chunk periods of `[from, to_exclusive)`.
    fn periods(&self, from: NaiveDate, to_exclusive: NaiveDate) -> Vec<(NaiveDate, NaiveDate)> {
        let mut out = Vec::new();
        let mut at = from;
        while at < to_exclusive {
            let next = match self.period {
                Period::Month => layout::next_month(at),
                Period::Day => at.checked_add_days(Days::new(1)).unwrap_or(NaiveDate::MAX),
            }
            .min(to_exclusive);
            out.push((at, next));
            at = next;
        }
        out
    }
}

/// Decides `files` in order; each file read becomes known to the files after it.
fn decide_each(
    policy: backfill_core::manifest::DuplicateFilePolicy,
    manifest: &RunManifest,
    files: &mut [FileEntry],
    known: &mut Vec<ImportRecord>,
) {
    for f in files.iter_mut() {
        f.decision = decide(policy, &f.path, &f.sha256, known);
        if f.is_read() {
            // A later file of this plan with the same content is a duplicate of this one.
            known.push(ImportRecord {
                source: manifest.source.name.clone(),
                sha256: f.sha256.clone(),
                path: f.path.clone(),
                size: f.size,
                business_date: f.business_date,
                schema_version: f.schema_version.clone(),
                run_id: manifest.run_id.to_string(),
                status: ImportStatus::Accepted,
                corrects: None,
                recorded_at: chrono::DateTime::<chrono::Utc>::MIN_UTC,
            });
        }
    }
}

fn conflict(run_id: &str, path: &str, expected: String, found: String) -> Error {
    Error::Conflict {
        run_id: run_id.into(),
        what: format!("file {path}"),
        expected,
        found,
    }
}

fn check_listed(
    run_id: &str,
    manifest_path: &str,
    listed: &layout::ManifestFile,
    entry: &FileEntry,
) -> Result<()> {
    let size_ok = listed.size.is_none_or(|s| s == entry.size);
    let hash_ok = listed
        .sha256
        .as_ref()
        .is_none_or(|h| h.eq_ignore_ascii_case(&entry.sha256));
    if size_ok && hash_ok {
        return Ok(());
    }
    Err(conflict(
        run_id,
        &entry.path,
        format!(
            "size {:?} sha256 {:?} as {manifest_path} lists",
            listed.size, listed.sha256
        ),
        format!("size {} sha256 {}", entry.size, entry.sha256),
    ))
}

#[async_trait]
impl<I> BackfillSource<FileRow<I>> for FileSource<I>
where
    I: DeserializeOwned + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        "files"
    }

    async fn plan(&self, manifest: &RunManifest) -> Result<SourcePlan> {
        let run_id = manifest.run_id.as_str();
        let (from, to_exclusive) = match &manifest.source.range {
            Some(InputRange::Dates { from, to_exclusive }) => (*from, *to_exclusive),
            other => {
                return Err(Error::InvalidManifest {
                    run_id: manifest.run_id.clone(),
                    field: "source.range".into(),
                    message: format!(
                        "a file source plans a dates range (business dates), not {other:?}"
                    ),
                })
            }
        };
        let listed = self.list(run_id, from, to_exclusive).await?;
        let files = self
            .decide_all(manifest, listed, from, to_exclusive)
            .await?;
        let snapshot = snapshot_of(&files);
        if let Some(pin) = &manifest.source.snapshot {
            if pin != &snapshot {
                return Err(Error::SnapshotMismatch {
                    run_id: manifest.run_id.clone(),
                    pinned: pin.clone(),
                    resolved: snapshot,
                });
            }
        }
        let mut chunks = Vec::new();
        for (start, end) in self.periods(from, to_exclusive) {
            let in_chunk: Vec<FileEntry> = files
                .iter()
                .filter(|f| f.business_date >= start && f.business_date < end)
                .cloned()
                .collect();
            let label = match self.period {
                Period::Month => start.format("%Y-%m").to_string(),
                Period::Day => start.to_string(),
            };
            let state = SourceState::of(&FilesState {
                run_id: run_id.to_owned(),
                source: manifest.source.name.clone(),
                files: in_chunk,
            })?;
            chunks.push(
                ChunkSpec::new(
                    InputRange::Dates {
                        from: start,
                        to_exclusive: end,
                    },
                    label,
                )
                .with_state(state),
            );
        }
        Ok(SourcePlan {
            snapshot: Some(snapshot),
            resolved_from: None,
            chunks,
        })
    }

    fn read(&self, chunk: &PlannedChunk) -> BoxStream<'static, Result<Vec<FileRow<I>>>> {
        let state: FilesState = match chunk.state.parse() {
            Ok(s) => s,
            Err(e) => return stream::once(async move { Err(e) }).boxed(),
        };
        let landing = Arc::clone(&self.landing);
        let batch = self.batch_size;
        let run_id = state.run_id;
        let files: Vec<FileEntry> = state.files.into_iter().filter(FileEntry::is_read).collect();
        stream::iter(files)
            .then(move |entry| {
                let landing = Arc::clone(&landing);
                let run_id = run_id.clone();
                async move { read_file::<I>(landing.as_ref(), &run_id, &entry).await }
            })
            .map_ok(move |rows| {
                let mut rows = rows.into_iter();
                let mut batches = Vec::new();
                loop {
                    let b: Vec<FileRow<I>> = rows.by_ref().take(batch).collect();
                    if b.is_empty() {
                        break;
                    }
                    batches.push(Ok(b));
                }
                stream::iter(batches)
            })
            .try_flatten()
            .boxed()
    }

    /// The bytes of the chunk's files that are read (their sizes as planning recorded them);
    /// records are not counted, since that means reading the files.
    async fn estimate(&self, chunk: &PlannedChunk) -> Result<SizeEstimate> {
        let state: FilesState = chunk.state.parse()?;
        let bytes = state
            .files
            .iter()
            .filter(|f| f.is_read())
            .map(|f| f.size)
            .fold(0u64, u64::saturating_add);
        Ok(SizeEstimate::bytes(bytes))
    }
}

/// Loads a planned file whose size and hash match the plan: from landing, else from the accepted
/// archive (a file imported by an earlier run is looked for in the archive first, since its path
/// in landing may hold newer content).
pub(crate) async fn load_verified(
    landing: &dyn Landing,
    run_id: &str,
    entry: &FileEntry,
) -> Result<Vec<u8>> {
    let archived = layout::archive_path("accepted", &entry.sha256, &entry.path);
    let places = if matches!(entry.decision, Decision::Imported { .. }) {
        [archived.as_str(), entry.path.as_str()]
    } else {
        [entry.path.as_str(), archived.as_str()]
    };
    let mut changed = None;
    for place in places {
        let bytes = match landing.get(place).await {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        if bytes.len() as u64 == entry.size && sha256 == entry.sha256 {
            return Ok(bytes);
        }
        changed.get_or_insert((bytes.len(), sha256));
    }
    match changed {
        // Not `Error::Conflict`: the runner takes any conflict in a chunk for a lost lease and
        // leaves the chunk to "its owner", so the run would wait for ever. The chunk cannot be
        // read as planned: its input is not reproducible, which fails the chunk.
        Some((size, sha256)) => Err(Error::NonDeterministic {
            run_id: run_id.into(),
            detail: format!(
                "file {} changed after planning: planned size {} sha256 {}, found size {size} sha256 {sha256}",
                entry.path, entry.size, entry.sha256
            ),
        }),
        None => Err(Error::NotFound {
            run_id: run_id.into(),
            what: format!(
                "file {} (sha256 {}), neither in landing nor at {archived},",
                entry.path, entry.sha256
            ),
        }),
    }
}

async fn read_file<I: DeserializeOwned>(
    landing: &dyn Landing,
    run_id: &str,
    entry: &FileEntry,
) -> Result<Vec<FileRow<I>>> {
    let format = Format::of(&entry.path).ok_or_else(|| Error::Unsupported {
        run_id: run_id.into(),
        part: "files source".into(),
        what: format!("read {}: unknown format", entry.path),
    })?;
    let bytes = load_verified(landing, run_id, entry).await?;
    decode(run_id, &entry.path, &entry.sha256, format, &bytes)
}
