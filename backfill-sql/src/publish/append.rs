//! Append with run id: the run's rows are appended with their lineage (`produced_by_run_id`), and
//! the view `<target>_accepted` shows the rows of the run the target's pointer names. Moving the
//! pointer (a row update, in the publishing transaction) is what makes a run visible, on every
//! engine; rollback moves it back and deletes the rolled-back run's rows.

use backfill_core::digest::OutputRow;
use backfill_core::manifest::Mutation;
use serde::de::DeserializeOwned;

use super::artifacts::Staged;
use super::record::Recorded;
use super::view::current_database;
use super::{Change, SqlPublisher, Stmt};
use crate::dialect::Dialect;
use crate::sink::column_list;

/// The lineage column naming the run that produced a row.
const PRODUCED_BY: &str = "produced_by_run_id";

impl<R: OutputRow + DeserializeOwned> SqlPublisher<R> {
    /// Creates `<target>_accepted` if missing.
    async fn ensure_accepted_view(&self) -> backfill_core::Result<()> {
        let d = self.d();
        let view = self.relation_for(Mutation::AppendWithRunId.name())?;
        // A MySQL view resolves unqualified names in its own database, which may be the target's.
        let pointers = match current_database(&self.pool).await? {
            Some(db) => format!("{}.bf_target_pointers", d.quote(&db)),
            None => "bf_target_pointers".to_owned(),
        };
        // The target name is validated identifiers and a dot: safe as a literal.
        let body = format!(
            "SELECT {} FROM {} WHERE {} = (SELECT run_id FROM {pointers} WHERE target = '{}')",
            column_list(&self.schema, d, ""),
            self.target.quoted(d),
            self.q(PRODUCED_BY),
            self.target,
        );
        let v = view.quoted(d);
        let create = match d {
            Dialect::Sqlite => format!("CREATE VIEW IF NOT EXISTS {v} AS {body}"),
            _ => format!("CREATE OR REPLACE VIEW {v} AS {body}"),
        };
        self.pool.execute(&create).await.map(drop)
    }

    /// The statement inserting every staged row into the target (`None` when nothing was staged).
    pub(crate) fn insert_staged(&self, staged: &Staged) -> Option<Stmt> {
        let d = self.d();
        staged.source(d).map(|src| {
            Stmt::plain(format!(
                "INSERT INTO {} ({}) SELECT {} FROM {src}",
                self.target.quoted(d),
                column_list(&self.schema, d, ""),
                column_list(&self.schema, d, "s."),
            ))
        })
    }

    /// Append the staged rows.
    pub(crate) async fn append(&self, staged: &Staged) -> backfill_core::Result<Change> {
        self.ensure_target().await?;
        self.ensure_accepted_view().await?;
        let d = self.d();
        let stmts = self.insert_staged(staged).into_iter().collect();
        Ok(Change {
            stmts,
            view: None,
            reference: format!(
                "{}:{}",
                d.name(),
                self.relation_for(Mutation::AppendWithRunId.name())?
            ),
        })
    }

    /// Delete the rows `from` appended (the pointer moving back shows the earlier run's again).
    pub(crate) fn append_undo(&self, from: &Recorded) -> backfill_core::Result<Change> {
        let d = self.d();
        Ok(Change {
            stmts: vec![Stmt::new(
                format!(
                    "DELETE FROM {} WHERE {} = ?",
                    self.target.quoted(d),
                    self.q(PRODUCED_BY)
                ),
                vec![from.receipt.run_id.as_str().into()],
            )],
            view: None,
            reference: format!("{}:{}", d.name(), self.target),
        })
    }
}
