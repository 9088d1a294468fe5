//! [`HttpSource`]: a [`BackfillSource`] over a JSON API that captures a chunk's pages on first read
//! and replays the capture on every read.

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::manifest::RunManifest;
use backfill_core::plan::{PlannedChunk, SourcePlan};
use backfill_core::source::BackfillSource;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::builder::Clock;
use crate::capture::{Capture, CaptureStore, CapturedPage, PageRef};
use crate::client::{describe, Client};
use crate::error::{HttpError, Result};
use crate::scan::{self, ChunkState, Scan};

/// How the source reads the endpoint's JSON pages.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub(crate) path: String,
    pub(crate) scan: Scan,
    pub(crate) offset_param: String,
    pub(crate) limit_param: String,
    pub(crate) page_size: u32,
    pub(crate) records_at: String,
    pub(crate) total_at: Option<String>,
    pub(crate) key_field: String,
    pub(crate) recheck_first_page: bool,
    pub(crate) extra_query: Vec<(String, String)>,
    pub(crate) max_captures: u32,
    pub(crate) max_pages: u32,
}

pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) client: Client,
    pub(crate) shape: Shape,
    pub(crate) store: Arc<dyn CaptureStore>,
    pub(crate) clock: Clock,
}

/// A source over a JSON HTTP API: plans a manifest with one of the [`Scan`] patterns and reads each
/// chunk by capture, then replay.
///
/// The first read of a chunk fetches every page (rate-limited, retried, re-authenticated as
/// needed), checks the listing did not drift while it was paged, and stores the pages in its
/// [`CaptureStore`]; every read, the first included, then replays the stored pages. A retry, a
/// re-read or a restarted worker sharing the store sends no request for a captured chunk and sees
/// the same records. Build one with [`HttpSource::builder`](crate::HttpSourceBuilder).
pub struct HttpSource<I> {
    pub(crate) inner: Arc<Inner>,
    pub(crate) _records: PhantomData<fn() -> I>,
}

impl<I> Clone for HttpSource<I> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            _records: PhantomData,
        }
    }
}

impl<I> fmt::Debug for HttpSource<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSource")
            .field("name", &self.inner.name)
            .field("base", &self.inner.client.base)
            .field("path", &self.inner.shape.path)
            .field("vendor", &self.inner.client.vendor)
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

/// The key a chunk's capture is stored under: the chunk id plus a hash of the source's name and
/// the chunk's range and state, so a changed plan never replays an old capture.
pub fn capture_key(source: &str, chunk: &PlannedChunk) -> String {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update(b"\0");
    h.update(chunk.range.to_string().as_bytes());
    h.update(b"\0");
    h.update(chunk.state.0.to_string().as_bytes());
    format!("{}-{}", chunk.id, &hex::encode(h.finalize())[..16])
}

impl<I> HttpSource<I> {
    /// This chunk's capture key in this source's store.
    pub fn capture_key(&self, chunk: &PlannedChunk) -> String {
        capture_key(&self.inner.name, chunk)
    }

    /// The chunk's capture, if it was captured.
    pub async fn capture_of(&self, chunk: &PlannedChunk) -> Result<Option<Capture>> {
        self.inner.store.get_capture(&self.capture_key(chunk)).await
    }

    /// One digest over the captures of `chunks` (sha256 over their digests in order): the run's
    /// evidence of what it read. Fails if a chunk was not captured.
    pub async fn captures_digest(&self, chunks: &[PlannedChunk]) -> Result<String> {
        let mut h = Sha256::new();
        for c in chunks {
            let key = self.capture_key(c);
            let capture = self
                .inner
                .store
                .get_capture(&key)
                .await?
                .ok_or_else(|| HttpError::capture(&key, "chunk not captured"))?;
            h.update(capture.digest.as_bytes());
            h.update(b"\n");
        }
        Ok(hex::encode(h.finalize()))
    }

