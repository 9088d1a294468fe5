//! Merge by key: an upsert guarded by the version column (a staged row older than the target's
//! never wins; an equal version rewrites the same row). With a delete column, a staged row marked
//! deleted (a tombstone) removes its key under the same guard, and inserts nothing when the key is
//! absent. In the same transaction the run archives the rows it overwrites or deletes and records
//! the keys it writes or deletes (`bfk_<hash>`), so rollback deletes exactly those keys and
//! restores the archived rows without reading staging.
//!
//! A delete leaves a tombstone (`bft_<hash>`: run, key, version): a later staged row of that key
//! with an older version than the tombstone loses, as it would against the row itself, so replaying
//! an older range never brings a deleted row back. Rolling the deleting run back removes its
//! tombstones.

use backfill_core::digest::OutputRow;
use backfill_core::ids::RunId;
use serde::de::DeserializeOwned;

use super::artifacts::Staged;
use super::record::Recorded;
use super::{hashed, Change, SqlPublisher, Stmt, ARCHIVED_BY};
use crate::dialect::Dialect;
use crate::error::Error;
use crate::ident::{Ident, QualifiedName};
use crate::row::{all_columns, SqlType};
use crate::sink::column_list;

/// Column naming the run that wrote a key, in the keys table.
const KEY_RUN: &str = "bf_run_id";

/// What guards a merge: the version column, and the column marking a staged row as a delete.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Guard<'a> {
    pub(crate) version: &'a str,
    pub(crate) delete: Option<&'a str>,
}

impl<R: OutputRow + DeserializeOwned> SqlPublisher<R> {
    /// The keys table of a key list: one row per key a merge wrote, tagged with the run.
    fn keys_table(&self, key: &[String]) -> QualifiedName {
        self.target
            .sibling(hashed("bfk_", &[&self.target.to_string(), &key.join(",")]))
    }

    /// Validated key columns, each one of the row's columns.
    fn key_columns(&self, key: &[String]) -> backfill_core::Result<Vec<Ident>> {
        if key.is_empty() {
            return Err(Error::Row {
                row: std::any::type_name::<R>(),
                detail: "merge_by_key needs at least one key column".into(),
            }
            .into());
        }
        key.iter()
            .map(|k| {
                if !self.schema.columns.iter().any(|c| c.name == k) {
                    return Err(Error::Row {
                        row: std::any::type_name::<R>(),
                        detail: format!("merge key `{k}` is not a column of the row"),
                    }
                    .into());
                }
                Ident::new(k)
            })
            .collect()
    }

    /// The validated delete column: a boolean column of the row, neither a key nor the version.
    fn delete_column(
        &self,
        key: &[String],
        guard: Guard<'_>,
    ) -> backfill_core::Result<Option<Ident>> {
        let Some(del) = guard.delete else {
            return Ok(None);
        };
        let refuse = |detail: String| -> backfill_core::Error {
            Error::Row {
                row: std::any::type_name::<R>(),
                detail,
            }
            .into()
        };
        match self.schema.columns.iter().find(|c| c.name == del) {
            None => {
                return Err(refuse(format!(
                    "merge delete column `{del}` is not a column of the row"
                )))
            }
            Some(c) if c.ty != SqlType::Boolean => {
                return Err(refuse(format!(
                    "merge delete column `{del}` is not a boolean column"
                )))
            }
            Some(_) if del == guard.version || key.iter().any(|k| k == del) => {
                return Err(refuse(format!(
                    "merge delete column `{del}` is also the version or a key column"
                )))
            }
            Some(_) => {}
        }
        Ident::new(del).map(Some)
    }

    /// The tombstones of a key list: one row per key a merge deleted, with the delete's version.
    fn tombstones_table(&self, key: &[String]) -> QualifiedName {
        self.target
            .sibling(hashed("bft_", &[&self.target.to_string(), &key.join(",")]))
    }

