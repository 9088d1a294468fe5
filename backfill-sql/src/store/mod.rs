//! The persistent run store on PostgreSQL, MySQL/MariaDB and SQLite.

mod budgets;
mod chunks;
mod tallies;

use async_trait::async_trait;
use backfill_core::ids::RunId;
use backfill_core::manifest::{Approval, ManifestDigest, StoredManifest};
use backfill_core::plan::ResolvedPlan;
use backfill_core::state::{RunState, Transition};
use backfill_core::store::{
    AcceptedPointer, ChunkLease, ChunkOutcome, ChunkRecord, Evidence, EvidenceRecord, RunFilter,
    RunRecord, RunStore,
};
use backfill_core::Error as CoreError;
use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::dialect::Dialect;
use crate::error::{corrupt, db, is_unique_violation};
use crate::migrate::migrate;
use crate::pool::{with_pool, ConnectOptions, SqlPool};

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(m: i64) -> backfill_core::Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(m).ok_or_else(|| corrupt("timestamp", m))
}

fn json<T: serde::de::DeserializeOwned>(what: &'static str, s: &str) -> backfill_core::Result<T> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn conflict(
    run_id: &RunId,
    what: &str,
    expected: impl ToString,
    found: impl ToString,
) -> CoreError {
    CoreError::Conflict {
        run_id: run_id.clone(),
        what: what.into(),
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

const RUN_COLUMNS: &str = "run_id, manifest_version, manifest_digest, target, mode, requested_by, state, created_at, updated_at";

/// A `bf_runs` row as read, before its values are checked.
struct RawRun {
    run_id: String,
    version: i64,
    digest: String,
    target: String,
    mode: String,
    requested_by: String,
    state: String,
    created: i64,
    updated: i64,
}

fn raw_run<R: Row>(r: &R) -> Result<RawRun, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    String: for<'q> sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    i64: for<'q> sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
{
    Ok(RawRun {
        run_id: r.try_get("run_id")?,
        version: r.try_get("manifest_version")?,
        digest: r.try_get("manifest_digest")?,
        target: r.try_get("target")?,
        mode: r.try_get("mode")?,
        requested_by: r.try_get("requested_by")?,
        state: r.try_get("state")?,
        created: r.try_get("created_at")?,
        updated: r.try_get("updated_at")?,
    })
}

impl RawRun {
    fn into_record(self) -> backfill_core::Result<RunRecord> {
        Ok(RunRecord {
            run_id: self.run_id.into(),
            manifest_version: u32::try_from(self.version)
                .map_err(|e| corrupt("manifest version", e))?,
            manifest_digest: json("digest", &to_json(&self.digest))?,
            target: self.target,
            mode: json("mode", &to_json(&self.mode))?,
            requested_by: self.requested_by,
            state: RunState::parse(&self.state).ok_or_else(|| corrupt("run state", &self.state))?,
            created_at: from_micros(self.created)?,
            updated_at: from_micros(self.updated)?,
        })
    }
}

/// The run store in a SQL database: manifests, runs, transitions, plan, chunk ledger with leases,
/// evidence and accepted-output pointers. Migrations are applied on connect.
///
/// Several processes on several machines may share one database: chunk claims use
/// `FOR UPDATE SKIP LOCKED` on PostgreSQL and MariaDB/MySQL and a single atomic `UPDATE … RETURNING`
/// on SQLite; every state change is a compare-and-set.
///
/// Run-wide budgets ([`RunStore::take_budget`]) and tallies ([`RunStore::tally`]) live in the
/// database on PostgreSQL and MariaDB/MySQL, shared by every process. On SQLite they live in a
/// second file beside the store's, `<file>.counters`, shared by every process on the machine: a
/// chunk staged into the store's own file holds its only write lock for the whole chunk, so a
/// budget taken from that file while the chunk's rows flow would wait on that very lock. An
/// in-memory SQLite store keeps them in the process.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: SqlPool,
    /// Where budgets and tallies live: the store's database, a SQLite store's counters file, or
    /// (`None`, in-memory SQLite) this process.
    counters: Option<SqlPool>,
    local_budgets: std::sync::Arc<budgets::Local>,
    local_tallies: std::sync::Arc<tallies::Local>,
}

impl SqlStore {
    /// Connects and migrates.
    pub async fn connect(url: &str) -> backfill_core::Result<Self> {
        Self::connect_with(url, &ConnectOptions::default()).await
    }

    /// Connects with options and migrates.
    pub async fn connect_with(url: &str, opts: &ConnectOptions) -> backfill_core::Result<Self> {
        Self::new(SqlPool::connect_with(url, opts).await?).await
    }

    /// Uses an existing pool and migrates it.
    pub async fn new(pool: SqlPool) -> backfill_core::Result<Self> {
        migrate(&pool).await?;
        let counters = match pool.dialect() {
            Dialect::Sqlite => match pool.sqlite_sidecar(".counters").await? {
                Some(side) => {
                    crate::migrate::counters(&side).await?;
                    Some(side)
                }
                None => None,
            },
            _ => Some(pool.clone()),
        };
        Ok(Self {
            pool,
            counters,
            local_budgets: std::sync::Arc::default(),
            local_tallies: std::sync::Arc::default(),
        })
    }

    /// The registry of target windows kept in this store's database, for runs that freeze their
    /// window against live writers and for the live writers themselves (see [`SqlWindows`](crate::SqlWindows)).
    pub fn windows(&self) -> crate::SqlWindows {
        crate::SqlWindows::new(self.pool.clone())
    }

    /// The pool (shared with sinks and publishers on the same database).
    pub fn pool(&self) -> &SqlPool {
        &self.pool
    }
}

#[async_trait]
impl RunStore for SqlStore {
    async fn put_manifest(&self, m: &StoredManifest) -> backfill_core::Result<()> {
        let d = self.pool.dialect();
        let approval = m.approval.as_ref().map(to_json);
        let inserted = with_pool!(&self.pool, p => {
            sqlx::query(&d.sql("INSERT INTO bf_manifests (run_id, version, digest, json, approval) VALUES (?, ?, ?, ?, ?)"))
                .bind(m.run_id.as_str())
                .bind(i64::from(m.version))
                .bind(m.digest.as_str())
                .bind(&m.json)
                .bind(&approval)
                .execute(p)
                .await
                .map(|_| ())
        });
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                let existing = self.manifest(&m.run_id).await?.ok_or_else(|| db(e))?;
                if existing.digest != m.digest || existing.version != m.version {
                    return Err(conflict(&m.run_id, "manifest", existing.digest, &m.digest));
                }
                if existing.approval.is_none() && approval.is_some() {
                    with_pool!(&self.pool, p => {
                        sqlx::query(&d.sql("UPDATE bf_manifests SET approval = ? WHERE run_id = ? AND approval IS NULL"))
                            .bind(&approval)
                            .bind(m.run_id.as_str())
                            .execute(p)
                            .await
                            .map(|_| ())
                            .map_err(db)
                    })?;
                }
                Ok(())
            }
            Err(e) => Err(db(e)),
        }
    }

    async fn manifest(&self, run_id: &RunId) -> backfill_core::Result<Option<StoredManifest>> {
        let d = self.pool.dialect();
        let row = with_pool!(&self.pool, p => {
            sqlx::query(&d.sql("SELECT version, digest, json, approval FROM bf_manifests WHERE run_id = ?"))
                .bind(run_id.as_str())
                .fetch_optional(p)
                .await
                .map_err(db)?
                .map(|r| -> Result<_, sqlx::Error> {
                    Ok((r.try_get::<i64, _>("version")?, r.try_get::<String, _>("digest")?, r.try_get::<String, _>("json")?, r.try_get::<Option<String>, _>("approval")?))
                })
                .transpose()
                .map_err(db)?
        });
        let Some((version, digest, json_text, approval)) = row else {
            return Ok(None);
        };
        let approval: Option<Approval> = approval.map(|a| json("approval", &a)).transpose()?;
        Ok(Some(StoredManifest {
            run_id: run_id.clone(),
            version: u32::try_from(version).map_err(|e| corrupt("manifest version", e))?,
            digest: serde_json::from_value::<ManifestDigest>(serde_json::Value::String(digest))
                .map_err(|e| corrupt("digest", e))?,
            json: json_text,
            approval,
        }))
    }

    async fn create_run(&self, run: &RunRecord) -> backfill_core::Result<()> {
        let d = self.pool.dialect();
        let r = with_pool!(&self.pool, p => {
            sqlx::query(&d.sql("INSERT INTO bf_runs (run_id, manifest_version, manifest_digest, target, mode, requested_by, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"))
                .bind(run.run_id.as_str())
                .bind(i64::from(run.manifest_version))
                .bind(run.manifest_digest.as_str())
                .bind(&run.target)
                .bind(to_json(&run.mode).trim_matches('"').to_owned())
                .bind(&run.requested_by)
                .bind(run.state.as_str())
                .bind(micros(run.created_at))
                .bind(micros(run.updated_at))
                .execute(p)
                .await
                .map(|_| ())
        });
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(conflict(&run.run_id, "run", "absent", "present"))
            }
            Err(e) => Err(db(e)),
        }
    }

    async fn run(&self, run_id: &RunId) -> backfill_core::Result<Option<RunRecord>> {
        let d = self.pool.dialect();
        let sql = d
            .sql(&format!(
                "SELECT {RUN_COLUMNS} FROM bf_runs WHERE run_id = ?"
            ))
            .into_owned();
        let row = with_pool!(&self.pool, p => {
            sqlx::query(&sql)
                .bind(run_id.as_str())
                .fetch_optional(p)
                .await
                .map_err(db)?
                .map(|r| raw_run(&r))
                .transpose()
                .map_err(db)?
        });
        row.map(RawRun::into_record).transpose()
    }

    async fn transition(&self, t: &Transition) -> backfill_core::Result<()> {
        let d = self.pool.dialect();
        with_pool!(&self.pool, p => {
            let mut conn = crate::TxConn::acquire(p).await.map_err(db)?;
            let mut tx = conn.begin(None).await.map_err(db)?;
            let changed = sqlx::query(&d.sql("UPDATE bf_runs SET state = ?, updated_at = ? WHERE run_id = ? AND state = ?"))
                .bind(t.to.as_str())
                .bind(micros(t.at))
                .bind(t.run_id.as_str())
                .bind(t.from.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
            if changed != 1 {
                let found: Option<String> = sqlx::query_scalar(&d.sql("SELECT state FROM bf_runs WHERE run_id = ?"))
                    .bind(t.run_id.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
                return match found {
                    None => Err(CoreError::NotFound { run_id: t.run_id.clone(), what: "run".into() }),
                    Some(s) => Err(conflict(&t.run_id, "run state", t.from, s)),
                };
            }
            // The row lock taken by the UPDATE serialises transitions of one run, so MAX + 1 is safe.
            sqlx::query(&d.sql("INSERT INTO bf_transitions (run_id, seq, from_state, to_state, by_who, at, reason) SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ?, ? FROM bf_transitions WHERE run_id = ?"))
                .bind(t.run_id.as_str())
                .bind(t.from.as_str())
                .bind(t.to.as_str())
                .bind(&t.by)
                .bind(micros(t.at))
                .bind(&t.reason)
                .bind(t.run_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)
        })
    }

    async fn transitions(&self, run_id: &RunId) -> backfill_core::Result<Vec<Transition>> {
        let d = self.pool.dialect();
        let rows = with_pool!(&self.pool, p => {
            sqlx::query(&d.sql("SELECT from_state, to_state, by_who, at, reason FROM bf_transitions WHERE run_id = ? ORDER BY seq"))
                .bind(run_id.as_str())
                .fetch_all(p)
                .await
                .map_err(db)?
                .into_iter()
                .map(|r| -> Result<_, sqlx::Error> {
                    Ok((r.try_get::<String, _>("from_state")?, r.try_get::<String, _>("to_state")?, r.try_get::<String, _>("by_who")?, r.try_get::<i64, _>("at")?, r.try_get::<String, _>("reason")?))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?
        });
        rows.into_iter()
            .map(|(from, to, by, at, reason)| {
                Ok(Transition {
                    run_id: run_id.clone(),
                    from: RunState::parse(&from).ok_or_else(|| corrupt("state", &from))?,
                    to: RunState::parse(&to).ok_or_else(|| corrupt("state", &to))?,
                    by,
                    at: from_micros(at)?,
                    reason,
                })
            })
            .collect()
    }

    async fn put_plan(&self, plan: &ResolvedPlan) -> backfill_core::Result<()> {
        chunks::put_plan(&self.pool, plan).await
    }

    async fn plan(&self, run_id: &RunId) -> backfill_core::Result<Option<ResolvedPlan>> {
        chunks::plan(&self.pool, run_id).await
    }

    async fn claim_chunk(
        &self,
        run_id: &RunId,
        worker: &str,
        now: DateTime<Utc>,
        lease_for: std::time::Duration,
    ) -> backfill_core::Result<Option<ChunkLease>> {
        chunks::claim(&self.pool, run_id, worker, now, lease_for).await
    }

    async fn claim_chunk_within(
        &self,
        run_id: &RunId,
        worker: &str,
        now: DateTime<Utc>,
        lease_for: std::time::Duration,
        max_leased: u32,
    ) -> backfill_core::Result<Option<ChunkLease>> {
        chunks::claim_within(&self.pool, run_id, worker, now, lease_for, max_leased).await
    }

    async fn take_budget(
        &self,
        run_id: &RunId,
        budget: &backfill_core::budget::Budget,
        amount: u64,
        now: DateTime<Utc>,
    ) -> backfill_core::Result<std::time::Duration> {
        match &self.counters {
            Some(pool) => budgets::take(pool, run_id, budget, amount, now).await,
            None => self.local_budgets.take(run_id, budget, amount, now),
        }
    }

    async fn tally(
        &self,
        run_id: &RunId,
        name: &'static str,
        chunk_id: &backfill_core::ids::ChunkId,
        value: u64,
    ) -> backfill_core::Result<u64> {
        match &self.counters {
            Some(pool) => tallies::tally(pool, run_id, name, chunk_id, value).await,
            None => self.local_tallies.tally(run_id, name, chunk_id, value),
        }
    }

    async fn heartbeat(
        &self,
        lease: &ChunkLease,
        now: DateTime<Utc>,
        lease_for: std::time::Duration,
    ) -> backfill_core::Result<ChunkLease> {
        chunks::heartbeat(&self.pool, lease, now, lease_for).await
    }

    async fn complete_chunk(
        &self,
        lease: &ChunkLease,
        outcome: &ChunkOutcome,
        now: DateTime<Utc>,
    ) -> backfill_core::Result<()> {
        chunks::complete(&self.pool, lease, outcome, now).await
    }

    async fn fail_chunk(
        &self,
        lease: &ChunkLease,
        error: &str,
        now: DateTime<Utc>,
    ) -> backfill_core::Result<()> {
        chunks::fail(&self.pool, lease, error, now).await
    }

    async fn chunks(&self, run_id: &RunId) -> backfill_core::Result<Vec<ChunkRecord>> {
        chunks::list(&self.pool, run_id).await
    }

    async fn append_evidence(
        &self,
        run_id: &RunId,
        at: DateTime<Utc>,
        by: &str,
        record: &EvidenceRecord,
    ) -> backfill_core::Result<u64> {
        let d = self.pool.dialect();
        let kind = record.kind().as_str();
        let detail = record.to_json().to_string();
        // Concurrent appends may pick the same MAX + 1; the primary key refuses the loser, which retries.
        // On SQLite the transaction is IMMEDIATE: it holds the write lock before it reads MAX(seq), so
        // appends queue on the busy timeout instead of failing on a stale read snapshot.
        let begin = match d {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            _ => "BEGIN",
        };
        for round in 0..20u32 {
            if round > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(1 << round.min(7))).await;
            }
            let r = with_pool!(&self.pool, p => {
                let mut conn = crate::TxConn::acquire(p).await.map_err(db)?;
                let mut tx = conn.begin(Some(begin)).await.map_err(db)?;
                let seq: i64 = sqlx::query_scalar(&d.sql("SELECT COALESCE(MAX(seq), 0) + 1 FROM bf_evidence WHERE run_id = ?"))
                    .bind(run_id.as_str())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
                let ins = sqlx::query(&d.sql("INSERT INTO bf_evidence (run_id, seq, at, by_who, kind, detail) VALUES (?, ?, ?, ?, ?, ?)"))
                    .bind(run_id.as_str())
                    .bind(seq)
                    .bind(micros(at))
                    .bind(by)
                    .bind(kind)
                    .bind(&detail)
                    .execute(&mut *tx)
                    .await;
                match ins {
                    Ok(_) => { tx.commit().await.map_err(db)?; Ok(Some(seq)) }
                    Err(e) if is_unique_violation(&e) => Ok(None),
                    Err(e) => Err(db(e)),
                }
            });
            match r {
                Ok(Some(seq)) => return Ok(u64::try_from(seq).unwrap_or(0)),
                Ok(None) => continue,
                Err(e) if e.is_retryable() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(conflict(
            run_id,
            "evidence sequence",
            "a free sequence number",
            "contention",
        ))
    }

    async fn evidence(&self, run_id: &RunId) -> backfill_core::Result<Vec<Evidence>> {
        let d = self.pool.dialect();
        let rows = with_pool!(&self.pool, p => {
            sqlx::query(&d.sql("SELECT seq, at, by_who, kind, detail FROM bf_evidence WHERE run_id = ? ORDER BY seq"))
                .bind(run_id.as_str())
                .fetch_all(p)
                .await
                .map_err(db)?
                .into_iter()
                .map(|r| -> Result<_, sqlx::Error> {
                    Ok((r.try_get::<i64, _>("seq")?, r.try_get::<i64, _>("at")?, r.try_get::<String, _>("by_who")?, r.try_get::<String, _>("kind")?, r.try_get::<String, _>("detail")?))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?
        });
        rows.into_iter()
            .map(|(seq, at, by, kind, detail)| {
                let what = || format!("evidence record {seq} of run {run_id}");
                let value: serde_json::Value =
                    serde_json::from_str(&detail).map_err(|e| CoreError::corrupt(what(), e))?;
                let record = EvidenceRecord::from_json(value).map_err(|e| match e {
                    CoreError::Corrupt { detail, .. } => CoreError::corrupt(what(), detail),
                    other => other,
                })?;
                if record.kind().as_str() != kind {
                    return Err(CoreError::corrupt(
                        what(),
                        format!(
                            "kind column says {kind}, the record is {}",
                            record.kind().as_str()
                        ),
                    ));
                }
                Ok(Evidence {
                    run_id: run_id.clone(),
                    seq: u64::try_from(seq).map_err(|e| CoreError::corrupt(what(), e))?,
                    at: from_micros(at)?,
                    by,
                    record,
                })
            })
            .collect()
    }

    async fn accepted(&self, target: &str) -> backfill_core::Result<Option<AcceptedPointer>> {
        let d = self.pool.dialect();
        let row = with_pool!(&self.pool, p => {
            sqlx::query(&d.sql("SELECT run_id, accepted_at, accepted_by FROM bf_accepted WHERE target = ?"))
                .bind(target)
                .fetch_optional(p)
                .await
                .map_err(db)?
                .map(|r| -> Result<_, sqlx::Error> {
                    Ok((r.try_get::<String, _>("run_id")?, r.try_get::<i64, _>("accepted_at")?, r.try_get::<String, _>("accepted_by")?))
                })
                .transpose()
                .map_err(db)?
        });
        row.map(|(run, at, by)| {
            Ok(AcceptedPointer {
                target: target.to_owned(),
                run_id: run.into(),
                accepted_at: from_micros(at)?,
                accepted_by: by,
            })
        })
        .transpose()
    }

    async fn swap_accepted(
        &self,
        expected: Option<&RunId>,
        new: &AcceptedPointer,
    ) -> backfill_core::Result<()> {
        let d = self.pool.dialect();
        let r = with_pool!(&self.pool, p => {
            match expected {
                None => sqlx::query(&d.sql("INSERT INTO bf_accepted (target, run_id, accepted_at, accepted_by) VALUES (?, ?, ?, ?)"))
                    .bind(&new.target)
                    .bind(new.run_id.as_str())
                    .bind(micros(new.accepted_at))
                    .bind(&new.accepted_by)
                    .execute(p)
                    .await
                    .map(|r| r.rows_affected()),
                Some(old) => sqlx::query(&d.sql("UPDATE bf_accepted SET run_id = ?, accepted_at = ?, accepted_by = ? WHERE target = ? AND run_id = ?"))
                    .bind(new.run_id.as_str())
                    .bind(micros(new.accepted_at))
                    .bind(&new.accepted_by)
                    .bind(&new.target)
                    .bind(old.as_str())
                    .execute(p)
                    .await
                    .map(|r| r.rows_affected()),
            }
        });
        let lost = match r {
            Ok(1) => return Ok(()),
            Ok(_) => true,
            Err(e) if is_unique_violation(&e) => true,
            Err(e) => return Err(db(e)),
        };
        debug_assert!(lost);
        let found = self
            .accepted(&new.target)
            .await?
            .map(|p| p.run_id.to_string());
        Err(conflict(
            &new.run_id,
            &format!("accepted pointer of {}", new.target),
            expected.map_or("none", RunId::as_str),
            found.as_deref().unwrap_or("none"),
        ))
    }

    async fn runs(&self, filter: &RunFilter) -> backfill_core::Result<Vec<RunRecord>> {
        let d = self.pool.dialect();
        let mut clauses: Vec<String> = Vec::new();
        if !filter.states.is_empty() {
            clauses.push(format!(
                "state IN ({})",
                vec!["?"; filter.states.len()].join(", ")
            ));
        }
        if filter.target.is_some() {
            clauses.push("target = ?".into());
        }
        if filter.requested_by.is_some() {
            clauses.push("requested_by = ?".into());
        }
        if filter.created_after.is_some() {
            clauses.push("created_at >= ?".into());
        }
        let mut sql = format!("SELECT {RUN_COLUMNS} FROM bf_runs");
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql.push_str(" ORDER BY created_at DESC, run_id DESC");
        if let Some(n) = filter.limit {
            // A number, not input text: safe to splice.
            sql.push_str(&format!(" LIMIT {}", i64::try_from(n).unwrap_or(i64::MAX)));
        }
        let sql = d.sql(&sql).into_owned();
        let rows = with_pool!(&self.pool, p => {
            let mut q = sqlx::query(&sql);
            for s in &filter.states {
                q = q.bind(s.as_str());
            }
            if let Some(t) = &filter.target {
                q = q.bind(t.as_str());
            }
            if let Some(r) = &filter.requested_by {
                q = q.bind(r.as_str());
            }
            if let Some(a) = filter.created_after {
                q = q.bind(micros(a));
            }
            q.fetch_all(p)
                .await
                .map_err(db)?
                .iter()
                .map(raw_run)
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?
        });
        rows.into_iter().map(RawRun::into_record).collect()
    }
}
