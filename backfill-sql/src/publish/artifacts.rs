//! The staged rows a publish request names: every chunk's [`SqlArtifact`], checked against the
//! staging table it points at before anything is published.

use std::collections::BTreeMap;

use backfill_core::digest::PartitionDigests;
use backfill_core::ids::{ChunkId, PartitionKey, RunId};
use backfill_core::manifest::RunManifest;
use backfill_core::publish::PublishRequest;
use backfill_core::Error as CoreError;

use super::{refuse, SqlPublisher};
use crate::dialect::Dialect;
use crate::error::db;
use crate::ident::QualifiedName;
use crate::pool::with_pool;
use crate::sink::{SqlArtifact, CHUNK_COLUMN};

/// Where a run's staged rows are, once the request's artifacts have been checked.
#[derive(Debug, Clone)]
pub(crate) struct Staged {
    /// The staging table, or `None` when the run staged no chunk at all.
    pub(crate) table: Option<QualifiedName>,
    /// Rows staged (the sum of the artifacts' row counts, which the table must match).
    pub(crate) rows: u64,
    /// Each artifact's chunk: the attempt and the rows the ledger recorded.
    chunks: BTreeMap<String, (u32, u64)>,
}

impl Staged {
    /// A `FROM` item yielding the staged rows, aliased `s`; `None` when nothing was staged.
    pub(crate) fn source(&self, d: Dialect) -> Option<String> {
        self.table(d).map(|t| format!("{t} s"))
    }

    /// The staging table, quoted; `None` when nothing was staged.
    pub(crate) fn table(&self, d: Dialect) -> Option<String> {
        self.table.as_ref().map(|t| t.quoted(d))
    }

    /// The query that counts the staging table's rows per chunk, for [`Self::verify_counts`];
    /// `None` when nothing was staged.
    pub(crate) fn count_sql(&self, d: Dialect) -> Option<String> {
        let c = d.quote(CHUNK_COLUMN);
        let t = self.table.as_ref()?;
        Some(format!(
            "SELECT {c}, COUNT(*) FROM {} GROUP BY {c}",
            t.quoted(d)
        ))
    }

    /// The table must hold exactly the artifacts' chunks, with the ledger's row counts: `counts`
    /// is what [`Self::count_sql`] returned. The publishing transaction runs the count (beside its
    /// statements, on a second connection when the pool has one idle) and commits only if this
    /// passes.
    pub(crate) fn verify_counts(
        &self,
        run: &RunId,
        counts: Vec<(String, i64)>,
    ) -> backfill_core::Result<()> {
        let Some(table) = &self.table else {
            return Ok(());
        };
        let chunks = &self.chunks;
        let counts: BTreeMap<String, i64> = counts.into_iter().collect();
        for (chunk, n) in &counts {
            let Some((_, rows)) = chunks.get(chunk) else {
                return Err(refuse(
                    run,
                    format!("staging table `{table}` holds chunk {chunk}, which the ledger has not accepted"),
                ));
            };
            if u64::try_from(*n).ok() != Some(*rows) {
                return Err(refuse(
                    run,
                    format!("chunk {chunk}: the ledger recorded {rows} rows, staging table `{table}` holds {n}"),
                ));
            }
        }
        if let Some((chunk, (_, rows))) = chunks
            .iter()
            .find(|(c, (_, rows))| *rows > 0 && !counts.contains_key(*c))
        {
            return Err(refuse(
                run,
                format!("chunk {chunk}: the ledger recorded {rows} rows, staging table `{table}` holds none"),
            ));
        }
        Ok(())
    }
}

impl<R> SqlPublisher<R> {
    /// Parses the request's artifacts and checks them: each names a [`SqlArtifact`] of this target,
    /// staged beside it, for the chunk and attempt the ledger recorded; all name the one staging
    /// table this database registered for the run. Anything else is refused before publishing.
    /// That the table holds exactly the artifacts' chunks with the row counts the ledger recorded
    /// is checked before the publication commits ([`Staged::verify_counts`]).
    pub(crate) async fn staged(&self, req: &PublishRequest<'_>) -> backfill_core::Result<Staged> {
        let run = req.run_id;
        let target = self.target.to_string();
        let mut table: Option<QualifiedName> = None;
        let mut chunks: BTreeMap<String, (u32, u64)> = BTreeMap::new();
        for a in req.artifacts {
            let art = SqlArtifact::from_artifact(&a.artifact)?;
            if art.target != target {
                return Err(refuse(
                    run,
                    format!(
                        "chunk {} was staged for target `{}`, not `{target}`",
                        a.chunk_id, art.target
                    ),
                ));
            }
            if art.chunk_id != a.chunk_id.as_str() {
                return Err(refuse(
                    run,
                    format!(
                        "the artifact of chunk {} names chunk {}",
                        a.chunk_id, art.chunk_id
                    ),
                ));
            }
            if art.attempt != a.attempt {
                return Err(fenced(run, &a.chunk_id, art.attempt, a.attempt));
            }
            let t = QualifiedName::parse(&art.table)?;
            if t.schema() != self.target.schema() {
                return Err(refuse(
                    run,
                    format!("staging table `{t}` is not beside target `{target}`"),
                ));
            }
            match &table {
                Some(prev) if *prev != t => {
                    return Err(refuse(
                        run,
                        format!("chunks were staged into two tables, `{prev}` and `{t}`"),
                    ))
                }
                Some(_) => {}
                None => table = Some(t),
            }
            chunks.insert(art.chunk_id, (art.attempt, a.rows));
        }
        let Some(table) = table else {
            return Ok(Staged {
                table: None,
                rows: 0,
                chunks,
            });
        };
        self.check_registered(run, &table).await?;
        self.check_fences(run, &chunks).await?;
        Ok(Staged {
            table: Some(table),
            rows: chunks.values().map(|(_, rows)| rows).sum(),
            chunks,
        })
    }