    /// The DDL type of a column of the row (`TEXT` when it is not one).
    fn column_type(&self, name: &str) -> &'static str {
        all_columns(self.schema.columns)
            .find(|(n, _, _)| n == name)
            .map_or("TEXT", |(_, t, _)| t.ddl(self.d()))
    }

    /// A table of `columns` tagged with the run, indexed by run.
    async fn ensure_run_table(
        &self,
        table: &QualifiedName,
        columns: &[(&Ident, &'static str)],
    ) -> backfill_core::Result<()> {
        let d = self.d();
        let defs = columns
            .iter()
            .map(|(name, ty)| format!("{} {ty} NOT NULL", name.quoted(d)))
            .collect::<Vec<_>>()
            .join(", ");
        self.pool
            .execute(&format!(
                "CREATE TABLE IF NOT EXISTS {} ({} {} NOT NULL, {defs}){}",
                table.quoted(d),
                self.q(KEY_RUN),
                d.key_type(),
                d.table_options()
            ))
            .await?;
        let idx = hashed("bfi_", &[&table.to_string(), KEY_RUN]);
        self.pool
            .ensure_index(
                idx.as_str(),
                table,
                &format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
                    idx.quoted(d),
                    table.quoted(d),
                    self.q(KEY_RUN)
                ),
            )
            .await
    }

    /// The unique index the upsert needs, the keys table and, for a merge with deletes, the
    /// tombstones table.
    async fn ensure_merge_tables(
        &self,
        key: &[String],
        keys: &[Ident],
        tombstones: Option<&Ident>,
    ) -> backfill_core::Result<()> {
        let d = self.d();
        let quoted: Vec<String> = keys.iter().map(|k| k.quoted(d)).collect();
        let idx = hashed("bfu_", &[&self.target.to_string(), &key.join(",")]);
        // Not a plain `execute`: see `ensure_index` (no SHARE lock on the target per publish).
        self.pool
            .ensure_index(
                idx.as_str(),
                &self.target,
                &format!(
                    "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})",
                    idx.quoted(d),
                    self.target.quoted(d),
                    quoted.join(", ")
                ),
            )
            .await?;
        let mut columns: Vec<(&Ident, &'static str)> = keys
            .iter()
            .map(|name| (name, self.column_type(name.as_str())))
            .collect();
        self.ensure_run_table(&self.keys_table(key), &columns)
            .await?;
        let Some(version) = tombstones else {
            return Ok(());
        };
        columns.push((version, self.column_type(version.as_str())));
        let b = self.tombstones_table(key);
        self.ensure_run_table(&b, &columns).await?;
        let bidx = hashed("bfi_", &[&b.to_string(), &key.join(",")]);
        self.pool
            .ensure_index(
                bidx.as_str(),
                &b,
                &format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
                    bidx.quoted(d),
                    b.quoted(d),
                    quoted.join(", ")
                ),
            )
            .await
    }

    /// Archive what the run overwrites or deletes, record the keys it writes or deletes, delete,
    /// upsert.
    pub(crate) async fn merge(
        &self,
        run_id: &RunId,
        staged: &Staged,
        key: &[String],
        guard: Guard<'_>,
    ) -> backfill_core::Result<Change> {
        let keys = self.key_columns(key)?;
        let version = Ident::new(guard.version)?;
        let v = version.quoted(self.d());
        let del = self.delete_column(key, guard)?;
        self.ensure_target().await?;
        self.ensure_archive().await?;
        self.ensure_merge_tables(key, &keys, del.as_ref().map(|_| &version))
            .await?;
        let d = self.d();
        let reference = format!("{}:{}", d.name(), self.target);
        let Some(table) = staged.table(d) else {
            return Ok(Change {
                stmts: Vec::new(),
                view: None,
                reference,
            });
        };
        let t = self.target.quoted(d);
        let a = self.archive_table().quoted(d);
        let k = self.keys_table(key).quoted(d);
        let cols = column_list(&self.schema, d, "");
        let key_q: Vec<String> = keys.iter().map(|k| k.quoted(d)).collect();
        // A run may stage several rows of one key (a change stream replayed change by change, in
        // chunks): the newest version wins, and at equal versions a delete. One row per key goes
        // on, so the upsert never meets a key twice.
        let newest_first = match &del {
            Some(c) => format!("{v} DESC, COALESCE({}, FALSE) DESC", c.quoted(d)),
            None => format!("{v} DESC"),
        };
        let src = format!(
            "(SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY {} ORDER BY {newest_first}) AS {rank} FROM {table}) r WHERE {rank} = 1) s",
            key_q.join(", "),
            rank = d.quote("bf_newest"),
        );
        let same_key = |left: &str, right: &str| {
            key_q
                .iter()
                .map(|c| format!("{left}.{c} = {right}.{c}"))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        let archive = Stmt::new(
            format!(
                "INSERT INTO {a} ({}, {cols}) SELECT ?, {} FROM {t} t WHERE EXISTS (SELECT 1 FROM {src} WHERE {} AND s.{v} >= t.{v})",
                self.q(ARCHIVED_BY),
                column_list(&self.schema, d, "t."),
                same_key("s", "t"),
            ),
            vec![run_id.as_str().into()],
        );
        let b = self.tombstones_table(key).quoted(d);
        // With deletes, a staged row older than the key's newest tombstone loses too.
        let unburied = if del.is_some() {
            format!(
                " AND NOT EXISTS (SELECT 1 FROM {b} x WHERE {} AND x.{v} > s.{v})",
                same_key("x", "s")
            )
        } else {
            String::new()
        };
        let s_keys = key_q
            .iter()
            .map(|c| format!("s.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let key_list = key_q.join(", ");
        let kr = self.q(KEY_RUN);
        let written = Stmt::new(
            format!(
                "INSERT INTO {k} ({kr}, {key_list}) SELECT DISTINCT ?, {s_keys} FROM {src} WHERE NOT EXISTS (SELECT 1 FROM {t} t WHERE {} AND t.{v} > s.{v}){unburied}",
                same_key("t", "s"),
            ),
            vec![run_id.as_str().into()],
        );
        let all: Vec<String> = all_columns(self.schema.columns)
            .map(|(n, _, _)| d.quote(&n))
            .collect();
        let updated: Vec<&String> = all
            .iter()
            .filter(|c| !key_q.contains(c) && **c != v)
            .chain(std::iter::once(&v))
            .collect();
        let scols = column_list(&self.schema, d, "s.");
        // A NULL delete marker is not a delete.
        let deleted = del
            .as_ref()
            .map(|c| format!("COALESCE(s.{}, FALSE)", c.quoted(d)));
        let live = deleted
            .as_ref()
            .map_or_else(|| "1 = 1".to_owned(), |x| format!("NOT {x}{unburied}"));
        let upsert = match d {
            Dialect::Postgres | Dialect::Sqlite => format!(
                "INSERT INTO {t} AS t ({cols}) SELECT {scols} FROM {src} WHERE {live} ON CONFLICT ({}) DO UPDATE SET {} WHERE t.{v} <= excluded.{v}",
                key_q.join(", "),
                updated
                    .iter()
                    .map(|c| format!("{c} = excluded.{c}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            // Assignments run left to right: the version column is updated last so every IF
            // compares against the row's old version.
            Dialect::MySql => format!(
                "INSERT INTO {t} ({cols}) SELECT {scols} FROM {src} WHERE {live} ON DUPLICATE KEY UPDATE {}",
                updated
                    .iter()
                    .map(|c| format!("{c} = IF({t}.{v} <= VALUES({v}), VALUES({c}), {t}.{c})"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        };
        let mut stmts = vec![archive, written];
        if let Some(deleted) = deleted {
            // The winning deletes are the staged deletes among the keys just recorded (no target
            // row and no tombstone of a greater version); their rows are archived above.
            let won = format!(
                "FROM {src} WHERE {deleted} AND ({s_keys}) IN (SELECT {key_list} FROM {k} WHERE {kr} = ?)"
            );
            stmts.push(Stmt::new(
                format!("INSERT INTO {b} ({kr}, {key_list}, {v}) SELECT ?, {s_keys}, s.{v} {won}"),
                vec![run_id.as_str().into(), run_id.as_str().into()],
            ));
            stmts.push(Stmt::new(
                format!("DELETE FROM {t} WHERE ({key_list}) IN (SELECT {s_keys} {won})"),
                vec![run_id.as_str().into()],
            ));
        }
        stmts.push(Stmt::plain(upsert));
        Ok(Change {
            stmts,
            view: None,
            reference,
        })
    }

    /// Delete the keys `from` wrote, restore the rows it overwrote or deleted, drop its tombstones.
    pub(crate) async fn merge_undo(
        &self,
        from: &Recorded,
        key: &[String],
        guard: Guard<'_>,
    ) -> backfill_core::Result<Change> {
        let keys = self.key_columns(key)?;
        let version = Ident::new(guard.version)?;
        let del = self.delete_column(key, guard)?;
        self.ensure_archive().await?;
        self.ensure_merge_tables(key, &keys, del.as_ref().map(|_| &version))
            .await?;
        let d = self.d();
        let run = from.receipt.run_id.as_str();
        let key_q = keys
            .iter()
            .map(|k| k.quoted(d))
            .collect::<Vec<_>>()
            .join(", ");
        let k = self.keys_table(key).quoted(d);
        let kr = self.q(KEY_RUN);
        let mut stmts = vec![Stmt::new(
            format!(
                "DELETE FROM {} WHERE ({key_q}) IN (SELECT {key_q} FROM {k} WHERE {kr} = ?)",
                self.target.quoted(d)
            ),
            vec![run.into()],
        )];
        stmts.extend(self.restore_archive(&from.receipt.run_id));
        stmts.push(Stmt::new(
            format!("DELETE FROM {k} WHERE {kr} = ?"),
            vec![run.into()],
        ));
        if del.is_some() {
            stmts.push(Stmt::new(
                format!(
                    "DELETE FROM {} WHERE {kr} = ?",
                    self.tombstones_table(key).quoted(d)
                ),
                vec![run.into()],
            ));
        }
        Ok(Change {
            stmts,
            view: None,
            reference: format!("{}:{}", d.name(), self.target),
        })
    }
}
