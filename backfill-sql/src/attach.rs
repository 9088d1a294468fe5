//! PostgreSQL declarative partitions: a replace-partitions publication builds one table per replaced
//! partition and swaps it in with `DETACH PARTITION` / `ATTACH PARTITION` in one transaction. The
//! detached tables are kept, so rollback swaps them back.

use backfill_core::digest::OutputRow;
use backfill_core::ids::{PartitionKey, RunId};
use serde::de::DeserializeOwned;
use sqlx::Row;

use crate::dialect::Dialect;
use crate::error::db;
use crate::ident::Ident;
use crate::pool::SqlPool;
use crate::publish::{hashed, refuse, SqlPublisher, Stmt};
use crate::sink::column_list;

/// Partition values go into `FOR VALUES IN ('…')`, which cannot be bound: only plain values are used.
fn literal(run_id: &RunId, p: &PartitionKey) -> backfill_core::Result<String> {
    let ok = !p.as_str().is_empty()
        && p.as_str().len() <= 100
        && p.as_str()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if !ok {
        return Err(refuse(run_id, format!("partition value `{p}` cannot be attached: only letters, digits and - _ . : are allowed")));
    }
    Ok(format!("'{p}'"))
}

impl<R: OutputRow + DeserializeOwned> SqlPublisher<R> {
    /// Whether the target is a PostgreSQL partitioned table.
    pub(crate) async fn is_partitioned(&self) -> backfill_core::Result<bool> {
        let SqlPool::Postgres(p) = &self.pool else {
            return Ok(false);
        };
        let kind: Option<String> = sqlx::query_scalar(
            "SELECT c.relkind::text FROM pg_class c WHERE c.oid = to_regclass($1)",
        )
        .bind(self.target.quoted(Dialect::Postgres))
        .fetch_optional(p)
        .await
        .map_err(db)?;
        Ok(kind.as_deref() == Some("p"))
    }

    async fn child_for(&self, value: &str) -> backfill_core::Result<Option<String>> {
        let SqlPool::Postgres(p) = &self.pool else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass($1)",
        )
        .bind(self.target.quoted(Dialect::Postgres))
        .fetch_all(p)
        .await
        .map_err(db)?;
        let want = format!("FOR VALUES IN ('{value}')");
        for r in rows {
            let bound: Option<String> = r.try_get("bound").map_err(db)?;
            if bound.as_deref() == Some(want.as_str()) {
                return Ok(Some(r.try_get("relname").map_err(db)?));
            }
        }
        Ok(None)
    }

    /// Builds the new partition tables (DDL, before the transaction) and returns the swap statements.
    pub(crate) async fn attach_statements(
        &self,
        run_id: &RunId,
        stg: &Ident,
        partitions: &[PartitionKey],
    ) -> backfill_core::Result<Vec<Stmt>> {
        let d = Dialect::Postgres;
        let t = self.target.quoted(d);
        let cols = column_list(&self.schema, d, "");
        let part = d.quote(self.schema.partition_column);
        let mut out = Vec::new();
        for p in partitions {
            let lit = literal(run_id, p)?;
            let new = hashed(
                "bfpart_",
                &[self.target.as_str(), run_id.as_str(), p.as_str()],
            );
            let n = new.quoted(d);
            self.pool
                .execute(&format!("DROP TABLE IF EXISTS {n}"))
                .await?;
            self.pool
                .execute(&format!(
                    "CREATE TABLE {n} (LIKE {t} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
                ))
                .await?;
            // The CHECK lets ATTACH skip its validation scan.
            self.pool
                .execute(&format!(
                    "ALTER TABLE {n} ADD CHECK ({part} IS NOT NULL AND {part} = {lit})"
                ))
                .await?;
            if let SqlPool::Postgres(pg) = &self.pool {
                sqlx::query(&format!(
                    "INSERT INTO {n} ({cols}) SELECT {cols} FROM {} WHERE {part} = $1",
                    stg.quoted(d)
                ))
                .bind(p.as_str())
                .execute(pg)
                .await
                .map_err(db)?;
            }
            let old = self.child_for(p.as_str()).await?;
            if let Some(old) = &old {
                out.push(Stmt::new(
                    format!("ALTER TABLE {t} DETACH PARTITION {}", d.quote(old)),
                    Vec::new(),
                ));
            }
            out.push(Stmt::new(
                format!("ALTER TABLE {t} ATTACH PARTITION {n} FOR VALUES IN ({lit})"),
                Vec::new(),
            ));
            out.push(Stmt::new(
                "INSERT INTO bf_attached_partitions (run_id, target, partition_value, new_table, old_table) VALUES (?, ?, ?, ?, ?)".into(),
                vec![run_id.to_string(), self.target.to_string(), p.to_string(), new.to_string(), old.unwrap_or_default()],
            ));
        }
        Ok(out)
    }

    /// The statements that swap back the partitions a run attached.
    pub(crate) async fn reattach_statements(
        &self,
        from: &RunId,
    ) -> backfill_core::Result<Vec<Stmt>> {
        let SqlPool::Postgres(pg) = &self.pool else {
            return Ok(Vec::new());
        };
        let d = Dialect::Postgres;
        let t = self.target.quoted(d);
        let rows = sqlx::query("SELECT partition_value, new_table, old_table FROM bf_attached_partitions WHERE run_id = $1 AND target = $2")
            .bind(from.as_str())
            .bind(self.target.as_str())
            .fetch_all(pg)
            .await
            .map_err(db)?;
        let mut out = Vec::new();
        for r in rows {
            let value: String = r.try_get("partition_value").map_err(db)?;
            let new: String = r.try_get("new_table").map_err(db)?;
            let old: String = r.try_get("old_table").map_err(db)?;
            let lit = literal(from, &PartitionKey::from(value.as_str()))?;
            out.push(Stmt::new(
                format!("ALTER TABLE {t} DETACH PARTITION {}", d.quote(&new)),
                Vec::new(),
            ));
            if !old.is_empty() {
                out.push(Stmt::new(
                    format!(
                        "ALTER TABLE {t} ATTACH PARTITION {} FOR VALUES IN ({lit})",
                        d.quote(&old)
                    ),
                    Vec::new(),
                ));
            }
        }
        Ok(out)
    }
}
