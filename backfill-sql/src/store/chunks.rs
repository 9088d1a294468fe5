//! The plan and the chunk ledger with leases.

use std::time::Duration;

use backfill_core::digest::{PartitionDigests, DIGEST_FORMAT_VERSION};
use backfill_core::ids::RunId;
use backfill_core::manifest::InputRange;
use backfill_core::plan::ResolvedPlan;
use backfill_core::store::{ChunkLease, ChunkOutcome, ChunkRecord, ChunkStatus};
use backfill_core::Error as CoreError;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{conflict, from_micros, json, micros, to_json};
use crate::dialect::Dialect;
use crate::error::{db, is_unique_violation};
use crate::pool::{with_pool, SqlPool};

const CLAIMABLE: &str = "run_id = ? AND (status = 'pending' OR status = 'failed' OR (status = 'claimed' AND (worker = ? OR lease_expires_at <= ?)))";
/// Claimable by `claim_within`: no unexpired lease, the claimer's own included (clause 11).
const CLAIMABLE_WITHIN: &str = "run_id = ? AND (status = 'pending' OR status = 'failed' OR (status = 'claimed' AND lease_expires_at <= ?))";

fn lease_end(now: DateTime<Utc>, lease_for: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease_for).unwrap_or(chrono::Duration::days(365))
}

pub(super) async fn put_plan(pool: &SqlPool, plan: &ResolvedPlan) -> backfill_core::Result<()> {
    let d = pool.dialect();
    let plan_json = to_json(plan);
    let r = with_pool!(pool, p => {
        let mut conn = crate::TxConn::acquire(p).await.map_err(db)?;
        let mut tx = conn.begin(None).await.map_err(db)?;
        let ins = sqlx::query(&d.sql("INSERT INTO bf_plans (run_id, manifest_digest, json) VALUES (?, ?, ?)"))
            .bind(plan.run_id.as_str())
            .bind(plan.manifest_digest.as_str())
            .bind(&plan_json)
            .execute(&mut *tx)
            .await;
        match ins {
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(db(e)),
            Ok(_) => {
                // Multi-row inserts, as many rows per statement as the engine's parameter limit allows.
                const COLS: usize = 7;
                for batch in plan.chunks.chunks((d.max_params() / COLS).min(1000)) {
                    let values = vec!["(?, ?, ?, ?, 'pending', 0, 0, 0, '{}', ?, ?, ?)"; batch.len()].join(", ");
                    let sql = format!("INSERT INTO bf_chunks (run_id, chunk_id, idx, range_json, status, attempts, input_count, output_count, digests_json, last_error, worker, digest_format) VALUES {values}");
                    let sql = d.sql(&sql);
                    let mut q = sqlx::query(&sql);
                    for c in batch {
                        q = q
                            .bind(plan.run_id.as_str())
                            .bind(c.id.as_str())
                            .bind(i64::from(c.index))
                            .bind(to_json(&c.range))
                            .bind(Option::<String>::None)
                            .bind(Option::<String>::None)
                            .bind(i64::from(DIGEST_FORMAT_VERSION));
                    }
                    q.execute(&mut *tx).await.map_err(db)?;
                }
                tx.commit().await.map_err(db)?;
                Ok(true)
            }
        }
    })?;
    if r {
        return Ok(());
    }
    // A plan exists (perhaps written by another worker a moment ago): same work is fine.
    match self::plan(pool, &plan.run_id).await? {
        Some(existing) if existing.same_work(plan) => Ok(()),
        _ => Err(conflict(
            &plan.run_id,
            "plan",
            "no plan or the same plan",
            "a different plan",
        )),
    }
}

pub(super) async fn plan(
    pool: &SqlPool,
    run_id: &RunId,
) -> backfill_core::Result<Option<ResolvedPlan>> {
    let d = pool.dialect();
    let text: Option<String> = with_pool!(pool, p => {
        sqlx::query_scalar(&d.sql("SELECT json FROM bf_plans WHERE run_id = ?"))
            .bind(run_id.as_str())
            .fetch_optional(p)
            .await
            .map_err(db)?
    });
    text.map(|t| json("plan", &t)).transpose()
}

struct Claimed {
    chunk_id: String,
    idx: i64,
    range_json: String,
    attempts: i64,
}

