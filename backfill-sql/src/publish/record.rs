//! What the target database records about its own publications: receipts (`bf_publications`), the
//! pointer readers follow (`bf_target_pointers`) and rollbacks (`bf_rollbacks`). Each is written in
//! the same transaction as the change it describes, so the target is the authority on them.

use backfill_core::ids::RunId;
use backfill_core::publish::PublishReceipt;
use chrono::{DateTime, Utc};

use super::tx::{Arg, Stmt};
use super::SqlPublisher;
use crate::error::{corrupt, db};
use crate::pool::{with_pool, SqlPool};

/// A publication as the target recorded it.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    /// Mutation name.
    pub(crate) mutation: String,
    /// The run the target's pointer named when this one was published.
    pub(crate) previous: Option<RunId>,
    /// The receipt returned then.
    pub(crate) receipt: PublishReceipt,
}

/// The target's pointer: the accepted run and the relation readers query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pointer {
    /// The accepted run.
    pub(crate) run_id: RunId,
    /// The mutation that made it visible.
    pub(crate) mutation: String,
    /// The table or view readers query (`schema.name` or `name`).
    pub(crate) relation: String,
}

/// A rollback as the target recorded it.
#[derive(Debug, Clone)]
pub(crate) struct RolledBack {
    /// The run made visible again.
    pub(crate) to: RunId,
    /// The receipt returned then (absent for rows written before receipts were recorded).
    pub(crate) receipt: Option<PublishReceipt>,
    /// When.
    pub(crate) at: DateTime<Utc>,
}

fn parse_receipt(text: &str) -> backfill_core::Result<PublishReceipt> {
    serde_json::from_str(text).map_err(|e| corrupt("publish receipt", e))
}

fn receipt_json(receipt: &PublishReceipt) -> backfill_core::Result<String> {
    serde_json::to_string(receipt).map_err(|e| corrupt("publish receipt", e))
}

/// The recorded publication of `run_id` to `target` (a target table or an outbox), from
/// `bf_publications`.
pub(crate) async fn recorded(
    pool: &SqlPool,
    target: &str,
    run_id: &RunId,
) -> backfill_core::Result<Option<Recorded>> {
    let d = pool.dialect();
    let sql = d.sql(
        "SELECT mutation, previous_run_id, receipt FROM bf_publications WHERE run_id = ? AND target = ?",
    );
    let row: Option<(String, Option<String>, String)> = with_pool!(pool, p => {
        sqlx::query_as(&sql)
            .bind(run_id.as_str())
            .bind(target)
            .fetch_optional(p)
            .await
            .map_err(db)?
    });
    row.map(|(mutation, previous, receipt)| {
        Ok(Recorded {
            mutation,
            previous: previous.map(RunId::from),
            receipt: parse_receipt(&receipt)?,
        })
    })
    .transpose()
}

/// Records a publication of `receipt` to `target` in `bf_publications`: a transaction's claim (its
/// primary key is `(run, target)`), so a second publication of the run finds it and changes nothing.
pub(crate) fn record_publication(
    target: &str,
    receipt: &PublishReceipt,
    previous: Option<&RunId>,
) -> backfill_core::Result<Stmt> {
    Ok(Stmt::new(
        "INSERT INTO bf_publications (run_id, target, mutation, previous_run_id, receipt, published_at) VALUES (?, ?, ?, ?, ?, ?)",
        vec![
            receipt.run_id.as_str().into(),
            target.into(),
            receipt.mutation.as_str().into(),
            previous.map(RunId::as_str).into(),
            receipt_json(receipt)?.into(),
            Arg::Int(receipt.published_at.timestamp_micros()),
        ],
    )
    .claim())
}

impl<R> SqlPublisher<R> {
    fn target_name(&self) -> String {
        self.target.to_string()
    }

    /// The recorded publication of `run_id` to this target.
    pub(crate) async fn recorded(&self, run_id: &RunId) -> backfill_core::Result<Option<Recorded>> {
        recorded(&self.pool, &self.target_name(), run_id).await
    }

