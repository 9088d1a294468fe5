//! Correction events (`correction_events`): an outbox table, one row per event, written with its
//! receipt in one transaction.

use async_trait::async_trait;
use backfill_core::correction::{CorrectionEvent, CorrectionOutbox};
use backfill_core::ids::RunId;
use backfill_core::manifest::Mutation;
use backfill_core::publish::PublishReceipt;
use backfill_core::sink::SinkDescriptor;

use super::record::{record_publication, recorded};
use super::tx::{commit, Arg, Outcome, Stmt};
use super::{hashed, refuse};
use crate::dialect::Dialect;
use crate::error::corrupt;
use crate::ident::QualifiedName;
use crate::migrate::migrate;
use crate::pool::SqlPool;

/// The outbox table's columns, in insert order.
const COLUMNS: [&str; 8] = [
    "event_id",
    "event_type",
    "key",
    "partition",
    "corrects_event_id",
    "payload",
    "produced_by_run_id",
    "produced_at",
];

/// Events per `INSERT` statement (8 bound values each, far below every engine's limit).
const BATCH: usize = 500;

/// A [`CorrectionOutbox`] in a table on PostgreSQL, MariaDB/MySQL or SQLite, for a relay (or any
/// reader) to forward: one row per event with `event_id` as primary key, `event_type`, `key`,
/// `partition`, `corrects_event_id`, the whole event as JSON in `payload` (camelCase, as consumers
/// read it), `produced_by_run_id` and `produced_at` (microseconds since the epoch, UTC).
///
/// A run's events and its receipt (a row in `bf_publications` with the table's name as target and
/// mutation `correction_events`, where every publication of the crate records its receipt) are
/// inserted in one transaction whose first statement claims the receipt's primary key: a second
/// write of the run, concurrent or after an unknown outcome, finds the claim taken and changes
/// nothing, and [`inspect`](CorrectionOutbox::inspect) answers from that row. The event id's primary
/// key refuses an event stored twice.
///
/// The table name is validated and quoted; `schema.table` is a schema on PostgreSQL, a database on
/// MariaDB and the table `schema__table` on SQLite, as for every target of the crate. The table is
/// created on the first write, or by [`ensure_table`](Self::ensure_table).
#[derive(Debug, Clone)]
pub struct SqlOutbox {
    pool: SqlPool,
    table: QualifiedName,
}

impl SqlOutbox {
    /// An outbox table `table` (`name` or `schema.name`) on `pool`; applies the crate's migrations
    /// (for `bf_publications`), as the publishers do.
    pub async fn new(pool: SqlPool, table: &str) -> backfill_core::Result<Self> {
        let table = QualifiedName::parse(table)?;
        migrate(&pool).await?;
        Ok(Self { pool, table })
    }

    /// The outbox table.
    pub fn table(&self) -> &QualifiedName {
        &self.table
    }

    /// The pool.
    pub fn pool(&self) -> &SqlPool {
        &self.pool
    }

    fn d(&self) -> Dialect {
        self.pool.dialect()
    }

