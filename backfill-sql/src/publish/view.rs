//! Views readers query (shadow swap, versioned output, the accepted view of appends): switching
//! them, and reading back which table they show.
//!
//! PostgreSQL and SQLite switch a view inside the publishing transaction. MySQL/MariaDB commit
//! implicitly around DDL, so there the switch runs right after the transaction that recorded the
//! receipt and moved the pointer; until it has run, [`pending_switch`](SqlPublisher::pending_switch)
//! finds it, `inspect` answers `None` and the next `publish` (or `rollback`) completes it.

use backfill_core::ids::RunId;
use backfill_core::manifest::Mutation;

use super::tx::{commit, Stmt};
use super::SqlPublisher;
use crate::dialect::Dialect;
use crate::error::db;
use crate::ident::QualifiedName;
use crate::pool::SqlPool;
use crate::sink::column_list;

/// Points `view` at `table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ViewSwitch {
    /// The view readers query.
    pub(crate) view: QualifiedName,
    /// The table it must show.
    pub(crate) table: QualifiedName,
}

/// The view definition as the engine's catalog keeps it (`None` when there is no such view).
async fn definition(pool: &SqlPool, view: &QualifiedName) -> backfill_core::Result<Option<String>> {
    let d = pool.dialect();
    let (schema, name) = view.catalog_parts(d);
    let def: Option<Option<String>> = match pool {
        SqlPool::Postgres(p) => sqlx::query_scalar(
            "SELECT pg_get_viewdef(c.oid) FROM pg_class c WHERE c.oid = to_regclass($1) AND c.relkind = 'v'",
        )
        .bind(view.quoted(d))
        .fetch_optional(p)
        .await
        .map_err(db)?,
        SqlPool::MySql(p) => sqlx::query_scalar(
            "SELECT VIEW_DEFINITION FROM information_schema.VIEWS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
        )
        .bind(schema)
        .bind(&name)
        .fetch_optional(p)
        .await
        .map_err(db)?,
        SqlPool::Sqlite(p) => {
            sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = ?")
                .bind(&name)
                .fetch_optional(p)
                .await
                .map_err(db)?
        }
    };
    Ok(def.flatten())
}

impl<R> SqlPublisher<R> {
    /// Whether DDL commits with the surrounding transaction on this engine.
    pub(crate) fn transactional_ddl(&self) -> bool {
        self.pool.dialect() != Dialect::MySql
    }

    /// The statements that define `s.view` as every column of `s.table`.
    pub(crate) fn switch_sql(&self, s: &ViewSwitch) -> Vec<Stmt> {
        let d = self.pool.dialect();
        let v = s.view.quoted(d);
        let body = format!(
            "SELECT {} FROM {}",
            column_list(&self.schema, d, ""),
            s.table.quoted(d)
        );
        match d {
            Dialect::Sqlite => vec![
                Stmt::plain(format!("DROP VIEW IF EXISTS {v}")),
                Stmt::plain(format!("CREATE VIEW {v} AS {body}")),
            ],
            _ => vec![Stmt::plain(format!("CREATE OR REPLACE VIEW {v} AS {body}"))],
        }
    }

    /// Switches a view on its own (after the transaction, where DDL is not transactional).
    pub(crate) async fn switch_now(
        &self,
        run_id: &RunId,
        s: &ViewSwitch,
    ) -> backfill_core::Result<()> {
        commit(&self.pool, run_id, &self.switch_sql(s), None)
            .await
            .map(drop)
    }

    /// Whether `s.view` currently shows `s.table`.
    pub(crate) async fn view_shows(&self, s: &ViewSwitch) -> backfill_core::Result<bool> {
        Ok(definition(&self.pool, &s.view)
            .await?
            .is_some_and(|def| def.contains(s.table.name().as_str())))
    }

    /// Whether a table or view exists.
    pub(crate) async fn exists(&self, name: &QualifiedName) -> backfill_core::Result<bool> {
        let d = self.pool.dialect();
        let (schema, table) = name.catalog_parts(d);
        let found: Option<i64> = match &self.pool {
            SqlPool::Postgres(p) => sqlx::query_scalar(
                "SELECT 1::int8 FROM pg_class WHERE oid = to_regclass($1)",
            )
            .bind(name.quoted(d))
            .fetch_optional(p)
            .await
            .map_err(db)?,
            SqlPool::MySql(p) => sqlx::query_scalar(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
            )
            .bind(schema)
            .bind(&table)
            .fetch_optional(p)
            .await
            .map_err(db)?,
            SqlPool::Sqlite(p) => sqlx::query_scalar(
                "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?",
            )
            .bind(&table)
            .fetch_optional(p)
            .await
            .map_err(db)?,
        };
        Ok(found.is_some())
    }

    /// The view switch that makes `run_id` visible, when the target's pointer names the run but
    /// the view does not show its table yet (MySQL/MariaDB after a crash between the transaction
    /// and the switch). `None` when nothing is pending.
    pub(crate) async fn pending_switch(
        &self,
        run_id: &RunId,
    ) -> backfill_core::Result<Option<ViewSwitch>> {
        let Some(pointer) = self.pointer().await? else {
            return Ok(None);
        };
        let views = [
            Mutation::ShadowSwap.name(),
            Mutation::VersionedOutput.name(),
        ];
        if pointer.run_id != *run_id || !views.contains(&pointer.mutation.as_str()) {
            return Ok(None);
        }
        let s = ViewSwitch {
            view: QualifiedName::parse(&pointer.relation)?,
            table: self.shadow_table(run_id),
        };
        Ok((!self.view_shows(&s).await?).then_some(s))
    }

    /// Completes a pending view switch of `run_id`, if there is one.
    pub(crate) async fn complete_switch(&self, run_id: &RunId) -> backfill_core::Result<()> {
        if let Some(s) = self.pending_switch(run_id).await? {
            tracing::info!(run_id = %run_id, view = %s.view, table = %s.table, "completing an interrupted view switch");
            self.switch_now(run_id, &s).await?;
        }
        Ok(())
    }
}

/// Reads the current database of a MySQL/MariaDB pool (views there resolve unqualified names in
/// their own database, so bookkeeping tables are named with it).
pub(crate) async fn current_database(pool: &SqlPool) -> backfill_core::Result<Option<String>> {
    match pool {
        SqlPool::MySql(p) => sqlx::query_scalar::<_, Option<String>>("SELECT DATABASE()")
            .fetch_one(p)
            .await
            .map_err(db),
        _ => Ok(None),
    }
}
