//! Captures: every raw response of a chunk's first read, stored content-addressed, so re-reads and
//! retries replay exactly what the first read saw.
//!
//! A page is stored as a blob named by the sha256 of its canonical JSON
//! ([`CapturedPage`]: request, status, kept headers, body). A chunk's [`Capture`] lists its pages'
//! digests in order; its own [`digest`](Capture::digest) (sha256 over the page digests) is the
//! chunk's evidence of what it read. The capture is stored only once every page is in and the
//! drift checks passed, so a capture that exists is complete.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{HttpError, Result};

/// One raw response as captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedPage {
    /// Method, path and sorted query (never credentials).
    pub request: String,
    /// HTTP status.
    pub status: u16,
    /// The headers the source keeps (lower case).
    pub headers: std::collections::BTreeMap<String, String>,
    /// The body, as received.
    pub body: String,
}

impl CapturedPage {
    /// The page's canonical bytes and their sha256 (hex).
    pub fn encode(&self) -> Result<(Vec<u8>, String)> {
        let bytes = serde_json::to_vec(self).map_err(|e| HttpError::capture(&self.request, e))?;
        let digest = hex::encode(Sha256::digest(&bytes));
        Ok((bytes, digest))
    }
}

/// A page of a capture: its blob's digest and how many records it held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRef {
    /// sha256 of the page's blob.
    pub digest: String,
    /// Records in the page.
    pub records: u64,
}

/// Everything a chunk's first read received, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capture {
    /// The chunk's capture key ([`capture_key`](crate::source::capture_key)).
    pub key: String,
    /// Pages in the order they were read.
    pub pages: Vec<PageRef>,
    /// Records across the pages (before window filtering and de-duplication).
    pub records: u64,
    /// sha256 over the pages' digests: the capture's identity in evidence.
    pub digest: String,
    /// Whether the raw pages may be kept after the run (the manifest's privacy section).
    pub retain_raw: bool,
    /// Fresh captures it took to get one without drift.
    pub attempts: u32,
}

impl Capture {
    /// A capture of `pages`, computing its digest.
    pub fn new(key: String, pages: Vec<PageRef>, retain_raw: bool, attempts: u32) -> Self {
        let mut h = Sha256::new();
        for p in &pages {
            h.update(p.digest.as_bytes());
            h.update(b"\n");
        }
        Self {
            key,
            records: pages.iter().map(|p| p.records).sum(),
            digest: hex::encode(h.finalize()),
            pages,
            retain_raw,
            attempts,
        }
    }
}

/// Where captures and their page blobs live.
///
/// # Contract
/// 1. `put_blob` is idempotent: a blob is named by its capture's key and its content's digest, so
///    writing it twice is harmless, and a blob once written never changes. Blobs are kept per
///    capture, so purging one capture never removes a page another capture holds.
/// 2. `put_capture` makes a capture visible whole or not at all, and the first capture stored
///    under a key stays: a later one (a second worker that captured the same chunk) is dropped and
///    the stored one returned, so every reader replays the same pages. `get_capture` of a key never
///    returns a capture whose blobs were not all written before it.
/// 3. `purge_raw` deletes a capture's blobs but keeps the capture itself (digests and counts stay
///    as evidence); a replay of a purged capture fails rather than re-fetching.
#[async_trait]
pub trait CaptureStore: fmt::Debug + Send + Sync + 'static {
    /// Stores a blob of the capture `key` under its digest.
    async fn put_blob(&self, key: &str, digest: &str, bytes: Vec<u8>) -> Result<()>;
    /// Reads a blob of the capture `key`.
    async fn get_blob(&self, key: &str, digest: &str) -> Result<Vec<u8>>;
    /// Stores a complete capture unless one is stored under its key; returns the stored one.
    async fn put_capture(&self, capture: &Capture) -> Result<Capture>;
    /// The capture stored under `key`, if any.
    async fn get_capture(&self, key: &str) -> Result<Option<Capture>>;
    /// Deletes the capture's blobs, keeping the capture.
    async fn purge_raw(&self, key: &str) -> Result<()>;
}

/// Captures in memory: replay within one process (retries, re-reads), lost with it.
#[derive(Debug, Default)]
pub struct MemoryCaptureStore {
    blobs: Mutex<HashMap<(String, String), Vec<u8>>>,
    captures: Mutex<HashMap<String, Capture>>,
}