    /// Creates the schema, the table and its index on `produced_by_run_id` when missing. DDL runs
    /// outside the writing transaction (MySQL commits around it).
    pub async fn ensure_table(&self) -> backfill_core::Result<()> {
        let d = self.d();
        let q = |c: &str| d.quote(c);
        let (key, long) = (d.key_type(), d.long_text());
        self.table.ensure_schema(&self.pool).await?;
        let t = self.table.quoted(d);
        self.pool
            .execute(&format!(
                "CREATE TABLE IF NOT EXISTS {t} ({} {key} NOT NULL PRIMARY KEY, {} {key} NOT NULL, \
                 {} {long} NOT NULL, {} {key} NOT NULL, {} {long} NULL, {} {long} NOT NULL, \
                 {} {key} NOT NULL, {} BIGINT NOT NULL){}",
                q(COLUMNS[0]),
                q(COLUMNS[1]),
                q(COLUMNS[2]),
                q(COLUMNS[3]),
                q(COLUMNS[4]),
                q(COLUMNS[5]),
                q(COLUMNS[6]),
                q(COLUMNS[7]),
                d.table_options(),
            ))
            .await?;
        let idx = hashed("bfi_", &[&self.table.to_string(), "produced_by_run_id"]);
        self.pool
            .ensure_index(
                idx.as_str(),
                &self.table,
                &format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {t} ({})",
                    idx.quoted(d),
                    q("produced_by_run_id")
                ),
            )
            .await
    }

    /// The inserts of `events`, in batches, each checked to write all of its rows.
    fn inserts(&self, events: &[CorrectionEvent]) -> backfill_core::Result<Vec<Stmt>> {
        let d = self.d();
        let cols = COLUMNS.map(|c| d.quote(c)).join(", ");
        let row = format!("({})", ["?"; COLUMNS.len()].join(", "));
        let mut out = Vec::with_capacity(events.len().div_ceil(BATCH));
        for batch in events.chunks(BATCH) {
            let mut args = Vec::with_capacity(batch.len() * COLUMNS.len());
            for e in batch {
                let payload = serde_json::to_string(e).map_err(|err| {
                    corrupt("correction event", format!("event {}: {err}", e.event_id))
                })?;
                args.extend([
                    Arg::from(e.event_id.as_str()),
                    e.event_type.as_str().into(),
                    e.key.as_str().into(),
                    e.partition.as_str().into(),
                    e.corrects_event_id.as_deref().into(),
                    payload.into(),
                    e.produced_by_run_id.as_str().into(),
                    Arg::Int(e.produced_at.timestamp_micros()),
                ]);
            }
            let values = vec![row.as_str(); batch.len()].join(", ");
            out.push(
                Stmt::new(
                    format!(
                        "INSERT INTO {} ({cols}) VALUES {values}",
                        self.table.quoted(d)
                    ),
                    args,
                )
                .rows(batch.len() as u64, format!("events into {}", self.table)),
            );
        }
        Ok(out)
    }
}

#[async_trait]
impl CorrectionOutbox for SqlOutbox {
    fn descriptor(&self) -> SinkDescriptor {
        SinkDescriptor::internal(
            self.table.to_string(),
            format!("{}_outbox", self.d().name()),
        )
    }

    async fn write(
        &self,
        run_id: &RunId,
        events: &[CorrectionEvent],
        receipt: &PublishReceipt,
    ) -> backfill_core::Result<PublishReceipt> {
        if receipt.run_id != *run_id {
            return Err(refuse(
                run_id,
                format!("the receipt is for run {}", receipt.run_id),
            ));
        }
        if let Some(done) = self.inspect(run_id).await? {
            return Ok(done);
        }
        self.ensure_table().await?;
        let name = self.table.to_string();
        let mut stmts = vec![record_publication(&name, receipt, None)?];
        stmts.extend(self.inserts(events)?);
        match commit(&self.pool, run_id, &stmts, None).await? {
            Outcome::Committed => {
                tracing::info!(run_id = %run_id, outbox = %name, events = events.len(), "wrote correction events");
                Ok(receipt.clone())
            }
            Outcome::AlreadyRecorded => self
                .inspect(run_id)
                .await?
                .ok_or_else(|| refuse(run_id, "the outbox write raced and vanished")),
        }
    }

    async fn inspect(&self, run_id: &RunId) -> backfill_core::Result<Option<PublishReceipt>> {
        let found = recorded(&self.pool, &self.table.to_string(), run_id).await?;
        match found {
            Some(r) if r.mutation == Mutation::CorrectionEvents.name() => Ok(Some(r.receipt)),
            Some(r) => Err(refuse(
                run_id,
                format!(
                    "{} records a {} publication of the run, not correction events: is it an outbox?",
                    self.table, r.mutation
                ),
            )),
            None => Ok(None),
        }
    }
}