    /// The target's pointer, if any run was ever published to it.
    pub(crate) async fn pointer(&self) -> backfill_core::Result<Option<Pointer>> {
        let d = self.pool.dialect();
        let sql =
            d.sql("SELECT run_id, mutation, relation FROM bf_target_pointers WHERE target = ?");
        let row: Option<(String, String, String)> = with_pool!(&self.pool, p => {
            sqlx::query_as(&sql)
                .bind(self.target_name())
                .fetch_optional(p)
                .await
                .map_err(db)?
        });
        Ok(row.map(|(run_id, mutation, relation)| Pointer {
            run_id: RunId::from(run_id),
            mutation,
            relation,
        }))
    }

    /// The recorded rollback of `from` on this target.
    pub(crate) async fn rolled_back(
        &self,
        from: &RunId,
    ) -> backfill_core::Result<Option<RolledBack>> {
        let d = self.pool.dialect();
        let sql = d.sql("SELECT to_run_id, receipt, rolled_back_at FROM bf_rollbacks WHERE from_run_id = ? AND target = ?");
        let row: Option<(String, Option<String>, i64)> = with_pool!(&self.pool, p => {
            sqlx::query_as(&sql)
                .bind(from.as_str())
                .bind(self.target_name())
                .fetch_optional(p)
                .await
                .map_err(db)?
        });
        row.map(|(to, receipt, at)| {
            Ok(RolledBack {
                to: RunId::from(to),
                receipt: receipt.as_deref().map(parse_receipt).transpose()?,
                at: DateTime::from_timestamp_micros(at).unwrap_or_default(),
            })
        })
        .transpose()
    }

    /// Records a publication: the transaction's claim (its primary key is `(run, target)`).
    pub(crate) fn record_publication(
        &self,
        receipt: &PublishReceipt,
        previous: Option<&RunId>,
    ) -> backfill_core::Result<Stmt> {
        record_publication(&self.target_name(), receipt, previous)
    }

    /// Records a rollback: the transaction's claim (its primary key is `(from, target)`).
    pub(crate) fn record_rollback(
        &self,
        from: &RunId,
        receipt: &PublishReceipt,
    ) -> backfill_core::Result<Stmt> {
        Ok(Stmt::new(
            "INSERT INTO bf_rollbacks (from_run_id, to_run_id, target, rolled_back_at, receipt) VALUES (?, ?, ?, ?, ?)",
            vec![
                from.as_str().into(),
                receipt.run_id.as_str().into(),
                self.target_name().into(),
                Arg::Int(receipt.published_at.timestamp_micros()),
                receipt_json(receipt)?.into(),
            ],
        )
        .claim())
    }

    /// Moves the pointer from `expected` to `to`, as a compare-and-set.
    pub(crate) fn move_pointer(
        &self,
        expected: Option<&RunId>,
        to: &RunId,
        mutation: &str,
        relation: &str,
        at: DateTime<Utc>,
    ) -> Stmt {
        let target = self.target_name();
        let at = Arg::Int(at.timestamp_micros());
        let stmt = match expected {
            Some(from) => Stmt::new(
                "UPDATE bf_target_pointers SET run_id = ?, mutation = ?, relation = ?, updated_at = ? WHERE target = ? AND run_id = ?",
                vec![
                    to.as_str().into(),
                    mutation.into(),
                    relation.into(),
                    at,
                    target.as_str().into(),
                    from.as_str().into(),
                ],
            ),
            None => Stmt::new(
                "INSERT INTO bf_target_pointers (target, run_id, mutation, relation, updated_at) VALUES (?, ?, ?, ?, ?)",
                vec![
                    target.as_str().into(),
                    to.as_str().into(),
                    mutation.into(),
                    relation.into(),
                    at,
                ],
            ),
        };
        stmt.cas(&target, expected)
    }
}