    /// Deletes the raw pages of the chunk's capture unless its plan allowed keeping them (the
    /// manifest's `privacy.retention_checked`); the capture's digests stay. Call it once the run
    /// no longer needs to replay the chunk (after publication). Returns whether it purged.
    pub async fn purge_raw(&self, chunk: &PlannedChunk) -> Result<bool> {
        let key = self.capture_key(chunk);
        match self.inner.store.get_capture(&key).await? {
            Some(c) if !c.retain_raw => {
                self.inner.store.purge_raw(&key).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The capture store.
    pub fn capture_store(&self) -> Arc<dyn CaptureStore> {
        Arc::clone(&self.inner.store)
    }
}

#[async_trait]
impl<I> BackfillSource<I> for HttpSource<I>
where
    I: DeserializeOwned + Send + 'static,
{
    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn plan(&self, manifest: &RunManifest) -> backfill_core::Result<SourcePlan> {
        scan::plan(&self.inner.shape.scan, manifest, (self.inner.clock)()).map_err(|e| match e {
            HttpError::Config(message) => backfill_core::Error::InvalidManifest {
                run_id: manifest.run_id.clone(),
                field: "source.range".into(),
                message,
            },
            other => other.into(),
        })
    }

    fn read(&self, chunk: &PlannedChunk) -> BoxStream<'static, backfill_core::Result<Vec<I>>> {
        let inner = Arc::clone(&self.inner);
        let chunk = chunk.clone();
        stream::once(async move {
            match inner.captured(&chunk).await {
                Ok(capture) => replay::<I>(inner, chunk, capture),
                Err(e) => stream::once(async move { Err(e.into()) }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }
}

/// Which records of a page belong to the chunk.
enum Keep {
    All,
    Window {
        field: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    Ids {
        from: u64,
        to: u64,
    },
    Before(String),
}

impl Keep {
    fn of(state: &ChunkState, shape: &Shape) -> Self {
        match (state, &shape.scan) {
            (
                ChunkState::Window {
                    from, to_exclusive, ..
                },
                Scan::Window { cursor_field, .. },
            ) => Self::Window {
                field: cursor_field.clone(),
                from: *from,
                to: *to_exclusive,
            },
            (
                ChunkState::IdRange {
                    from, to_exclusive, ..
                }
                | ChunkState::Snapshot {
                    from, to_exclusive, ..
                },
                _,
            ) => Self::Ids {
                from: *from,
                to: *to_exclusive,
            },
            (ChunkState::Cursor { to_exclusive, .. }, _) => Self::Before(to_exclusive.clone()),
            _ => Self::All,
        }
    }

    fn admits(&self, record: &Value, key: &str) -> std::result::Result<bool, String> {
        match self {
            Self::All => Ok(true),
            Self::Window { field, from, to } => {
                let at = record
                    .get(field)
                    .and_then(Value::as_str)
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .ok_or_else(|| format!("record {key} has no RFC 3339 `{field}`"))?
                    .with_timezone(&Utc);
                Ok(*from <= at && at < *to)
            }
            Self::Ids { from, to } => {
                let id: u64 = key
                    .parse()
                    .map_err(|_| format!("record key {key} is not a decimal id"))?;
                Ok(*from <= id && id < *to)
            }
            Self::Before(end) => Ok(key_before(key, end)),
        }
    }
}

/// `key < end`, numerically when both are decimal numbers.
fn key_before(key: &str, end: &str) -> bool {
    match (key.parse::<u64>(), end.parse::<u64>()) {
        (Ok(k), Ok(e)) => k < e,
        _ => key < end,
    }
}

fn key_of(record: &Value, field: &str) -> Option<String> {
    match record.get(field)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn records_of<'v>(body: &'v Value, pointer: &str) -> Option<&'v Vec<Value>> {
    body.pointer(pointer)?.as_array()
}

impl Inner {
    /// The chunk's capture: the stored one, or a fresh one (retaken while the listing drifts).
    async fn captured(&self, chunk: &PlannedChunk) -> Result<Capture> {
        let key = capture_key(&self.name, chunk);
        if let Some(c) = self.store.get_capture(&key).await? {
            return Ok(c);
        }
        let state: ChunkState = chunk
            .state
            .parse()
            .map_err(|e| HttpError::Config(format!("chunk {}: {e}", chunk.id)))?;
        let mut attempt = 1;
        loop {
            match self.fetch(chunk, &state, &key, attempt).await {
                Ok(capture) => {
                    self.store.put_capture(&capture).await?;
                    return Ok(capture);
                }
                Err(e @ HttpError::Drift { .. }) if attempt < self.shape.max_captures => {
                    tracing::warn!(chunk = %chunk.id, attempt, error = %e, "fresh capture");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Fetches every page of the chunk into the store and checks the listing held still.
    async fn fetch(
        &self,
        chunk: &PlannedChunk,
        state: &ChunkState,
        key: &str,
        attempt: u32,
    ) -> Result<Capture> {
        let id = chunk.id.to_string();
        let shape = &self.shape;
        let mut path = shape.path.clone();
        let mut query = shape.extra_query.clone();
        match (state, &shape.scan) {
            (
                ChunkState::Window {
                    query_from,
                    to_exclusive,
                    ..
                },
                Scan::Window {
                    since_param,
                    before_param,
                    ..
                },
            ) => {
                query.push((since_param.clone(), query_from.to_rfc3339()));
                query.push((before_param.clone(), to_exclusive.to_rfc3339()));
            }
            (
                ChunkState::IdRange {
                    from, to_exclusive, ..
                },
                Scan::IdRange {
                    from_param,
                    to_param,
                    ..
                },
            ) => {
                query.push((from_param.clone(), from.to_string()));
                query.push((to_param.clone(), to_exclusive.to_string()));
            }
            (
                ChunkState::Snapshot {
                    export_id,
                    from,
                    to_exclusive,
                    ..
                },
                Scan::Snapshot {
                    from_param,
                    to_param,
                    ..
                },
            ) => {
                path = path.replace("{export_id}", export_id);
                query.push((from_param.clone(), from.to_string()));
                query.push((to_param.clone(), to_exclusive.to_string()));
            }
            (
                ChunkState::Cursor {
                    after,
                    to_exclusive,
                    ..
                },
                Scan::Cursor {
                    after_param,
                    next_pointer,
                },
            ) => {
                return self
                    .fetch_cursor(
                        &id,
                        &path,
                        query,
                        (after_param, next_pointer),
                        (after, to_exclusive),
                        key,
                        state.retain_raw(),
                        attempt,
                    )
                    .await;
            }
            _ => {
                return Err(HttpError::Config(format!(
                    "chunk {id}: its state {state:?} was planned by another scan than this source's"
                )))
            }
        }
        let mut pages = Vec::new();
        let mut seen = HashSet::new();
        let mut first_total: Option<u64> = None;
        let mut first_keys: Vec<String> = Vec::new();
        let mut offset: u64 = 0;
        loop {
            let mut q = query.clone();
            q.push((shape.offset_param.clone(), offset.to_string()));
            q.push((shape.limit_param.clone(), shape.page_size.to_string()));
            let (page, body) = self.page(&id, &path, &q).await?;
            let records = records_of(&body, &shape.records_at).ok_or_else(|| {
                parse_err(&id, &page, format!("no array at {}", shape.records_at))
            })?;
            let total = match &shape.total_at {
                Some(p) => Some(
                    body.pointer(p)
                        .and_then(Value::as_u64)
                        .ok_or_else(|| parse_err(&id, &page, format!("no count at {p}")))?,
                ),
                None => None,
            };
            if pages.is_empty() {
                first_total = total;
            } else if total != first_total {
                return Err(drift(
                    &id,
                    attempt,
                    format!(
                        "the listing's total moved from {} to {} at offset {offset}",
                        show(first_total),
                        show(total)
                    ),
                ));
            }
            for r in records {
                let k = key_of(r, &shape.key_field).ok_or_else(|| {
                    parse_err(
                        &id,
                        &page,
                        format!("a record has no key `{}`", shape.key_field),
                    )
                })?;
                if pages.is_empty() {
                    first_keys.push(k.clone());
                }
                if !seen.insert(k.clone()) {
                    return Err(drift(
                        &id,
                        attempt,
                        format!(
                            "record {k} came twice: rows shifted between pages at offset {offset}"
                        ),
                    ));
                }
            }
            let n = records.len() as u64;
            pages.push(self.keep(key, page, n).await?);
            offset += n;
            // With a total, page until it is reached; without one, until an empty page. An API
            // may serve shorter pages than asked for, so a short page never ends a listing.
            let last = match total {
                Some(t) => offset >= t || n == 0,
                None => n == 0,
            };
            if last {
                break;
            }
            if pages.len() as u64 >= u64::from(shape.max_pages) {
                return Err(HttpError::Config(format!(
                    "chunk {id}: more than {} pages; plan smaller chunks",
                    shape.max_pages
                )));
            }
        }
        if let Some(t) = first_total {
            if offset != t {
                return Err(drift(
                    &id,
                    attempt,
                    format!("the listing reported {t} records but paging returned {offset}"),
                ));
            }
        }
        if shape.recheck_first_page {
            let mut q = query.clone();
            q.push((shape.offset_param.clone(), "0".into()));
            q.push((shape.limit_param.clone(), shape.page_size.to_string()));
            let (page, body) = self.page(&id, &path, &q).await?;
            let again: Vec<String> = records_of(&body, &shape.records_at)
                .map(|rs| {
                    rs.iter()
                        .filter_map(|r| key_of(r, &shape.key_field))
                        .collect()
                })
                .ok_or_else(|| {
                    parse_err(&id, &page, format!("no array at {}", shape.records_at))
                })?;
            if again != first_keys {
                return Err(drift(
                    &id,
                    attempt,
                    "the first page changed while the chunk was paged".into(),
                ));
            }
        }
        Ok(Capture::new(
            key.to_owned(),
            pages,
            state.retain_raw(),
            attempt,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_cursor(
        &self,
        id: &str,
        path: &str,
        query: Vec<(String, String)>,
        (after_param, next_pointer): (&String, &String),
        (after, end): (&String, &String),
        key: &str,
        retain_raw: bool,
        attempt: u32,
    ) -> Result<Capture> {
        let shape = &self.shape;
        let mut pages = Vec::new();
        let mut cursor = after.clone();
        loop {
            let mut q = query.clone();
            q.push((after_param.clone(), cursor.clone()));
            q.push((shape.limit_param.clone(), shape.page_size.to_string()));
            let (page, body) = self.page(id, path, &q).await?;
            let records = records_of(&body, &shape.records_at)
                .ok_or_else(|| parse_err(id, &page, format!("no array at {}", shape.records_at)))?;
            let mut reached_end = false;
            for r in records {
                let k = key_of(r, &shape.key_field).ok_or_else(|| {
                    parse_err(
                        id,
                        &page,
                        format!("a record has no key `{}`", shape.key_field),
                    )
                })?;
                reached_end |= !key_before(&k, end);
            }
            let next = match body.pointer(next_pointer) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            let n = records.len() as u64;
            pages.push(self.keep(key, page, n).await?);
            match next {
                Some(next) if !reached_end && n > 0 => {
                    if next == cursor {
                        return Err(drift(
                            id,
                            attempt,
                            format!("the cursor did not advance past {cursor}"),
                        ));
                    }
                    cursor = next;
                }
                _ => break,
            }
            if pages.len() as u64 >= u64::from(shape.max_pages) {
                return Err(HttpError::Config(format!(
                    "chunk {id}: more than {} pages; plan a nearer end key",
                    shape.max_pages
                )));
            }
        }
        Ok(Capture::new(key.to_owned(), pages, retain_raw, attempt))
    }

    async fn page(
        &self,
        chunk: &str,
        path: &str,
        q: &[(String, String)],
    ) -> Result<(CapturedPage, Value)> {
        let answer = self.client.get(chunk, path, q).await?;
        let page = CapturedPage {
            request: describe(path, q),
            status: answer.status,
            headers: answer.headers,
            body: answer.body,
        };
        let body: Value =
            serde_json::from_str(&page.body).map_err(|e| parse_err(chunk, &page, e.to_string()))?;
        Ok((page, body))
    }

    async fn keep(&self, key: &str, page: CapturedPage, records: u64) -> Result<PageRef> {
        let (bytes, digest) = page.encode()?;
        self.store.put_blob(key, &digest, bytes).await?;
        Ok(PageRef { digest, records })
    }
}

fn show(total: Option<u64>) -> String {
    total.map_or_else(|| "none".into(), |t| t.to_string())
}

fn parse_err(chunk: &str, page: &CapturedPage, detail: String) -> HttpError {
    HttpError::Parse {
        chunk: chunk.into(),
        request: page.request.clone(),
        detail,
    }
}

fn drift(chunk: &str, attempt: u32, detail: String) -> HttpError {
    HttpError::Drift {
        chunk: chunk.into(),
        detail: format!("{detail} (capture attempt {attempt})"),
    }
}

/// Replays a capture page by page: one batch per page that keeps any record, de-duplicated by key.
fn replay<I: DeserializeOwned + Send + 'static>(
    inner: Arc<Inner>,
    chunk: PlannedChunk,
    capture: Capture,
) -> BoxStream<'static, backfill_core::Result<Vec<I>>> {
    let keep = match chunk.state.parse::<ChunkState>() {
        Ok(s) => Keep::of(&s, &inner.shape),
        Err(e) => return stream::once(async move { Err(e) }).boxed(),
    };
    let start = (inner, capture, keep, HashSet::<String>::new(), 0usize);
    stream::try_unfold(start, move |(inner, capture, keep, mut seen, mut at)| {
        let chunk_id = chunk.id.to_string();
        async move {
            while at < capture.pages.len() {
                let r = &capture.pages[at];
                at += 1;
                let bytes = inner.store.get_blob(&capture.key, &r.digest).await?;
                if hex::encode(Sha256::digest(&bytes)) != r.digest {
                    return Err(
                        HttpError::capture(&r.digest, "blob does not match its digest").into(),
                    );
                }
                let page: CapturedPage =
                    serde_json::from_slice(&bytes).map_err(|e| HttpError::capture(&r.digest, e))?;
                let body: Value = serde_json::from_str(&page.body)
                    .map_err(|e| parse_err(&chunk_id, &page, e.to_string()))?;
                let records = records_of(&body, &inner.shape.records_at)
                    .ok_or_else(|| parse_err(&chunk_id, &page, "no records array".into()))?;
                let mut batch = Vec::with_capacity(records.len());
                for rec in records {
                    let k = key_of(rec, &inner.shape.key_field)
                        .ok_or_else(|| parse_err(&chunk_id, &page, "a record has no key".into()))?;
                    let admitted = keep
                        .admits(rec, &k)
                        .map_err(|d| parse_err(&chunk_id, &page, d))?;
                    if !admitted || !seen.insert(k.clone()) {
                        continue;
                    }
                    let item = I::deserialize(rec)
                        .map_err(|e| parse_err(&chunk_id, &page, format!("record {k}: {e}")))?;
                    batch.push(item);
                }
                if !batch.is_empty() {
                    return Ok(Some((batch, (inner, capture, keep, seen, at))));
                }
            }
            Ok(None)
        }
    })
    .boxed()
}
