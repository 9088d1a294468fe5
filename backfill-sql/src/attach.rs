//! PostgreSQL declarative partitions: a replace-partitions publication builds one table per replaced
//! partition and swaps it in with `DETACH PARTITION` / `ATTACH PARTITION`, all in the publishing
//! transaction (PostgreSQL's DDL is transactional). The detached tables are kept, so rollback swaps
//! them back without reading staging.

use std::collections::BTreeMap;

use backfill_core::digest::OutputRow;
use backfill_core::ids::{PartitionKey, RunId};
use backfill_core::publish::PublishRequest;
use serde::de::DeserializeOwned;
use sqlx::Row;

use crate::dialect::Dialect;
use crate::error::db;
use crate::ident::{Ident, QualifiedName};
use crate::pool::SqlPool;
use crate::publish::{counted, hashed, refuse, Arg, Change, SqlPublisher, Stmt};
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

    /// The partitions currently attached, by their bound (`FOR VALUES IN ('…')`): the
    /// schema-qualified name, or the name as the catalog has it when this crate cannot handle it
    /// (refused only if the publication swaps that partition). One catalog query for all of them.
    async fn children(
        &self,
    ) -> backfill_core::Result<BTreeMap<String, Result<QualifiedName, String>>> {
        let SqlPool::Postgres(p) = &self.pool else {
            return Ok(BTreeMap::new());
        };
        let rows = sqlx::query(
            "SELECT n.nspname::text AS nsp, c.relname::text AS rel, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.inhparent = to_regclass($1)",
        )
        .bind(self.target.quoted(Dialect::Postgres))
        .fetch_all(p)
        .await
        .map_err(db)?;
        let mut out = BTreeMap::new();
        for r in rows {
            let Some(bound) = r.try_get::<Option<String>, _>("bound").map_err(db)? else {
                continue;
            };
            let nsp: String = r.try_get("nsp").map_err(db)?;
            let rel: String = r.try_get("rel").map_err(db)?;
            let name = Ident::new(&nsp)
                .and_then(|s| Ident::new(&rel).map(|t| QualifiedName::new(Some(s), t)))
                .map_err(|_| format!("{nsp}.{rel}"));
            out.insert(bound, name);
        }
        Ok(out)
    }

    /// The partitions the run replaces and the change that builds one table per partition from
    /// staging and swaps it in, all inside the transaction.
    ///
    /// When the request's digests account for every staged row (see [`counted`]), their partitions
    /// stand for the staged ones (no scan of staging) and each partition's INSERT must write exactly
    /// its digest's rows, or the transaction is refused and nothing changes.
    pub(crate) async fn attach(
        &self,
        run_id: &RunId,
        staged: &crate::publish::Staged,
        req: &PublishRequest<'_>,
    ) -> backfill_core::Result<(Vec<PartitionKey>, Change)> {
        let counted = counted(staged, req.digests);
        let partitions = self.partitions(staged, req.manifest, counted).await?;
        let children = self.children().await?;
        let d = Dialect::Postgres;
        let t = self.target.quoted(d);
        let cols = column_list(&self.schema, d, "");
        let part = d.quote(self.schema.partition_column);
        let mut stmts = Vec::new();
        for p in &partitions {
            let lit = literal(run_id, p)?;
            let new = self.target.sibling(hashed(
                "bfpart_",
                &[&self.target.to_string(), run_id.as_str(), p.as_str()],
            ));
            let n = new.quoted(d);
            stmts.push(Stmt::plain(format!(
                "CREATE TABLE {n} (LIKE {t} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            )));
            // The CHECK lets ATTACH skip its validation scan.
            stmts.push(Stmt::plain(format!(
                "ALTER TABLE {n} ADD CHECK ({part} IS NOT NULL AND {part} = {lit})"
            )));
            if let Some(src) = staged.source(d) {
                let insert = Stmt::new(
                    format!(
                        "INSERT INTO {n} ({cols}) SELECT {} FROM {src} WHERE s.{part} = ?",
                        column_list(&self.schema, d, "s.")
                    ),
                    vec![p.as_str().into()],
                );
                stmts.push(match counted {
                    Some(digests) => insert.rows(
                        digests.0.get(p).map_or(0, |d| d.rows),
                        format!("staged rows of partition {p} (the ledger's digest counts)"),
                    ),
                    None => insert,
                });
            }
            let old = match children.get(&format!("FOR VALUES IN ({lit})")) {
                None => None,
                Some(Ok(old)) => Some(old.clone()),
                Some(Err(name)) => {
                    return Err(refuse(
                        run_id,
                        format!(
                            "partition `{name}` of {} has a name this crate does not handle",
                            self.target
                        ),
                    ))
                }
            };
            if let Some(old) = &old {
                stmts.push(Stmt::plain(format!(
                    "ALTER TABLE {t} DETACH PARTITION {}",
                    old.quoted(d)
                )));
            }
            stmts.push(Stmt::plain(format!(
                "ALTER TABLE {t} ATTACH PARTITION {n} FOR VALUES IN ({lit})"
            )));
            stmts.push(Stmt::new(
                "INSERT INTO bf_attached_partitions (run_id, target, partition_value, new_table, old_table) VALUES (?, ?, ?, ?, ?)",
                vec![
                    run_id.as_str().into(),
                    self.target.to_string().into(),
                    p.as_str().into(),
                    new.to_string().into(),
                    old.map_or(Arg::Text(String::new()), |o| Arg::Text(o.to_string())),
                ],
            ));
        }
        let change = Change {
            stmts,
            view: None,
            reference: format!("postgres:{} (detach/attach)", self.target),
        };
        Ok((partitions, change))
    }

    /// Swaps back the partitions `from` attached.
    pub(crate) async fn reattach(&self, from: &RunId) -> backfill_core::Result<Change> {
        let d = Dialect::Postgres;
        let reference = format!("postgres:{} (detach/attach)", self.target);
        let SqlPool::Postgres(pg) = &self.pool else {
            return Ok(Change {
                stmts: Vec::new(),
                view: None,
                reference,
            });
        };
        let t = self.target.quoted(d);
        let rows = sqlx::query("SELECT partition_value, new_table, old_table FROM bf_attached_partitions WHERE run_id = $1 AND target = $2")
            .bind(from.as_str())
            .bind(self.target.to_string())
            .fetch_all(pg)
            .await
            .map_err(db)?;
        let mut stmts = Vec::new();
        for r in rows {
            let value: String = r.try_get("partition_value").map_err(db)?;
            let new: String = r.try_get("new_table").map_err(db)?;
            let old: Option<String> = r.try_get("old_table").map_err(db)?;
            let lit = literal(from, &PartitionKey::from(value.as_str()))?;
            stmts.push(Stmt::plain(format!(
                "ALTER TABLE {t} DETACH PARTITION {}",
                QualifiedName::parse(&new)?.quoted(d)
            )));
            if let Some(old) = old.filter(|o| !o.is_empty()) {
                stmts.push(Stmt::plain(format!(
                    "ALTER TABLE {t} ATTACH PARTITION {} FOR VALUES IN ({lit})",
                    QualifiedName::parse(&old)?.quoted(d)
                )));
            }
        }
        Ok(Change {
            stmts,
            view: None,
            reference,
        })
    }
}