pub(super) async fn claim(
    pool: &SqlPool,
    run_id: &RunId,
    worker: &str,
    now: DateTime<Utc>,
    lease_for: Duration,
) -> backfill_core::Result<Option<ChunkLease>> {
    let d = pool.dialect();
    let expires = lease_end(now, lease_for);
    let set = "status = 'claimed', attempts = attempts + 1, worker = ?, lease_expires_at = ?, started_at = COALESCE(started_at, ?)";
    let returning = "chunk_id, idx, range_json, attempts";
    let claimed: Option<Claimed> = match pool {
        SqlPool::Postgres(_) | SqlPool::Sqlite(_) => {
            // One statement. PostgreSQL skips rows other claimers hold; SQLite serialises writers itself.
            let lock = if d == Dialect::Postgres {
                " FOR UPDATE SKIP LOCKED"
            } else {
                ""
            };
            let sql = d
                .sql(&format!(
                    "UPDATE bf_chunks SET {set} WHERE run_id = ? AND chunk_id = (SELECT chunk_id FROM bf_chunks WHERE {CLAIMABLE} ORDER BY idx LIMIT 1{lock}) RETURNING {returning}"
                ))
                .into_owned();
            with_pool!(pool, p => {
                sqlx::query(&sql)
                    .bind(worker)
                    .bind(micros(expires))
                    .bind(micros(now))
                    .bind(run_id.as_str())
                    .bind(run_id.as_str())
                    .bind(worker)
                    .bind(micros(now))
                    .fetch_optional(p)
                    .await
                    .map_err(db)?
                    .map(|r| -> Result<_, sqlx::Error> {
                        Ok(Claimed {
                            chunk_id: r.try_get("chunk_id")?,
                            idx: r.try_get("idx")?,
                            range_json: r.try_get("range_json")?,
                            attempts: r.try_get("attempts")?,
                        })
                    })
                    .transpose()
                    .map_err(db)?
            })
        }
        SqlPool::MySql(p) => {
            let mut conn = crate::TxConn::acquire(p).await.map_err(db)?;
            let mut tx = conn.begin(None).await.map_err(db)?;
            let picked: Option<String> = sqlx::query_scalar(&format!(
                "SELECT chunk_id FROM bf_chunks WHERE {CLAIMABLE} ORDER BY idx LIMIT 1 FOR UPDATE SKIP LOCKED"
            ))
            .bind(run_id.as_str())
            .bind(worker)
            .bind(micros(now))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            let Some(chunk_id) = picked else {
                tx.commit().await.map_err(db)?;
                return Ok(None);
            };
            sqlx::query(&format!(
                "UPDATE bf_chunks SET {set} WHERE run_id = ? AND chunk_id = ?"
            ))
            .bind(worker)
            .bind(micros(expires))
            .bind(micros(now))
            .bind(run_id.as_str())
            .bind(&chunk_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            let r = sqlx::query(&format!(
                "SELECT {returning} FROM bf_chunks WHERE run_id = ? AND chunk_id = ?"
            ))
            .bind(run_id.as_str())
            .bind(&chunk_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            let c = Claimed {
                chunk_id: r.try_get("chunk_id").map_err(db)?,
                idx: r.try_get("idx").map_err(db)?,
                range_json: r.try_get("range_json").map_err(db)?,
                attempts: r.try_get("attempts").map_err(db)?,
            };
            tx.commit().await.map_err(db)?;
            Some(c)
        }
    };
    claimed
        .map(|c| lease(run_id, worker, expires, c))
        .transpose()
}

/// [`claim`] that leases nothing while `max_leased` chunks of the run hold live leases (the
/// claimer's own included) and never takes an unexpired lease back. The run's row is locked for the
/// count and the claim (`BEGIN IMMEDIATE` on SQLite), so claimers on any number of processes never
/// lease more than `max_leased` chunks at once.
pub(super) async fn claim_within(
    pool: &SqlPool,
    run_id: &RunId,
    worker: &str,
    now: DateTime<Utc>,
    lease_for: Duration,
    max_leased: u32,
) -> backfill_core::Result<Option<ChunkLease>> {
    let d = pool.dialect();
    let expires = lease_end(now, lease_for);
    let (begin, lock) = match d {
        Dialect::Sqlite => ("BEGIN IMMEDIATE", "SELECT 1"),
        _ => ("BEGIN", "SELECT 1 FROM bf_runs WHERE run_id = ? FOR UPDATE"),
    };
    let lock = d.sql(lock).into_owned();
    let count = d
        .sql("SELECT COUNT(*) FROM bf_chunks WHERE run_id = ? AND status = 'claimed' AND lease_expires_at > ?")
        .into_owned();
    let pick = d
        .sql(&format!(
            "SELECT chunk_id FROM bf_chunks WHERE {CLAIMABLE_WITHIN} ORDER BY idx LIMIT 1"
        ))
        .into_owned();
    let update = d
        .sql("UPDATE bf_chunks SET status = 'claimed', attempts = attempts + 1, worker = ?, lease_expires_at = ?, started_at = COALESCE(started_at, ?) WHERE run_id = ? AND chunk_id = ?")
        .into_owned();
    let read = d
        .sql("SELECT chunk_id, idx, range_json, attempts FROM bf_chunks WHERE run_id = ? AND chunk_id = ?")
        .into_owned();
    let claimed: Option<Claimed> = with_pool!(pool, p => {
        let mut conn = crate::TxConn::acquire(p).await.map_err(db)?;
        if d == Dialect::MySql {
            // This transaction reads committed data: under MariaDB's default REPEATABLE READ its
            // plain reads would see a snapshot older than the claims serialized by the run's lock.
            // (Session state until the transaction has used it: see `TxConn::session`.)
            sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                .execute(conn.session())
                .await
                .map_err(db)?;
        }
        let mut tx = conn.begin(Some(begin)).await.map_err(db)?;
        let mut q = sqlx::query(&lock);
        if d != Dialect::Sqlite {
            q = q.bind(run_id.as_str());
        }
        q.execute(&mut *tx).await.map_err(db)?;
        let live: i64 = sqlx::query_scalar(&count)
            .bind(run_id.as_str())
            .bind(micros(now))
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        if live >= i64::from(max_leased) {
            tx.commit().await.map_err(db)?;
            conn.release();
            return Ok(None);
        }
        let picked: Option<String> = sqlx::query_scalar(&pick)
            .bind(run_id.as_str())
            .bind(micros(now))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        let Some(chunk_id) = picked else {
            tx.commit().await.map_err(db)?;
            conn.release();
            return Ok(None);
        };
        sqlx::query(&update)
            .bind(worker)
            .bind(micros(expires))
            .bind(micros(now))
            .bind(run_id.as_str())
            .bind(&chunk_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let r = sqlx::query(&read)
            .bind(run_id.as_str())
            .bind(&chunk_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let c = Claimed {
            chunk_id: r.try_get("chunk_id").map_err(db)?,
            idx: r.try_get("idx").map_err(db)?,
            range_json: r.try_get("range_json").map_err(db)?,
            attempts: r.try_get("attempts").map_err(db)?,
        };
        tx.commit().await.map_err(db)?;
        conn.release();
        Some(c)
    });
    claimed
        .map(|c| lease(run_id, worker, expires, c))
        .transpose()
}

fn lease(
    run_id: &RunId,
    worker: &str,
    expires: DateTime<Utc>,
    c: Claimed,
) -> backfill_core::Result<ChunkLease> {
    Ok(ChunkLease {
        run_id: run_id.clone(),
        chunk_id: c.chunk_id.into(),
        index: u32::try_from(c.idx).map_err(|e| crate::error::corrupt("chunk index", e))?,
        range: json::<InputRange>("chunk range", &c.range_json)?,
        attempt: u32::try_from(c.attempts).map_err(|e| crate::error::corrupt("attempts", e))?,
        worker: worker.to_owned(),
        expires_at: expires,
    })
}

/// Runs `UPDATE bf_chunks SET <set> WHERE <the lease still holds>`; a lost lease is a `Conflict`.
async fn update_held(
    pool: &SqlPool,
    lease: &ChunkLease,
    set: &str,
    binds: Vec<Bind>,
) -> backfill_core::Result<()> {
    let d = pool.dialect();
    let sql = d.sql(&format!(
        "UPDATE bf_chunks SET {set} WHERE run_id = ? AND chunk_id = ? AND status = 'claimed' AND worker = ? AND attempts = ?"
    ))
    .into_owned();
    let changed = with_pool!(pool, p => {
        let mut q = sqlx::query(&sql);
        for b in &binds {
            q = match b {
                Bind::I(v) => q.bind(*v),
                Bind::OptI(v) => q.bind(*v),
                Bind::S(v) => q.bind(v.as_str()),
            };
        }
        q.bind(lease.run_id.as_str())
            .bind(lease.chunk_id.as_str())
            .bind(lease.worker.as_str())
            .bind(i64::from(lease.attempt))
            .execute(p)
            .await
            .map_err(db)?
            .rows_affected()
    });
    if changed == 1 {
        return Ok(());
    }
    let now = list(pool, &lease.run_id).await?;
    let found = now.iter().find(|c| c.chunk_id == lease.chunk_id).map(|c| {
        format!(
            "{} by {} attempt {}",
            c.status.as_str(),
            c.worker.as_deref().unwrap_or("nobody"),
            c.attempts
        )
    });
    match found {
        None => Err(CoreError::NotFound {
            run_id: lease.run_id.clone(),
            what: format!("chunk {}", lease.chunk_id),
        }),
        Some(f) => Err(conflict(
            &lease.run_id,
            &format!("lease on chunk {}", lease.chunk_id),
            format!("{} attempt {}", lease.worker, lease.attempt),
            f,
        )),
    }
}

enum Bind {
    I(i64),
    OptI(Option<i64>),
    S(String),
}

pub(super) async fn heartbeat(
    pool: &SqlPool,
    lease: &ChunkLease,
    now: DateTime<Utc>,
    lease_for: Duration,
) -> backfill_core::Result<ChunkLease> {
    let expires = lease_end(now, lease_for);
    update_held(
        pool,
        lease,
        "lease_expires_at = ?",
        vec![Bind::I(micros(expires))],
    )
    .await?;
    Ok(ChunkLease {
        expires_at: expires,
        ..lease.clone()
    })
}

pub(super) async fn complete(
    pool: &SqlPool,
    lease: &ChunkLease,
    outcome: &ChunkOutcome,
    now: DateTime<Utc>,
) -> backfill_core::Result<()> {
    update_held(
        pool,
        lease,
        "status = 'done', input_count = ?, output_count = ?, digests_json = ?, artifact = ?, digest_format = ?, lease_expires_at = ?, finished_at = ?, last_error = NULL",
        vec![
            Bind::I(i64::try_from(outcome.input_count).unwrap_or(i64::MAX)),
            Bind::I(i64::try_from(outcome.output_count).unwrap_or(i64::MAX)),
            Bind::S(to_json(&outcome.digests)),
            Bind::S(to_json(&outcome.artifact)),
            Bind::I(i64::from(outcome.digest_format)),
            Bind::OptI(None),
            Bind::I(micros(now)),
        ],
    )
    .await
}

pub(super) async fn fail(
    pool: &SqlPool,
    lease: &ChunkLease,
    error: &str,
    _now: DateTime<Utc>,
) -> backfill_core::Result<()> {
    update_held(
        pool,
        lease,
        "status = 'failed', lease_expires_at = ?, last_error = ?",
        vec![
            Bind::OptI(None),
            Bind::S(error.chars().take(4000).collect()),
        ],
    )
    .await
}

pub(super) async fn list(
    pool: &SqlPool,
    run_id: &RunId,
) -> backfill_core::Result<Vec<ChunkRecord>> {
    let d: Dialect = pool.dialect();
    type Raw = (
        String,
        i64,
        String,
        String,
        i64,
        Option<String>,
        Option<i64>,
        i64,
        i64,
        String,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<String>,
        i64,
    );
    let rows: Vec<Raw> = with_pool!(pool, p => {
        sqlx::query(&d.sql("SELECT chunk_id, idx, range_json, status, attempts, worker, lease_expires_at, input_count, output_count, digests_json, last_error, started_at, finished_at, artifact, digest_format FROM bf_chunks WHERE run_id = ? ORDER BY idx"))
            .bind(run_id.as_str())
            .fetch_all(p)
            .await
            .map_err(db)?
            .into_iter()
            .map(|r| -> Result<Raw, sqlx::Error> {
                Ok((
                    r.try_get("chunk_id")?,
                    r.try_get("idx")?,
                    r.try_get("range_json")?,
                    r.try_get("status")?,
                    r.try_get("attempts")?,
                    r.try_get("worker")?,
                    r.try_get("lease_expires_at")?,
                    r.try_get("input_count")?,
                    r.try_get("output_count")?,
                    r.try_get("digests_json")?,
                    r.try_get("last_error")?,
                    r.try_get("started_at")?,
                    r.try_get("finished_at")?,
                    r.try_get("artifact")?,
                    r.try_get("digest_format")?,
                ))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(db)?
    });
    use crate::error::corrupt;
    rows.into_iter()
        .map(
            |(
                chunk_id,
                idx,
                range,
                status,
                attempts,
                worker,
                lease,
                input,
                output,
                digests,
                last_error,
                started,
                finished,
                artifact,
                digest_format,
            )| {
                Ok(ChunkRecord {
                    run_id: run_id.clone(),
                    chunk_id: chunk_id.into(),
                    index: u32::try_from(idx).map_err(|e| corrupt("chunk index", e))?,
                    range: json("chunk range", &range)?,
                    status: ChunkStatus::parse(&status)
                        .ok_or_else(|| corrupt("chunk status", &status))?,
                    attempts: u32::try_from(attempts).map_err(|e| corrupt("attempts", e))?,
                    worker,
                    lease_expires_at: lease.map(from_micros).transpose()?,
                    input_count: u64::try_from(input).map_err(|e| corrupt("input count", e))?,
                    output_count: u64::try_from(output).map_err(|e| corrupt("output count", e))?,
                    digests: json::<PartitionDigests>("digests", &digests)?,
                    artifact: artifact
                        .map(|a| json("chunk artifact", &a))
                        .transpose()?
                        .unwrap_or_default(),
                    digest_format: u32::try_from(digest_format)
                        .map_err(|e| corrupt("digest format", e))?,
                    last_error,
                    started_at: started.map(from_micros).transpose()?,
                    finished_at: finished.map(from_micros).transpose()?,
                })
            },
        )
        .collect()
}
