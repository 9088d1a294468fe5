//! What planning resolves per file and per chunk, persisted as the chunk's source state.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One landed file as planning saw it: where it is, what it holds (size and sha256), and what its
/// producer said about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the landing root, `/`-separated, such as `landing/2025/01/a.csv`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex sha256 of the content.
    pub sha256: String,
    /// The store's entity tag, where it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    /// Id of the period manifest that lists the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_id: Option<String>,
    /// When the producer wrote it, as its manifest says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_ts: Option<DateTime<Utc>>,
    /// The business date the file covers; it places the file in a chunk.
    pub business_date: NaiveDate,
    /// Schema version of the content, as its manifest says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    /// What the import ledger and the duplicate policy decided for it.
    pub decision: Decision,
}

impl FileEntry {
    /// The content hash as the ledger writes it: `sha256:<hex>`.
    pub fn content_hash(&self) -> String {
        format!("sha256:{}", self.sha256)
    }

    /// Whether the file's rows are read.
    pub fn is_read(&self) -> bool {
        self.decision.is_read()
    }
}

/// What happens to one planned file, decided at planning from the import ledger and the
/// manifest's duplicate policy (see [`decide`](crate::decide)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Decision {
    /// A file not seen before: read it.
    Process,
    /// Imported by an earlier run and not superseded: read again (from landing or the archive),
    /// since it is part of the dates' content; the ledger and the archive are left as they are.
    Imported {
        /// The run that imported it.
        by_run: String,
    },
    /// Seen before; read again under the `reprocess` policy.
    Reprocess {
        /// Hash of the earlier content at the same path, or the path where this content was seen.
        previous: String,
    },
    /// New content at a known path under the `correction` policy: read it; it supersedes the
    /// earlier file in the ledger.
    Correction {
        /// sha256 of the content it supersedes.
        corrects: String,
    },
    /// Not read: already imported (the same content), or skipped by the `ignore` policy.
    Skip {
        /// Why.
        reason: String,
    },
    /// Not read and refused by the `reject` policy; recorded as rejected and archived as such.
    Reject {
        /// Why, naming the file and both hashes.
        reason: String,
    },
}

impl Decision {
    /// Whether the file's rows are read.
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Self::Process
                | Self::Imported { .. }
                | Self::Reprocess { .. }
                | Self::Correction { .. }
        )
    }

    /// A short name: `process`, `imported`, `reprocess`, `correction`, `skip` or `reject`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Imported { .. } => "imported",
            Self::Reprocess { .. } => "reprocess",
            Self::Correction { .. } => "correction",
            Self::Skip { .. } => "skip",
            Self::Reject { .. } => "reject",
        }
    }
}

/// A chunk's source state: the run it was planned for and its files, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesState {
    /// The run the chunk belongs to (named in errors raised while reading).
    pub run_id: String,
    /// The source's name (the manifest's `source.name`), the import ledger's scope.
    pub source: String,
    /// The chunk's files, sorted by path.
    pub files: Vec<FileEntry>,
}

/// The digest of a file list as the plan's snapshot: `files:sha256:<hex>` over every file's path,
/// size and hash, in path (then hash) order. The same landing content gives the same snapshot whatever the
/// listing order; any added, removed or changed file gives another.
pub fn snapshot_of<'a>(files: impl IntoIterator<Item = &'a FileEntry>) -> String {
    let mut sorted: Vec<&FileEntry> = files.into_iter().collect();
    sorted.sort_by(|a, b| (&a.path, &a.sha256).cmp(&(&b.path, &b.sha256)));
    let mut h = Sha256::new();
    for f in sorted {
        h.update(f.path.as_bytes());
        h.update([0]);
        h.update(f.size.to_string().as_bytes());
        h.update([0]);
        h.update(f.sha256.as_bytes());
        h.update([b'\n']);
    }
    format!("files:sha256:{}", hex::encode(h.finalize()))
}