impl MemoryCaptureStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn blobs(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Vec<u8>>> {
        self.blobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn captures(&self) -> std::sync::MutexGuard<'_, HashMap<String, Capture>> {
        self.captures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl CaptureStore for MemoryCaptureStore {
    async fn put_blob(&self, key: &str, digest: &str, bytes: Vec<u8>) -> Result<()> {
        self.blobs()
            .entry((key.to_owned(), digest.to_owned()))
            .or_insert(bytes);
        Ok(())
    }

    async fn get_blob(&self, key: &str, digest: &str) -> Result<Vec<u8>> {
        self.blobs()
            .get(&(key.to_owned(), digest.to_owned()))
            .cloned()
            .ok_or_else(|| HttpError::capture(digest, "blob not found (purged?)"))
    }

    async fn put_capture(&self, capture: &Capture) -> Result<Capture> {
        Ok(self
            .captures()
            .entry(capture.key.clone())
            .or_insert_with(|| capture.clone())
            .clone())
    }

    async fn get_capture(&self, key: &str) -> Result<Option<Capture>> {
        Ok(self.captures().get(key).cloned())
    }

    async fn purge_raw(&self, key: &str) -> Result<()> {
        self.blobs().retain(|(k, _), _| k != key);
        Ok(())
    }
}

/// Captures in a local directory: `blobs/<key>/<digest>` and `captures/<key>.json`, each written to a
/// temporary file and renamed into place, so a crashed process leaves nothing half written and a
/// restarted one replays what was captured.
#[derive(Debug, Clone)]
pub struct DirCaptureStore {
    root: PathBuf,
}

impl DirCaptureStore {
    /// A store under `root` (created when missing).
    pub async fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        for dir in ["blobs", "captures", "tmp"] {
            tokio::fs::create_dir_all(root.join(dir))
                .await
                .map_err(|e| HttpError::capture(root.display().to_string(), e))?;
        }
        Ok(Self { root })
    }

    fn blob_dir(&self, key: &str) -> Result<PathBuf> {
        safe_key(key)?;
        Ok(self.root.join("blobs").join(key))
    }

    fn blob_path(&self, key: &str, digest: &str) -> Result<PathBuf> {
        if digest.is_empty() || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(HttpError::capture(digest, "not a hex digest"));
        }
        Ok(self.blob_dir(key)?.join(digest))
    }

    fn capture_path(&self, key: &str) -> Result<PathBuf> {
        safe_key(key)?;
        Ok(self.root.join("captures").join(format!("{key}.json")))
    }

    /// A temporary file of this process and call, beside the store's files.
    fn tmp_path(&self, path: &Path) -> PathBuf {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{name}.{}.{seq}", std::process::id()))
    }

    async fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = self.tmp_path(path);
        let err = |e: std::io::Error| HttpError::capture(path.display().to_string(), e);
        tokio::fs::write(&tmp, bytes).await.map_err(err)?;
        tokio::fs::rename(&tmp, path).await.map_err(err)
    }
}

#[async_trait]
impl CaptureStore for DirCaptureStore {
    async fn put_blob(&self, key: &str, digest: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.blob_path(key, digest)?;
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(());
        }
        tokio::fs::create_dir_all(self.blob_dir(key)?)
            .await
            .map_err(|e| HttpError::capture(key, e))?;
        self.write_atomic(&path, &bytes).await
    }

    async fn get_blob(&self, key: &str, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(key, digest)?;
        tokio::fs::read(&path)
            .await
            .map_err(|e| HttpError::capture(digest, format!("blob unreadable (purged?): {e}")))
    }

    async fn put_capture(&self, capture: &Capture) -> Result<Capture> {
        let key = &capture.key;
        let path = self.capture_path(key)?;
        let bytes = serde_json::to_vec_pretty(capture).map_err(|e| HttpError::capture(key, e))?;
        // Written aside, then linked into place: the link fails if a capture is already there.
        let tmp = self.tmp_path(&path);
        let err = |e: std::io::Error| HttpError::capture(key, e);
        tokio::fs::write(&tmp, &bytes).await.map_err(err)?;
        let linked = tokio::fs::hard_link(&tmp, &path).await;
        let _ = tokio::fs::remove_file(&tmp).await;
        match linked {
            Ok(()) => Ok(capture.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self
                .get_capture(key)
                .await?
                .ok_or_else(|| HttpError::capture(key, "capture vanished")),
            Err(e) => Err(err(e)),
        }
    }

    async fn get_capture(&self, key: &str) -> Result<Option<Capture>> {
        let path = self.capture_path(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| HttpError::capture(key, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(HttpError::capture(key, e)),
        }
    }

    async fn purge_raw(&self, key: &str) -> Result<()> {
        match tokio::fs::remove_dir_all(self.blob_dir(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(HttpError::capture(key, e)),
        }
    }
}

fn safe_key(key: &str) -> Result<()> {
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(HttpError::capture(key, "not a safe capture key"));
    }
    Ok(())
}
