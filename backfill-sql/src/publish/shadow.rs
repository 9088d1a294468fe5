//! Shadow swap: the run's rows go into a table of its own (`bfsh_<hash>`, beside the target), and
//! the view `<target>` is pointed at it. The table is filled inside the publishing transaction; the
//! view switch is part of it on PostgreSQL and SQLite and follows it on MySQL/MariaDB (see
//! [`super::view`]). Rollback points the view back at the earlier run's table, which is kept.

use backfill_core::digest::OutputRow;
use backfill_core::ids::RunId;
use serde::de::DeserializeOwned;

use super::artifacts::Staged;
use super::record::Recorded;
use super::view::ViewSwitch;
use super::{refuse, Change, SqlPublisher, Stmt};
use crate::ident::QualifiedName;
use crate::sink::{column_ddl, column_list};

impl<R: OutputRow + DeserializeOwned> SqlPublisher<R> {
    /// Fill the run's own table from staging and point `view` at it.
    pub(crate) async fn shadow(
        &self,
        run_id: &RunId,
        staged: &Staged,
        view: QualifiedName,
    ) -> backfill_core::Result<Change> {
        let d = self.d();
        self.target.ensure_schema(&self.pool).await?;
        let table = self.shadow_table(run_id);
        let t = table.quoted(d);
        // DDL before the transaction; the rows go in inside it, so a failed attempt leaves the
        // table empty and invisible, and a concurrent attempt of the same run waits on the claim.
        self.pool
            .execute(&format!(
                "CREATE TABLE IF NOT EXISTS {t} ({}){}",
                column_ddl(&self.schema, d),
                d.table_options()
            ))
            .await?;
        let mut stmts = vec![Stmt::plain(format!("DELETE FROM {t}"))];
        if let Some(src) = staged.source(d) {
            stmts.push(Stmt::plain(format!(
                "INSERT INTO {t} ({}) SELECT {} FROM {src}",
                column_list(&self.schema, d, ""),
                column_list(&self.schema, d, "s."),
            )));
        }
        Ok(Change {
            stmts,
            reference: format!("{}:{view} -> {table}", d.name()),
            view: Some(ViewSwitch { view, table }),
        })
    }

    /// Point `view` back at `to`'s table.
    pub(crate) async fn shadow_undo(
        &self,
        to: &Recorded,
        view: QualifiedName,
    ) -> backfill_core::Result<Change> {
        let table = self.shadow_table(&to.receipt.run_id);
        if !self.exists(&table).await? {
            return Err(refuse(
                &to.receipt.run_id,
                format!(
                    "its table `{table}` of target {} no longer exists",
                    self.target
                ),
            ));
        }
        Ok(Change {
            stmts: Vec::new(),
            reference: format!("{}:{view} -> {table}", self.d().name()),
            view: Some(ViewSwitch { view, table }),
        })
    }
}
