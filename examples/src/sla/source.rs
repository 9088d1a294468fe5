//! `bronze_case_events`: the case event table, and a [`BackfillSource`] of case histories over it.
//!
//! The table stores one row per event (UTC epoch seconds). A snapshot row records the content hash of
//! what was loaded; a manifest pins that hash and planning refuses a table whose content changed.
//!
//! The source plans one chunk per calendar month of the input range: a chunk holds the cases opened
//! in that month (by the UTC instant of their first event), each with all of its events before the end
//! of the input range. So every case is in exactly one chunk, and a case opened in December 2024 is
//! read, with its December events, by the December (warm-up) chunk.

use async_trait::async_trait;
use backfill_core::manifest::{InputRange, RunManifest};
use backfill_core::plan::{ChunkSpec, PlannedChunk, SourcePlan};
use backfill_core::prelude::BackfillSource;
use backfill_core::Error;
use backfill_sql::SqlPool;
use chrono::{DateTime, Datelike as _, Months, NaiveDate, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use sqlx::Row;

use super::events::{CaseEvent, CaseHistory};

/// Cases per batch handed to the transform.
const BATCH: usize = 256;
/// Rows per multi-row INSERT when loading.
const INSERT_ROWS: usize = 400;
const TABLE: &str = "bronze_case_events";

/// A failure that may pass (a lost connection, a busy database).
fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Transient {
        adapter: TABLE,
        source: format!("{what}: {e}").into(),
    }
}

/// A failure that retrying cannot fix.
fn refused(message: String) -> Error {
    Error::Adapter {
        adapter: TABLE,
        source: message.into(),
    }
}

fn epoch(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp())
}

/// Case histories from `bronze_case_events` on SQLite, PostgreSQL or MariaDB/MySQL.
#[derive(Debug, Clone)]
pub struct CaseEventSource {
    pool: SqlPool,
    events_before: NaiveDate,
}

/// Runs `$body` with `$p` bound to the pool of whichever engine `$pool` is.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            SqlPool::Postgres($p) => $body,
            SqlPool::Sqlite($p) => $body,
            SqlPool::MySql($p) => $body,
        }
    };
}

async fn exec(pool: &SqlPool, sql: &str) -> Result<(), Error> {
    on_pool!(pool, p => sqlx::query(sql).execute(p).await.map(drop)).map_err(|e| failed(sql, e))
}

/// Reads the loaded snapshot id, if the table was loaded.
pub async fn loaded_snapshot(pool: &SqlPool) -> Result<Option<String>, Error> {
    exec(
        pool,
        "CREATE TABLE IF NOT EXISTS bronze_snapshots (table_name VARCHAR(64) PRIMARY KEY, snapshot TEXT NOT NULL, event_rows BIGINT NOT NULL)",
    )
    .await?;
    let sql = pool
        .dialect()
        .sql("SELECT snapshot FROM bronze_snapshots WHERE table_name = ?")
        .into_owned();
    on_pool!(pool, p => sqlx::query_scalar(&sql).bind(TABLE).fetch_optional(p).await)
        .map_err(|e| failed("reading the bronze snapshot", e))
}

