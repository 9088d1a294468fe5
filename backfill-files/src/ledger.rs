//! The import ledger: which file contents a source has imported, keyed by content hash with the
//! path as an attribute, and the duplicate policy that decides what a landed file is.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use backfill_core::manifest::DuplicateFilePolicy;
use backfill_core::{Error, Result};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::state::Decision;

/// What the ledger holds for one content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportStatus {
    /// Part of a published run's output.
    Accepted,
    /// Refused by the `reject` policy.
    Rejected,
    /// Accepted once, then corrected by another content at the same path.
    Superseded,
}

impl ImportStatus {
    /// `accepted`, `rejected` or `superseded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Superseded => "superseded",
        }
    }

    /// Reads [`as_str`](Self::as_str) back.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "accepted" => Some(Self::Accepted),
            "rejected" => Some(Self::Rejected),
            "superseded" => Some(Self::Superseded),
            _ => None,
        }
    }
}

/// One ledger row: a content (sha256) of a source, where it was seen, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRecord {
    /// The source (the manifest's `source.name`).
    pub source: String,
    /// Lower-case hex sha256 of the content: the key, with `source`.
    pub sha256: String,
    /// Where it landed.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Business date it covers.
    pub business_date: NaiveDate,
    /// Schema version, if known.
    pub schema_version: Option<String>,
    /// The run whose plan decided it.
    pub run_id: String,
    /// What became of it.
    pub status: ImportStatus,
    /// sha256 of the content it corrects (the `correction` policy).
    pub corrects: Option<String>,
    /// When the ledger committed it.
    pub recorded_at: DateTime<Utc>,
}

/// Where the import ledger lives.
///
/// # Contract
/// 1. Records are keyed by `(source, sha256)`; `path` is an attribute.
/// 2. `known` returns the committed records of `source` whose path is one of `paths` or whose
///    hash is one of `hashes`, in any order; `accepted` those with status `accepted` whose
///    business date is in the range. Neither changes anything.
/// 3. `commit` stores all its records or none. A record whose key exists replaces it, except that
///    a `superseded` record stays superseded and an `accepted` one is never replaced by a
///    `rejected` one. A record with
///    `corrects` marks the corrected content `superseded`. Committing the same records twice
///    leaves the ledger as after the first commit, so a retried commit is safe.
/// 4. Errors that may pass are [`ErrorKind::Transient`](backfill_core::ErrorKind).
#[async_trait]
pub trait ImportLedger: fmt::Debug + Send + Sync + 'static {
    /// Committed records of `source` at any of `paths` or with any of `hashes`.
    async fn known(
        &self,
        source: &str,
        paths: &[String],
        hashes: &[String],
    ) -> Result<Vec<ImportRecord>>;

    /// The `accepted` records of `source` whose business date is in `[from, to_exclusive)`, in
    /// any order: the contents that make up those dates so far.
    async fn accepted(
        &self,
        source: &str,
        from: NaiveDate,
        to_exclusive: NaiveDate,
    ) -> Result<Vec<ImportRecord>>;

    /// Stores `records`, all or nothing (see the contract).
    async fn commit(&self, records: &[ImportRecord]) -> Result<()>;
}

/// An import ledger in memory, for tests and single-process tools.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    rows: Mutex<BTreeMap<(String, String), ImportRecord>>,
}

impl MemoryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every record, ordered by source and hash.
    pub fn records(&self) -> Vec<ImportRecord> {
        self.rows
            .lock()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }
}

fn poisoned() -> Error {
    Error::adapter("files", "the in-memory import ledger's lock is poisoned")
}

#[async_trait]
impl ImportLedger for MemoryLedger {
    async fn known(
        &self,
        source: &str,
        paths: &[String],
        hashes: &[String],
    ) -> Result<Vec<ImportRecord>> {
        let rows = self.rows.lock().map_err(|_| poisoned())?;
        Ok(rows
            .values()
            .filter(|r| {
                r.source == source && (paths.contains(&r.path) || hashes.contains(&r.sha256))
            })
            .cloned()
            .collect())
    }

