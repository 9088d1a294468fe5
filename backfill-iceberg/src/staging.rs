//! The staging ledger in the catalog database: per chunk, the highest attempt seen (the fence) and
//! the artifact of the latest complete attempt.

use backfill_core::ids::RunId;
use backfill_core::sink::{StageRequest, StagedArtifact};
use backfill_core::{Error, Result};
use iceberg::TableIdent;

use crate::catalog::IcebergCatalog;
use crate::commit::CatalogPool;
use crate::error::{corrupt, sql};
use crate::files::StagedFiles;

const DDL: &str = "CREATE TABLE IF NOT EXISTS backfill_iceberg_staging (\
    catalog_name VARCHAR(255) NOT NULL, \
    table_ident VARCHAR(512) NOT NULL, \
    run_id VARCHAR(255) NOT NULL, \
    chunk_id VARCHAR(255) NOT NULL, \
    attempt INTEGER NOT NULL, \
    staged_attempt INTEGER, \
    artifact TEXT, \
    PRIMARY KEY (catalog_name, table_ident, run_id, chunk_id))";

pub(crate) struct StagingRecords {
    pool: CatalogPool,
    catalog: String,
    table: String,
}

impl StagingRecords {
    pub(crate) fn new(catalog: &IcebergCatalog, table: &TableIdent) -> Self {
        Self {
            pool: catalog.pointer().pool().clone(),
            catalog: catalog.name().to_owned(),
            table: table.to_string(),
        }
    }

    pub(crate) async fn ensure(&self) -> Result<()> {
        // Concurrent first uses race on `CREATE TABLE IF NOT EXISTS` on PostgreSQL (a duplicate
        // type error for the loser): the table exists then, so try again.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.pool.execute(DDL, &[]).await {
                Ok(_) => return Ok(()),
                Err(_) if attempt < 4 => {
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => return Err(sql("creating backfill_iceberg_staging", e)),
            }
        }
    }

    /// Takes the chunk's fence for `req.attempt`, or fails with `Fenced` if a later attempt has it.
    pub(crate) async fn claim(&self, req: &StageRequest<'_>) -> Result<()> {
        let attempt = req.attempt.to_string();
        let n = self
            .pool
            .execute(
                "INSERT INTO backfill_iceberg_staging \
                 (catalog_name, table_ident, run_id, chunk_id, attempt) \
                 VALUES (?, ?, ?, ?, CAST(? AS INTEGER)) \
                 ON CONFLICT (catalog_name, table_ident, run_id, chunk_id) DO UPDATE \
                 SET attempt = excluded.attempt \
                 WHERE backfill_iceberg_staging.attempt <= excluded.attempt",
                &[
                    &self.catalog,
                    &self.table,
                    req.run_id.as_str(),
                    req.chunk_id.as_str(),
                    &attempt,
                ],
            )
            .await
            .map_err(|e| {
                sql(
                    format!("claiming chunk {} of run {}", req.chunk_id, req.run_id),
                    e,
                )
            })?;
        if n == 0 {
            return Err(self.fenced(req).await);
        }
        Ok(())
    }

    /// Records `artifact` as the chunk's staging if `req.attempt` still holds the fence; returns the
    /// attempt it replaced.
    pub(crate) async fn finish(
        &self,
        req: &StageRequest<'_>,
        artifact: &StagedArtifact,
    ) -> Result<Option<StagedFiles>> {
        let key = [
            self.catalog.as_str(),
            self.table.as_str(),
            req.run_id.as_str(),
            req.chunk_id.as_str(),
        ];
        let old = self
            .pool
            .fetch(
                "SELECT artifact FROM backfill_iceberg_staging WHERE catalog_name = ? \
                 AND table_ident = ? AND run_id = ? AND chunk_id = ?",
                &key,
            )
            .await
            .map_err(|e| sql("reading the staging ledger", e))?
            .into_iter()
            .next()
            .and_then(|mut r| r.pop().flatten());
        let json = serde_json::to_string(&artifact.0).map_err(|e| corrupt("staged artifact", e))?;
        let attempt = req.attempt.to_string();
        let n = self
            .pool
            .execute(
                "UPDATE backfill_iceberg_staging SET staged_attempt = CAST(? AS INTEGER), \
                 artifact = ? WHERE catalog_name = ? AND table_ident = ? AND run_id = ? \
                 AND chunk_id = ? AND attempt = CAST(? AS INTEGER)",
                &[&attempt, &json, key[0], key[1], key[2], key[3], &attempt],
            )
            .await
            .map_err(|e| {
                sql(
                    format!("recording chunk {} of run {}", req.chunk_id, req.run_id),
                    e,
                )
            })?;
        if n == 0 {
            return Err(self.fenced(req).await);
        }
        Ok(match old {
            Some(s) if s != json => serde_json::from_str(&s).ok(),
            _ => None,
        })
    }

    async fn fenced(&self, req: &StageRequest<'_>) -> Error {
        let current = self
            .pool
            .fetch(
                "SELECT CAST(attempt AS VARCHAR(20)) FROM backfill_iceberg_staging \
                 WHERE catalog_name = ? AND table_ident = ? AND run_id = ? AND chunk_id = ?",
                &[
                    &self.catalog,
                    &self.table,
                    req.run_id.as_str(),
                    req.chunk_id.as_str(),
                ],
            )
            .await
            .ok()
            .and_then(|rows| rows.into_iter().next())
            .and_then(|mut r| r.pop().flatten())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Error::Fenced {
            run_id: req.run_id.clone(),
            chunk_id: req.chunk_id.clone(),
            attempt: req.attempt,
            current,
        }
    }

    /// The latest complete attempt of every chunk of the run, by chunk id.
    pub(crate) async fn artifacts(&self, run_id: &RunId) -> Result<Vec<StagedFiles>> {
        self.ensure().await?;
        let rows = self
            .pool
            .fetch(
                "SELECT artifact FROM backfill_iceberg_staging WHERE catalog_name = ? \
                 AND table_ident = ? AND run_id = ? AND artifact IS NOT NULL ORDER BY chunk_id",
                &[&self.catalog, &self.table, run_id.as_str()],
            )
            .await
            .map_err(|e| sql(format!("reading the staging of run {run_id}"), e))?;
        rows.into_iter()
            .filter_map(|mut r| r.pop().flatten())
            .map(|s| {
                serde_json::from_str(&s)
                    .map_err(|e| corrupt(format!("staged files of run {run_id}"), e))
            })
            .collect()
    }

    pub(crate) async fn forget(&self, run_id: &RunId) -> Result<()> {
        self.pool
            .execute(
                "DELETE FROM backfill_iceberg_staging WHERE catalog_name = ? AND table_ident = ? \
                 AND run_id = ?",
                &[&self.catalog, &self.table, run_id.as_str()],
            )
            .await
            .map(|_| ())
            .map_err(|e| sql(format!("discarding the staging of run {run_id}"), e))
    }
}
