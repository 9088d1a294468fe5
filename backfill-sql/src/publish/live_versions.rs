//! Versioned writes beside a live writer (`versioned_output` with `target.live_writes:
//! versioned_writes`, seed §12.2): every version's rows live in the target table, told apart by
//! their `produced_by_run_id`. The live pipeline writes the version [`LIVE_VERSION`]; a run's rows
//! carry its run id. A table of accepted versions names, per partition, which version readers see
//! (the live one where it names none), and the view `<target>_current` shows exactly that.
//!
//! Publishing inserts the run's rows and points its partitions at them, in one transaction, on
//! every engine (no DDL per publication); live rows are never touched, so no live write is lost,
//! and it keeps going to the live version while readers of the published partitions see the run's.
//! Each publication logs the versions it replaced; rollback points the partitions back at them and
//! deletes the run's rows.

use backfill_core::digest::OutputRow;
use backfill_core::ids::{PartitionKey, RunId};
use backfill_core::publish::PublishRequest;
use serde::de::DeserializeOwned;

use super::artifacts::Staged;
use super::record::Recorded;
use super::{hashed, Arg, Change, SqlPublisher, Stmt};
use crate::dialect::Dialect;
use crate::error::db;
use crate::ident::QualifiedName;
use crate::pool::with_pool;
use crate::sink::column_list;

/// The version live writers write (their rows' `produced_by_run_id`): what readers of
/// `<target>_current` see in every partition no published run has taken over.
pub const LIVE_VERSION: &str = "live-current";

/// The receipt's and pointer's mutation name for versioned writes.
pub(crate) const VERSIONED_WRITES: &str = "versioned_writes";

const PRODUCED_BY: &str = "produced_by_run_id";

impl<R> SqlPublisher<R> {
    /// Partition -> accepted version.
    fn versions_table(&self) -> QualifiedName {
        self.target
            .sibling(hashed("bfv_", &[&self.target.to_string()]))
    }

    /// Run, partition -> the version its publication replaced.
    fn version_log(&self) -> QualifiedName {
        self.target
            .sibling(hashed("bfvl_", &[&self.target.to_string()]))
    }
}

impl<R: OutputRow + DeserializeOwned> SqlPublisher<R> {
    /// Creates the target, the versions tables and the view `<target>_current` if missing.
    async fn ensure_versions(&self) -> backfill_core::Result<()> {
        self.ensure_target().await?;
        let d = self.d();
        let k = d.key_type();
        let v = self.versions_table().quoted(d);
        let l = self.version_log().quoted(d);
        let opts = d.table_options();
        self.pool
            .execute(&format!(
                "CREATE TABLE IF NOT EXISTS {v} (part {k} NOT NULL PRIMARY KEY, version {k} NOT NULL){opts}"
            ))
            .await?;
        self.pool
            .execute(&format!(
                "CREATE TABLE IF NOT EXISTS {l} (run_id {k} NOT NULL, part {k} NOT NULL, previous {k}, PRIMARY KEY (run_id, part)){opts}"
            ))
            .await?;
        let view = self.relation_for(VERSIONED_WRITES)?.quoted(d);
        let body = format!(
            "SELECT {} FROM {} t WHERE t.{} = COALESCE((SELECT a.version FROM {v} a WHERE a.part = t.{}), '{LIVE_VERSION}')",
            column_list(&self.schema, d, "t."),
            self.target.quoted(d),
            self.q(PRODUCED_BY),
            self.q(self.schema.partition_column),
        );
        let create = match d {
            Dialect::Sqlite => format!("CREATE VIEW IF NOT EXISTS {view} AS {body}"),
            _ => format!("CREATE OR REPLACE VIEW {view} AS {body}"),
        };
        self.pool.execute(&create).await.map(drop)
    }

    /// Insert the run's rows and point its partitions at them, logging what each showed before.
    pub(crate) async fn versioned_writes(
        &self,
        run_id: &RunId,
        staged: &Staged,
        req: &PublishRequest<'_>,
    ) -> backfill_core::Result<(Vec<PartitionKey>, Change)> {
        self.ensure_versions().await?;
        let partitions = self.partitions(staged, req.manifest, None).await?;
        let d = self.d();
        let v = self.versions_table().quoted(d);
        let l = self.version_log().quoted(d);
        let mut stmts: Vec<Stmt> = self.insert_staged(staged).into_iter().collect();
        let run = Arg::from(run_id.as_str());
        for p in &partitions {
            let part = Arg::Text(p.to_string());
            stmts.push(Stmt::new(
                format!("INSERT INTO {l} (run_id, part, previous) VALUES (?, ?, (SELECT version FROM {v} WHERE part = ?))"),
                vec![run.clone(), part.clone(), part.clone()],
            ));
            stmts.push(Stmt::new(
                format!("DELETE FROM {v} WHERE part = ?"),
                vec![part.clone()],
            ));
            stmts.push(Stmt::new(
                format!("INSERT INTO {v} (part, version) VALUES (?, ?)"),
                vec![part, run.clone()],
            ));
        }
        let reference = format!("{}:{}", d.name(), self.relation_for(VERSIONED_WRITES)?);
        Ok((
            partitions,
            Change {
                stmts,
                view: None,
                reference,
            },
        ))
    }

    /// Point `from`'s partitions back at the versions they showed before it, and delete its rows.
    pub(crate) async fn versioned_writes_undo(
        &self,
        from: &Recorded,
    ) -> backfill_core::Result<Change> {
        let d = self.d();
        let v = self.versions_table().quoted(d);
        let sql = d
            .sql(&format!(
                "SELECT part, previous FROM {} WHERE run_id = ? ORDER BY part",
                self.version_log().quoted(d)
            ))
            .into_owned();
        let run = from.receipt.run_id.as_str();
        let logged: Vec<(String, Option<String>)> = with_pool!(&self.pool, p => {
            sqlx::query_as(&sql).bind(run).fetch_all(p).await.map_err(db)?
        });
        let mut stmts = Vec::with_capacity(logged.len() * 2 + 1);
        for (part, previous) in logged {
            stmts.push(Stmt::new(
                format!("DELETE FROM {v} WHERE part = ?"),
                vec![Arg::Text(part.clone())],
            ));
            if let Some(previous) = previous {
                stmts.push(Stmt::new(
                    format!("INSERT INTO {v} (part, version) VALUES (?, ?)"),
                    vec![Arg::Text(part), Arg::Text(previous)],
                ));
            }
        }
        stmts.push(Stmt::new(
            format!(
                "DELETE FROM {} WHERE {} = ?",
                self.target.quoted(d),
                self.q(PRODUCED_BY)
            ),
            vec![run.into()],
        ));
        Ok(Change {
            stmts,
            view: None,
            reference: format!("{}:{}", d.name(), self.target),
        })
    }
}