    /// The table must be the one this database registered for the run and target: a table of
    /// another database, or one the sink discarded, is refused.
    async fn check_registered(
        &self,
        run: &RunId,
        table: &QualifiedName,
    ) -> backfill_core::Result<()> {
        let d = self.pool.dialect();
        let sql = d.sql("SELECT table_name FROM bf_staging_tables WHERE run_id = ? AND target = ?");
        let registered: Option<String> = with_pool!(&self.pool, p => {
            sqlx::query_scalar(&sql)
                .bind(run.as_str())
                .bind(self.target.to_string())
                .fetch_optional(p)
                .await
                .map_err(db)?
        });
        let same = registered
            .as_deref()
            .is_some_and(|r| r == table.to_string() || r == table.name().as_str());
        if same && self.exists(table).await? {
            return Ok(());
        }
        Err(refuse(
            run,
            format!(
                "staging table `{table}` is not registered for target `{}` in this database ({})",
                self.target,
                registered.map_or_else(
                    || "none is: discarded or staged elsewhere".to_owned(),
                    |r| format!("`{r}` is")
                ),
            ),
        ))
    }

    /// A chunk whose latest staging attempt is not the ledger's is refused as fenced.
    async fn check_fences(
        &self,
        run: &RunId,
        chunks: &BTreeMap<String, (u32, u64)>,
    ) -> backfill_core::Result<()> {
        let d = self.pool.dialect();
        let sql =
            d.sql("SELECT chunk_id, attempt FROM bf_stage_fences WHERE run_id = ? AND target = ?");
        let fences: Vec<(String, i64)> = with_pool!(&self.pool, p => {
            sqlx::query_as(&sql)
                .bind(run.as_str())
                .bind(self.target.to_string())
                .fetch_all(p)
                .await
                .map_err(db)?
        });
        for (chunk, fence) in fences {
            let fence = u32::try_from(fence).unwrap_or(u32::MAX);
            if let Some((attempt, _)) = chunks.get(&chunk) {
                if *attempt != fence {
                    return Err(fenced(run, &ChunkId::from(chunk.as_str()), *attempt, fence));
                }
            }
        }
        Ok(())
    }

    /// The partitions a publication covers: the staged rows' and the manifest's, sorted.
    ///
    /// The staged rows' partitions are read from the staging table (one scan), unless `counted`
    /// gives the ledger's digests and they account for every staged row: then their partitions are
    /// taken as they are, and the caller must check in its transaction that each partition holds
    /// exactly its digest's rows (see [`counted`]).
    pub(crate) async fn partitions(
        &self,
        staged: &Staged,
        manifest: &RunManifest,
        counted: Option<&PartitionDigests>,
    ) -> backfill_core::Result<Vec<PartitionKey>> {
        let mut partitions = match counted {
            Some(digests) => digests.0.keys().cloned().collect(),
            None => self.staged_partitions(staged).await?,
        };
        partitions.extend(manifest.target.partitions.iter().cloned());
        partitions.sort();
        partitions.dedup();
        Ok(partitions)
    }

    /// The distinct partitions of the staged rows.
    async fn staged_partitions(&self, staged: &Staged) -> backfill_core::Result<Vec<PartitionKey>> {
        let d = self.pool.dialect();
        let Some(src) = staged.source(d) else {
            return Ok(Vec::new());
        };
        let p = d.quote(self.schema.partition_column);
        let sql = format!("SELECT DISTINCT s.{p} FROM {src}");
        let v: Vec<String> = with_pool!(&self.pool, pool => sqlx::query_scalar(&sql).fetch_all(pool).await.map_err(db)?);
        Ok(v.into_iter().map(PartitionKey::from).collect())
    }
}

/// The request's digests when their row counts add up to the staged rows (checked against the
/// staging table), so that their partitions can stand for the staged rows' partitions. Not when
/// nothing was staged, nor when a caller passed no digests or digests of other rows.
pub(crate) fn counted<'a>(
    staged: &Staged,
    digests: &'a PartitionDigests,
) -> Option<&'a PartitionDigests> {
    let total: u64 = digests.0.values().map(|d| d.rows).sum();
    (staged.rows > 0 && total == staged.rows).then_some(digests)
}

fn fenced(run: &RunId, chunk: &ChunkId, attempt: u32, current: u32) -> CoreError {
    CoreError::Fenced {
        run_id: run.clone(),
        chunk_id: chunk.clone(),
        attempt,
        current,
    }
}
