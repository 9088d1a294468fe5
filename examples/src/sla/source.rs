//! `bronze.case_events`: the case event table, loaded from the generator, and the case histories
//! over it as a [`backfill_sql::SqlSource`].
//!
//! The table stores one row per event (UTC epoch seconds), with the instant the case was opened
//! copied onto every event row. A load record keeps the generator's content hash, so loading the same
//! cases again does nothing and loading other cases into a loaded table is refused.
//!
//! The source is `SqlSource` rows folded into case histories ([`SqlSource::grouped`]): one chunk per
//! calendar month of the input range by the UTC date of the case's opening event (a column constant
//! within a case, so every case is whole in exactly one chunk), each case with all of its events
//! before the end of the input range. A case opened in December 2024 is read, with its December
//! events, by the December (warm-up) chunk. The snapshot is SqlSource's content pin: planning reads
//! the input range, records each chunk's row count and digest, and derives the snapshot id
//! (`sql:sha256:…`) from them; [`pinned_snapshot`] computes the same id for the manifest, and a table
//! whose content changed since is refused before any chunk runs.

use backfill_core::manifest::InputRange;
use backfill_core::Error;
use backfill_sql::{Column, Grouped, QualifiedName, SqlPool, SqlSource, SqlSourceBuilder, SqlType};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use super::events::{CaseEvent, CaseHistory};

/// The bronze table (on SQLite `bronze__case_events`, see [`QualifiedName`]).
pub const TABLE: &str = "bronze.case_events";
/// One row per load of [`TABLE`]: the generator's content hash and the number of event rows.
const LOADS: &str = "bronze.case_event_loads";
/// Event rows per page read (and case histories per batch handed to the transform).
const BATCH: usize = 2000;
/// Rows per multi-row INSERT when loading.
const INSERT_ROWS: usize = 400;

/// A failure that may pass (a lost connection, a busy database).
fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Transient {
        adapter: "bronze.case_events",
        source: format!("{what}: {e}").into(),
    }
}

/// A failure that retrying cannot fix.
fn refused(message: String) -> Error {
    Error::Adapter {
        adapter: "bronze.case_events",
        source: message.into(),
    }
}

fn epoch(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp())
}

/// One row of [`TABLE`], as the source reads it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventRow {
    /// Case id.
    pub case_id: String,
    /// Jurisdiction code.
    pub jurisdiction: String,
    /// Position in the case's history.
    pub seq: i64,
    /// When it happened, UTC epoch seconds.
    pub at_epoch: i64,
    /// What happened (`opened`, `paused`, ...).
    pub kind: String,
    /// When the case was opened, UTC epoch seconds (the chunk column).
    pub opened_epoch: i64,
}

static COLUMNS: &[Column] = &[
    Column::new("case_id", SqlType::Text),
    Column::new("jurisdiction", SqlType::Text),
    Column::new("seq", SqlType::BigInt),
    Column::new("at_epoch", SqlType::BigInt),
    Column::new("kind", SqlType::Text),
    Column::new("opened_epoch", SqlType::BigInt),
];

/// Case histories over [`TABLE`]: event rows grouped by case.
pub type CaseEventSource = Grouped<EventRow, CaseHistory>;

/// Folds one case's event rows (in `seq` order) into its history.
fn history(rows: Vec<EventRow>) -> backfill_core::Result<CaseHistory> {
    let mut events = Vec::with_capacity(rows.len());
    let (mut case_id, mut jurisdiction) = (String::new(), String::new());
    for r in rows {
        events.push(CaseEvent {
            seq: u32::try_from(r.seq).map_err(|e| refused(format!("{}: seq: {e}", r.case_id)))?,
            at: DateTime::<Utc>::from_timestamp(r.at_epoch, 0)
                .ok_or_else(|| refused(format!("{}: at_epoch {}", r.case_id, r.at_epoch)))?,
            kind: r
                .kind
                .parse()
                .map_err(|e: String| refused(format!("{}: {e}", r.case_id)))?,
        });
        (case_id, jurisdiction) = (r.case_id, r.jurisdiction);
    }
    Ok(CaseHistory {
        case_id,
        jurisdiction,
        events,
    })
}

/// The source of case histories whose events happened before `events_before` (the input range's
/// end): monthly chunks by opening date, keyset pages in `(case_id, seq)` order.
pub fn case_event_source(
    pool: SqlPool,
    events_before: NaiveDate,
) -> backfill_core::Result<CaseEventSource> {
    let table = QualifiedName::parse(TABLE)?.quoted(pool.dialect());
    // Written by the program from a validated name and an integer, never from input.
    let query = format!(
        "SELECT case_id, jurisdiction, seq, at_epoch, kind, opened_epoch FROM {table} WHERE at_epoch < {}",
        epoch(events_before)
    );
    let rows: SqlSource<EventRow> = SqlSourceBuilder::query(pool, query)
        .name(TABLE)
        .columns(COLUMNS)
        .key(&["case_id", "seq"])
        .epoch_seconds_column("opened_epoch")
        .chunk_by_month()
        .batch_size(BATCH)
        .build()?;
    Ok(rows.grouped(|r: &EventRow| r.case_id.clone(), history))
}