    async fn accepted(
        &self,
        source: &str,
        from: NaiveDate,
        to_exclusive: NaiveDate,
    ) -> Result<Vec<ImportRecord>> {
        let rows = self.rows.lock().map_err(|_| poisoned())?;
        Ok(rows
            .values()
            .filter(|r| {
                r.source == source
                    && r.status == ImportStatus::Accepted
                    && r.business_date >= from
                    && r.business_date < to_exclusive
            })
            .cloned()
            .collect())
    }

    async fn commit(&self, records: &[ImportRecord]) -> Result<()> {
        let mut rows = self.rows.lock().map_err(|_| poisoned())?;
        for r in records {
            let key = (r.source.clone(), r.sha256.clone());
            let keep = rows.get(&key).is_some_and(|old| {
                old.status == ImportStatus::Superseded
                    || (r.status == ImportStatus::Rejected && old.status != ImportStatus::Rejected)
            });
            if !keep {
                rows.insert(key, r.clone());
            }
            if let Some(c) = &r.corrects {
                if let Some(old) = rows.get_mut(&(r.source.clone(), c.clone())) {
                    old.status = ImportStatus::Superseded;
                }
            }
        }
        Ok(())
    }
}

/// Decides what to do with a landed file at `path` with content `sha256`, given the committed
/// records `known` of its source (from [`ImportLedger::known`], plus files earlier in the same
/// plan) and the manifest's duplicate policy.
///
/// | the file | `ignore` | `reprocess` | `correction` | `reject` |
/// |---|---|---|---|---|
/// | new path, new content | process | process | process | process |
/// | same path, same content | skip | skip | skip | skip |
/// | same path, new content | skip | reprocess | correction (supersedes) | reject |
/// | known content, new path | skip | reprocess | skip | reject |
///
/// Rejected records are not "known": content refused once is judged again when it lands again.
pub fn decide(
    policy: DuplicateFilePolicy,
    path: &str,
    sha256: &str,
    known: &[ImportRecord],
) -> Decision {
    let live = |r: &&ImportRecord| r.status != ImportStatus::Rejected;
    let same_content = known.iter().filter(live).find(|r| r.sha256 == sha256);
    if let Some(r) = same_content {
        if r.path == path {
            return Decision::Skip {
                reason: format!(
                    "{path} with sha256 {sha256} was already imported by run {}",
                    r.run_id
                ),
            };
        }
        let seen = format!(
            "{path} has the content (sha256 {sha256}) of {}, imported by run {}",
            r.path, r.run_id
        );
        return match policy {
            DuplicateFilePolicy::Ignore => Decision::Skip {
                reason: format!("{seen}; the duplicate policy is ignore"),
            },
            DuplicateFilePolicy::Correction => Decision::Skip {
                reason: format!("{seen}; identical content corrects nothing"),
            },
            DuplicateFilePolicy::Reprocess => Decision::Reprocess {
                previous: r.path.clone(),
            },
            DuplicateFilePolicy::Reject => Decision::Reject {
                reason: format!("{seen}; the duplicate policy is reject"),
            },
        };
    }
    let same_path = known
        .iter()
        .filter(|r| r.status == ImportStatus::Accepted && r.path == path)
        .max_by_key(|r| r.recorded_at);
    let Some(r) = same_path else {
        return Decision::Process;
    };
    let changed = format!(
        "{path} landed again with sha256 {sha256}; run {} imported it with sha256 {}",
        r.run_id, r.sha256
    );
    match policy {
        DuplicateFilePolicy::Ignore => Decision::Skip {
            reason: format!("{changed}; the duplicate policy is ignore"),
        },
        DuplicateFilePolicy::Correction => Decision::Correction {
            corrects: r.sha256.clone(),
        },
        DuplicateFilePolicy::Reprocess => Decision::Reprocess {
            previous: r.sha256.clone(),
        },
        DuplicateFilePolicy::Reject => Decision::Reject {
            reason: format!("{changed}; the duplicate policy is reject"),
        },
    }
}
