//! The file-import ledger: which file contents a file backfill has seen (keyed by content hash, the
//! path an attribute), and what it does with duplicates.

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

/// The ledger, in the `bf_file_imports` table, keyed by content hash: one row per content of a
/// scope (a source), with the path where it landed as an attribute.
///
/// The key is `file_id`, derived from the scope and the content hash; rows of other scopes are
/// told apart by recomputing it, so scopes share the table without a column of their own.
#[derive(Debug, Clone)]
pub struct FileLedger {
    pool: SqlPool,
    scope: String,
}

/// The key of a content in a scope.
fn file_id(scope: &str, content_hash: &str) -> String {
    let mut h = Sha256::new();
    h.update(scope.as_bytes());
    h.update([0]);
    h.update(content_hash.as_bytes());
    hex::encode(h.finalize())[..32].to_owned()
}

impl FileLedger {
    /// A ledger on `pool` (migrated on creation), in the unnamed scope.
    pub async fn new(pool: SqlPool) -> backfill_core::Result<Self> {
        migrate(&pool).await?;
        Ok(Self {
            pool,
            scope: String::new(),
        })
    }

    /// The same ledger, scoped to one source (such as the manifest's `source.name`): contents are
    /// keyed per scope.
    pub fn scoped(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    /// The scope.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The key (`file_id`) of a content hash (such as `sha256:<hex>`) in this scope.
    pub fn key(&self, content_hash: &str) -> String {
        file_id(&self.scope, content_hash)
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
        let id = file_id(&self.scope, &file.content_hash);
        let earlier = self.find_duplicate(file).await?;
        let (status, corrects) = match (&earlier, policy) {
            (None, _) => ("pending", None),
            (Some(e), _) if e.file_id == id => {
                // This content again: a no-op at its own path; at another path, per the policy.
                let decision = match policy {
                    _ if e.identity.path == file.path => FileDecision::Skip(e.clone()),
                    DuplicatePolicy::Ignore | DuplicatePolicy::Correction => {
                        FileDecision::Skip(e.clone())
                    }
                    DuplicatePolicy::Reject => return Err(self.rejected(manifest, file, e)),
                    DuplicatePolicy::Reprocess => FileDecision::Reprocess(e.clone()),
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

    /// The earliest file of this scope with the same path or the same content, not counting
    /// rejected ones (content refused once is judged again when it lands again).
    async fn find_duplicate(
        &self,
        file: &FileIdentity,
    ) -> backfill_core::Result<Option<FileRecord>> {
        let mut v = self
            .lookup(
                std::slice::from_ref(&file.path),
                std::slice::from_ref(&file.content_hash),
            )
            .await?;
        v.retain(|r| r.status != "rejected");
        v.sort_by_key(|r| r.first_seen_at);
        Ok(v.into_iter().next())
    }

    /// The rows of this scope whose path is one of `paths` or whose content hash is one of
    /// `hashes`, queried in batches of at most 200 values.
    pub async fn lookup(
        &self,
        paths: &[String],
        hashes: &[String],
    ) -> backfill_core::Result<Vec<FileRecord>> {
        let mut out: Vec<FileRecord> = Vec::new();
        for (column, values) in [("path", paths), ("content_hash", hashes)] {
            for batch in values.chunks(200) {
                let marks = vec!["?"; batch.len()].join(", ");
                let binds: Vec<&str> = batch.iter().map(String::as_str).collect();
                for r in self
                    .query(&format!("{column} IN ({marks})"), &binds)
                    .await?
                {
                    if r.file_id == file_id(&self.scope, &r.identity.content_hash)
                        && !out.iter().any(|o| o.file_id == r.file_id)
                    {
                        out.push(r);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The rows of this scope with status `accepted` whose business date is in
    /// `[from, to_exclusive)`.
    pub async fn accepted_between(
        &self,
        from: chrono::NaiveDate,
        to_exclusive: chrono::NaiveDate,
    ) -> backfill_core::Result<Vec<FileRecord>> {
        let (from, to) = (from.to_string(), to_exclusive.to_string());
        let rows = self
            .query(
                "status = 'accepted' AND business_date >= ? AND business_date < ?",
                &[&from, &to],
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter(|r| r.file_id == file_id(&self.scope, &r.identity.content_hash))
            .collect())
    }

    /// Writes `rows` in one transaction, keyed by their content hash in this scope (their
    /// `file_id` is recomputed): a new content is inserted; a known one is updated, except that a
    /// superseded row stays so and an accepted row is never turned `rejected`; the row named by a row's
    /// `corrects_file_id` (see [`key`](Self::key)) becomes `superseded`. `accepted_run_id` is the
    /// run whose plan decided the row, `first_seen_at` when it is committed. Committing the same
    /// rows twice changes nothing more.
    pub async fn commit_rows(&self, rows: &[FileRecord]) -> backfill_core::Result<()> {
        let d = self.pool.dialect();
        let select = d
            .sql("SELECT status FROM bf_file_imports WHERE file_id = ?")
            .into_owned();
        let insert = d.sql("INSERT INTO bf_file_imports (file_id, path, size_bytes, content_hash, business_date, schema_version, first_seen_at, accepted_run_id, corrects_file_id, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)").into_owned();
        let update = d.sql("UPDATE bf_file_imports SET path = ?, size_bytes = ?, business_date = ?, schema_version = ?, accepted_run_id = ?, corrects_file_id = ?, status = ? WHERE file_id = ?").into_owned();
        let supersede = d
            .sql("UPDATE bf_file_imports SET status = 'superseded' WHERE file_id = ?")
            .into_owned();
        with_pool!(&self.pool, p => {
            let mut conn = crate::TxConn::acquire(p).await.map_err(db)?;
            let mut tx = conn.begin(None).await.map_err(db)?;
            for r in rows {
                let id = file_id(&self.scope, &r.identity.content_hash);
                let corrects = r.corrects_file_id.clone();
                let run = r.accepted_run_id.as_ref().map(RunId::as_str);
                let size = i64::try_from(r.identity.size).unwrap_or(i64::MAX);
                let existing: Option<(String,)> = sqlx::query_as(&select)
                    .bind(&id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
                match existing {
                    None => {
                        sqlx::query(&insert)
                            .bind(&id)
                            .bind(&r.identity.path)
                            .bind(size)
                            .bind(&r.identity.content_hash)
                            .bind(r.identity.business_date.to_string())
                            .bind(&r.identity.schema_version)
                            .bind(r.first_seen_at.timestamp_micros())
                            .bind(run)
                            .bind(&corrects)
                            .bind(&r.status)
                            .execute(&mut *tx)
                            .await
                            .map_err(db)?;
                    }
                    // A superseded content stays superseded; an imported one is never rejected.
                    Some((old,)) if old == "superseded" => {}
                    Some((old,)) if r.status == "rejected" && old != "rejected" => {}
                    Some(_) => {
                        sqlx::query(&update)
                            .bind(&r.identity.path)
                            .bind(size)
                            .bind(r.identity.business_date.to_string())
                            .bind(&r.identity.schema_version)
                            .bind(run)
                            .bind(&corrects)
                            .bind(&r.status)
                            .bind(&id)
                            .execute(&mut *tx)
                            .await
                            .map_err(db)?;
                    }
                }
                if let Some(c) = &corrects {
                    sqlx::query(&supersede)
                        .bind(c)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                }
            }
            tx.commit().await.map_err(db)
        })
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