/// The snapshot id planning records for `range`: what a manifest reading `range` must pin.
pub async fn pinned_snapshot(
    source: &CaseEventSource,
    range: &InputRange,
) -> backfill_core::Result<String> {
    source.rows().snapshot(range).await
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

/// The generator hash of what was loaded into [`TABLE`], if it was loaded.
pub async fn loaded(pool: &SqlPool) -> Result<Option<String>, Error> {
    let loads = QualifiedName::parse(LOADS)?;
    loads.ensure_schema(pool).await?;
    let d = pool.dialect();
    exec(
        pool,
        &format!(
            "CREATE TABLE IF NOT EXISTS {} (table_name VARCHAR(64) PRIMARY KEY, content TEXT NOT NULL, event_rows BIGINT NOT NULL)",
            loads.quoted(d)
        ),
    )
    .await?;
    let sql = d
        .sql(&format!(
            "SELECT content FROM {} WHERE table_name = ?",
            loads.quoted(d)
        ))
        .into_owned();
    on_pool!(pool, p => sqlx::query_scalar(&sql).bind(TABLE).fetch_optional(p).await)
        .map_err(|e| failed("reading the bronze load record", e))
}

/// Loads generated cases into [`TABLE`] once, in one transaction, and returns the generator's
/// content hash. Loading the same cases again does nothing; loading other cases into a loaded table
/// is refused. Workers started together all succeed: whoever loses the race to load (a duplicate
/// key, or a concurrent `CREATE … IF NOT EXISTS` on PostgreSQL) finds the winner's load recorded
/// and uses it.
pub async fn load(pool: &SqlPool, cases: &[CaseHistory]) -> Result<String, Error> {
    let content = super::events::snapshot_id(cases);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let err = match try_load(pool, cases, &content).await {
            Ok(()) => return Ok(content),
            Err(e) => e,
        };
        // The other worker's transaction has committed by the time ours failed on its keys.
        match loaded(pool).await {
            Ok(Some(have)) if have == content => return Ok(content),
            Ok(Some(_)) => return Err(err),
            _ if attempt < 3 => {
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
            }
            _ => return Err(err),
        }
    }
}

async fn try_load(pool: &SqlPool, cases: &[CaseHistory], content: &str) -> Result<(), Error> {
    if let Some(have) = loaded(pool).await? {
        if have == content {
            return Ok(());
        }
        return Err(refused(format!(
            "already holds the cases {have}, not {content}: use a fresh data directory"
        )));
    }
    let d = pool.dialect();
    let name = QualifiedName::parse(TABLE)?;
    let (table, loads) = (name.quoted(d), QualifiedName::parse(LOADS)?.quoted(d));
    exec(pool, &format!("CREATE TABLE IF NOT EXISTS {table} (case_id VARCHAR(64) NOT NULL, jurisdiction VARCHAR(16) NOT NULL, seq BIGINT NOT NULL, at_epoch BIGINT NOT NULL, kind VARCHAR(16) NOT NULL, opened_epoch BIGINT NOT NULL, PRIMARY KEY (case_id, seq))")).await?;
    // Index names are not schema-qualified (PostgreSQL puts an index in its table's schema).
    let index = d.quote(&format!("{}_opened", name.catalog_parts(d).1));
    exec(
        pool,
        &format!("CREATE INDEX IF NOT EXISTS {index} ON {table} (opened_epoch, case_id, seq)"),
    )
    .await?;
    let rows: Vec<(&CaseHistory, &CaseEvent, i64)> = cases
        .iter()
        .flat_map(|c| {
            let opened = c.opened_at().map_or(0, |t| t.timestamp());
            c.events.iter().map(move |e| (c, e, opened))
        })
        .collect();
    let insert = |n: usize| {
        let values = vec!["(?, ?, ?, ?, ?, ?)"; n].join(", ");
        d.sql(&format!("INSERT INTO {table} (case_id, jurisdiction, seq, at_epoch, kind, opened_epoch) VALUES {values}")).into_owned()
    };
    // One statement text for full batches, one for the shorter last batch.
    let (full, last) = (insert(INSERT_ROWS), insert(rows.len() % INSERT_ROWS));
    let record = d
        .sql(&format!(
            "INSERT INTO {loads} (table_name, content, event_rows) VALUES (?, ?, ?)"
        ))
        .into_owned();
    on_pool!(pool, p => {
        let mut conn = backfill_sql::TxConn::acquire(p).await.map_err(|e| failed("connect", e))?;
        let mut tx = conn.begin(None).await.map_err(|e| failed("begin", e))?;
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
            .bind(content)
            .bind(i64::try_from(rows.len()).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(|e| failed("recording the load", e))?;
        tx.commit().await.map_err(|e| failed("commit", e))?;
    });
    Ok(())
}
