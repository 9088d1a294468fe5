//! The file-import ledger: which files a file backfill has seen, and what it does with duplicates.

use backfill_core::ids::RunId;
use backfill_core::manifest::RunManifest;
use backfill_core::Error as CoreError;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::error::{corrupt, db, is_unique_violation};
use crate::migrate::migrate;
use crate::pool::{with_pool, SqlPool};

/// What to do with a file seen before: the same path, or the same content under another path.
///
/// The manifest states it in `source.duplicate_files` (covered by the manifest digest and its
/// approval); [`RunManifest::duplicate_file_policy`] reads it.
pub use backfill_core::manifest::DuplicateFilePolicy as DuplicatePolicy;

/// What identifies a landed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIdentity {
    /// Path (or object key).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Hash of the content, such as `sha256:<hex>`.
    pub content_hash: String,
    /// The business date the file covers.
    pub business_date: chrono::NaiveDate,
    /// Schema version of its content.
    pub schema_version: String,
}

/// One ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Derived from path and content hash.
    pub file_id: String,
    /// The file.
    pub identity: FileIdentity,
    /// When first registered.
    pub first_seen_at: DateTime<Utc>,
    /// The run whose output includes it, once accepted.
    pub accepted_run_id: Option<RunId>,
    /// The earlier file this one corrects.
    pub corrects_file_id: Option<String>,
    /// `pending`, `accepted`, `ignored`, `reprocess`, `correction` or `rejected`.
    pub status: String,
}

/// What to do with a registered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileDecision {
    /// New: process it.
    Process(FileRecord),
    /// Seen before; process it again under the manifest's policy.
    Reprocess(FileRecord),
    /// Seen before; process it as a correction of `corrects`.
    Correction(FileRecord),
    /// Seen before; skip it.
    Skip(FileRecord),
}

/// The ledger, in the `bf_file_imports` table.
#[derive(Debug, Clone)]
pub struct FileLedger {
    pool: SqlPool,
}

fn file_id(path: &str, content_hash: &str) -> String {
    let mut h = Sha256::new();
    h.update(path.as_bytes());
    h.update([0]);
    h.update(content_hash.as_bytes());
    hex::encode(h.finalize())[..32].to_owned()
}

impl FileLedger {
    /// A ledger on `pool` (migrated on creation).
    pub async fn new(pool: SqlPool) -> backfill_core::Result<Self> {
        migrate(&pool).await?;
        Ok(Self { pool })
    }

    /// Registers a landed file for `manifest`'s run and decides by its duplicate policy.
    /// A file refused by `reject` is recorded as `rejected` and returned as an error naming it.
    pub async fn register(
        &self,
        manifest: &RunManifest,
        file: &FileIdentity,
        now: DateTime<Utc>,
    ) -> backfill_core::Result<FileDecision> {
        let policy = manifest.duplicate_file_policy()?;
        let id = file_id(&file.path, &file.content_hash);
        let earlier = self.find_duplicate(file).await?;
        let (status, corrects) = match (&earlier, policy) {
            (None, _) => ("pending", None),
            (Some(e), _) if e.file_id == id => {
                // Exactly this file again.
                let decision = match policy {
                    DuplicatePolicy::Ignore => FileDecision::Skip(e.clone()),
                    DuplicatePolicy::Reject => return Err(self.rejected(manifest, file, e)),
                    DuplicatePolicy::Reprocess | DuplicatePolicy::Correction => {
                        FileDecision::Reprocess(e.clone())
                    }
                };
                return Ok(decision);
            }
            (Some(_), DuplicatePolicy::Ignore) => ("ignored", None),
            (Some(e), DuplicatePolicy::Reject) => {
                self.insert(&id, file, now, "rejected", None).await?;
                return Err(self.rejected(manifest, file, e));
            }
            (Some(_), DuplicatePolicy::Reprocess) => ("reprocess", None),
            (Some(e), DuplicatePolicy::Correction) => ("correction", Some(e.file_id.clone())),
        };
        let record = self.insert(&id, file, now, status, corrects).await?;
        Ok(match status {
            "pending" => FileDecision::Process(record),
            "ignored" => FileDecision::Skip(record),
            "reprocess" => FileDecision::Reprocess(record),
            _ => FileDecision::Correction(record),
        })
    }

    fn rejected(&self, m: &RunManifest, file: &FileIdentity, earlier: &FileRecord) -> CoreError {
        CoreError::PublishRefused {
            run_id: m.run_id.clone(),
            reason: format!(
                "file {} duplicates {} (first seen {}), and the manifest's duplicate policy is reject",
                file.path, earlier.identity.path, earlier.first_seen_at
            ),
        }
    }