/// Loads generated cases into `bronze_case_events` once, in one transaction, and returns the snapshot
/// id. Loading the same cases again does nothing; loading other cases into a loaded table is refused.
pub async fn load(pool: &SqlPool, cases: &[CaseHistory]) -> Result<String, Error> {
    let snapshot = super::events::snapshot_id(cases);
    if let Some(have) = loaded_snapshot(pool).await? {
        if have == snapshot {
            return Ok(snapshot);
        }
        return Err(refused(format!(
            "already holds snapshot {have}, not {snapshot}: use a fresh data directory"
        )));
    }
    exec(pool, &format!("CREATE TABLE IF NOT EXISTS {TABLE} (case_id VARCHAR(64) NOT NULL, jurisdiction VARCHAR(16) NOT NULL, seq BIGINT NOT NULL, at_epoch BIGINT NOT NULL, kind VARCHAR(16) NOT NULL, opened_epoch BIGINT NOT NULL, PRIMARY KEY (case_id, seq))")).await?;
    exec(
        pool,
        &format!(
            "CREATE INDEX IF NOT EXISTS {TABLE}_opened ON {TABLE} (opened_epoch, case_id, seq)"
        ),
    )
    .await?;
    let rows: Vec<(&CaseHistory, &CaseEvent, i64)> = cases
        .iter()
        .flat_map(|c| {
            let opened = c.opened_at().map_or(0, |t| t.timestamp());
            c.events.iter().map(move |e| (c, e, opened))
        })
        .collect();
    let d = pool.dialect();
    let insert = |n: usize| {
        let values = vec!["(?, ?, ?, ?, ?, ?)"; n].join(", ");
        d.sql(&format!("INSERT INTO {TABLE} (case_id, jurisdiction, seq, at_epoch, kind, opened_epoch) VALUES {values}")).into_owned()
    };
    // One statement text for full batches, one for the shorter last batch.
    let (full, last) = (insert(INSERT_ROWS), insert(rows.len() % INSERT_ROWS));
    let record = d
        .sql("INSERT INTO bronze_snapshots (table_name, snapshot, event_rows) VALUES (?, ?, ?)")
        .into_owned();
    on_pool!(pool, p => {
        let mut tx = p.begin().await.map_err(|e| failed("begin", e))?;
        for part in rows.chunks(INSERT_ROWS) {
            let sql = if part.len() == INSERT_ROWS { &full } else { &last };
            let mut q = sqlx::query(sql);
            for (c, e, opened) in part {
                q = q
                    .bind(c.case_id.as_str())
                    .bind(c.jurisdiction.as_str())
                    .bind(i64::from(e.seq))
                    .bind(e.at.timestamp())
                    .bind(e.kind.as_str())
                    .bind(*opened);
            }
            q.execute(&mut *tx)
                .await
                .map_err(|e| failed("loading events", e))?;
        }
        sqlx::query(&record)
            .bind(TABLE)
            .bind(snapshot.as_str())
            .bind(i64::try_from(rows.len()).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(|e| failed("recording the snapshot", e))?;
        tx.commit().await.map_err(|e| failed("commit", e))?;
    });
    Ok(snapshot)
}

impl CaseEventSource {
    /// A source over `pool` reading events before `events_before` (the input range's end).
    pub fn new(pool: SqlPool, events_before: NaiveDate) -> Self {
        Self {
            pool,
            events_before,
        }
    }

    async fn fetch(
        pool: SqlPool,
        from: i64,
        to: i64,
        before: i64,
    ) -> Result<Vec<CaseHistory>, Error> {
        let sql = pool.dialect().sql(&format!(
            "SELECT case_id, jurisdiction, seq, at_epoch, kind FROM {TABLE} WHERE opened_epoch >= ? AND opened_epoch < ? AND at_epoch < ? ORDER BY case_id, seq"
        )).into_owned();
        let mut out: Vec<CaseHistory> = Vec::new();
        on_pool!(&pool, p => {
            let rows = sqlx::query(&sql)
                .bind(from)
                .bind(to)
                .bind(before)
                .fetch_all(p)
                .await
                .map_err(|e| failed("reading case events", e))?;
            for r in rows {
                let case_id: String = r.try_get(0).map_err(|e| failed("case_id", e))?;
                let jurisdiction: String =
                    r.try_get(1).map_err(|e| failed("jurisdiction", e))?;
                let seq: i64 = r.try_get(2).map_err(|e| failed("seq", e))?;
                let at: i64 = r.try_get(3).map_err(|e| failed("at_epoch", e))?;
                let kind: String = r.try_get(4).map_err(|e| failed("kind", e))?;
                let event = CaseEvent {
                    seq: u32::try_from(seq).map_err(|e| failed("seq", e))?,
                    at: DateTime::<Utc>::from_timestamp(at, 0)
                        .ok_or_else(|| failed("at_epoch", at))?,
                    kind: kind.parse().map_err(|e: String| failed(&case_id, e))?,
                };
                match out.last_mut() {
                    Some(c) if c.case_id == case_id => c.events.push(event),
                    _ => out.push(CaseHistory {
                        case_id,
                        jurisdiction,
                        events: vec![event],
                    }),
                }
            }
        });
        Ok(out)
    }
}

#[async_trait]
impl BackfillSource<CaseHistory> for CaseEventSource {
    fn name(&self) -> &str {
        TABLE
    }

    async fn plan(&self, manifest: &RunManifest) -> backfill_core::Result<SourcePlan> {
        let snapshot = loaded_snapshot(&self.pool).await?;
        if snapshot.is_none() || snapshot != manifest.source.snapshot {
            return Err(refused(format!(
                "run {}: the manifest pins snapshot {:?} but the table holds {snapshot:?}",
                manifest.run_id, manifest.source.snapshot
            )));
        }
        let Some(InputRange::Dates { from, to_exclusive }) = manifest.source.range else {
            return Err(refused(format!(
                "run {}: needs an input range of dates",
                manifest.run_id
            )));
        };
        if to_exclusive != self.events_before {
            return Err(refused(format!(
                "run {}: input ends {to_exclusive}, the source was opened for events before {}",
                manifest.run_id, self.events_before
            )));
        }
        let mut chunks = Vec::new();
        let mut start = from;
        while start < to_exclusive {
            let next = start
                .checked_add_months(Months::new(1))
                .and_then(|d| d.with_day0(0))
                .unwrap_or(to_exclusive)
                .min(to_exclusive);
            chunks.push(ChunkSpec {
                range: InputRange::Dates {
                    from: start,
                    to_exclusive: next,
                },
                label: start.format("%Y-%m").to_string(),
            });
            start = next;
        }
        Ok(SourcePlan { snapshot, chunks })
    }

    fn read(
        &self,
        chunk: &PlannedChunk,
    ) -> BoxStream<'static, backfill_core::Result<Vec<CaseHistory>>> {
        let InputRange::Dates { from, to_exclusive } = chunk.range else {
            let e = refused(format!("chunk {} is not a date range", chunk.id));
            return stream::once(async move { Err(e) }).boxed();
        };
        let (pool, before) = (self.pool.clone(), epoch(self.events_before));
        stream::once(
            async move { Self::fetch(pool, epoch(from), epoch(to_exclusive), before).await },
        )
        .flat_map(|r| match r {
            Ok(cases) => {
                let batches: Vec<_> = cases.chunks(BATCH).map(|b| Ok(b.to_vec())).collect();
                stream::iter(batches).boxed()
            }
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        })
        .boxed()
    }
}
