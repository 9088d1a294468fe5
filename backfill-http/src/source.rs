//! [`HttpSource`]: a [`BackfillSource`] over a JSON API that captures a chunk's pages on first read
//! and replays the capture on every read.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::manifest::RunManifest;
use backfill_core::plan::{PlannedChunk, SourcePlan};
use backfill_core::source::BackfillSource;
use futures::stream::{self, BoxStream, StreamExt};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::builder::Clock;
use crate::capture::{Capture, CaptureStore};
use crate::client::Client;
use crate::error::{HttpError, Result};
use crate::replay::replay;
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

    /// The chunk's capture in its staged evidence: digest, pages, records and the fresh captures
    /// it took, so a later reader can check the run read exactly this capture.
    async fn chunk_evidence(
        &self,
        chunk: &PlannedChunk,
    ) -> backfill_core::Result<Option<serde_json::Value>> {
        let key = self.capture_key(chunk);
        let capture = self
            .inner
            .store
            .get_capture(&key)
            .await?
            .ok_or_else(|| HttpError::capture(&key, "chunk staged without a capture"))?;
        Ok(Some(serde_json::json!({
            "capture_key": capture.key,
            "capture_digest": capture.digest,
            "pages": capture.pages.len(),
            "records": capture.records,
            "captures_taken": capture.attempts,
            "raw_retained": capture.retain_raw,
        })))
    }
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
                // Another worker may have stored a capture meanwhile: the first one stays.
                Ok(capture) => return self.store.put_capture(&capture).await,
                Err(e @ HttpError::Drift { .. }) if attempt < self.shape.max_captures => {
                    tracing::warn!(chunk = %chunk.id, attempt, error = %e, "fresh capture");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