    async fn insert(
        &self,
        id: &str,
        file: &FileIdentity,
        now: DateTime<Utc>,
        status: &str,
        corrects: Option<String>,
    ) -> backfill_core::Result<FileRecord> {
        let d = self.pool.dialect();
        let r = with_pool!(&self.pool, p => {
            sqlx::query(&d.sql("INSERT INTO bf_file_imports (file_id, path, size_bytes, content_hash, business_date, schema_version, first_seen_at, accepted_run_id, corrects_file_id, status) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)"))
                .bind(id)
                .bind(&file.path)
                .bind(i64::try_from(file.size).unwrap_or(i64::MAX))
                .bind(&file.content_hash)
                .bind(file.business_date.to_string())
                .bind(&file.schema_version)
                .bind(now.timestamp_micros())
                .bind(&corrects)
                .bind(status)
                .execute(p)
                .await
                .map(|_| ())
        });
        match r {
            Ok(()) => {}
            // Registered concurrently by another worker: theirs stands.
            Err(e) if is_unique_violation(&e) => return self.get(id).await?.ok_or_else(|| db(e)),
            Err(e) => return Err(db(e)),
        }
        Ok(FileRecord {
            file_id: id.to_owned(),
            identity: file.clone(),
            first_seen_at: now,
            accepted_run_id: None,
            corrects_file_id: corrects,
            status: status.to_owned(),
        })
    }

    /// Marks a file as part of an accepted run's output.
    pub async fn accept(&self, file_id: &str, run_id: &RunId) -> backfill_core::Result<()> {
        let d = self.pool.dialect();
        with_pool!(&self.pool, p => {
            sqlx::query(&d.sql("UPDATE bf_file_imports SET accepted_run_id = ?, status = 'accepted' WHERE file_id = ?"))
                .bind(run_id.as_str())
                .bind(file_id)
                .execute(p)
                .await
                .map(|_| ())
                .map_err(db)
        })
    }

    /// One file.
    pub async fn get(&self, file_id: &str) -> backfill_core::Result<Option<FileRecord>> {
        self.query("file_id = ?", &[file_id])
            .await
            .map(|mut v| v.pop())
    }

    /// The earliest file with the same path or the same content.
    async fn find_duplicate(
        &self,
        file: &FileIdentity,
    ) -> backfill_core::Result<Option<FileRecord>> {
        let mut v = self
            .query(
                "path = ? OR content_hash = ?",
                &[&file.path, &file.content_hash],
            )
            .await?;
        v.sort_by_key(|r| r.first_seen_at);
        Ok(v.into_iter().next())
    }

    async fn query(&self, cond: &str, binds: &[&str]) -> backfill_core::Result<Vec<FileRecord>> {
        let d = self.pool.dialect();
        let sql = d.sql(&format!("SELECT file_id, path, size_bytes, content_hash, business_date, schema_version, first_seen_at, accepted_run_id, corrects_file_id, status FROM bf_file_imports WHERE {cond}")).into_owned();
        type Raw = (
            String,
            String,
            i64,
            String,
            String,
            String,
            i64,
            Option<String>,
            Option<String>,
            String,
        );
        let rows: Vec<Raw> = with_pool!(&self.pool, p => {
            let mut q = sqlx::query(&sql);
            for b in binds {
                q = q.bind(*b);
            }
            q.fetch_all(p)
                .await
                .map_err(db)?
                .iter()
                .map(|r| -> Result<Raw, sqlx::Error> {
                    Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?, r.try_get(6)?, r.try_get(7)?, r.try_get(8)?, r.try_get(9)?))
                })
                .collect::<Result<_, _>>()
                .map_err(db)?
        });
        rows.into_iter()
            .map(
                |(file_id, path, size, hash, date, schema, seen, accepted, corrects, status)| {
                    Ok(FileRecord {
                        file_id,
                        identity: FileIdentity {
                            path,
                            size: u64::try_from(size).map_err(|e| corrupt("file size", e))?,
                            content_hash: hash,
                            business_date: date.parse().map_err(|e| corrupt("business date", e))?,
                            schema_version: schema,
                        },
                        first_seen_at: crate::store::from_micros(seen)?,
                        accepted_run_id: accepted.map(RunId::from),
                        corrects_file_id: corrects,
                        status,
                    })
                },
            )
            .collect()
    }
}
