//! Replace partitions: the run's partitions are deleted and its staged rows inserted, in one
//! transaction; what was deleted is archived under the run's id, so rollback restores it exactly.
//! PostgreSQL tables partitioned by list on the partition column swap whole partitions instead
//! ([`crate::attach`]).

use backfill_core::digest::OutputRow;
use backfill_core::ids::{PartitionKey, RunId};
use backfill_core::publish::PublishRequest;
use serde::de::DeserializeOwned;

use super::artifacts::Staged;
use super::record::Recorded;
use super::{Arg, Change, SqlPublisher, Stmt, ARCHIVED_BY};
use crate::error::db;
use crate::pool::with_pool;
use crate::sink::column_list;

/// `?, ?, ?` for the partitions and their values (one impossible value when there are none, so the
/// list is never empty).
pub(crate) fn in_list(partitions: &[PartitionKey]) -> (String, Vec<Arg>) {
    if partitions.is_empty() {
        return ("?".into(), vec![Arg::Text(String::new())]);
    }
    (
        vec!["?"; partitions.len()].join(", "),
        partitions
            .iter()
            .map(|p| Arg::Text(p.to_string()))
            .collect(),
    )
}

impl<R: OutputRow + DeserializeOwned> SqlPublisher<R> {
    /// The partitions the run replaces (the staged rows' and the manifest's) and what replacing
    /// them changes: archive them, delete them, insert the staged rows.
    pub(crate) async fn replace(
        &self,
        run_id: &RunId,
        staged: &Staged,
        req: &PublishRequest<'_>,
    ) -> backfill_core::Result<(Vec<PartitionKey>, Change)> {
        if self.ensure_target().await? {
            return self.attach(run_id, staged, req).await;
        }
        let partitions = self.partitions(staged, req.manifest, None).await?;
        self.ensure_archive().await?;
        let d = self.d();
        let t = self.target.quoted(d);
        let a = self.archive_table().quoted(d);
        let cols = column_list(&self.schema, d, "");
        let part = self.q(self.schema.partition_column);
        let arch = self.q(ARCHIVED_BY);
        let (in_list, parts) = in_list(&partitions);
        let mut stmts = vec![
            Stmt::new(
                format!("INSERT INTO {a} ({arch}, {cols}) SELECT ?, {cols} FROM {t} WHERE {part} IN ({in_list})"),
                std::iter::once(Arg::from(run_id.as_str())).chain(parts.iter().cloned()).collect(),
            ),
            Stmt::new(format!("DELETE FROM {t} WHERE {part} IN ({in_list})"), parts),
        ];
        if let Some(src) = staged.source(d) {
            stmts.push(Stmt::plain(format!(
                "INSERT INTO {t} ({cols}) SELECT {} FROM {src}",
                column_list(&self.schema, d, "s.")
            )));
        }
        let change = Change {
            stmts,
            view: None,
            reference: format!("{}:{}", d.name(), self.target),
        };
        Ok((partitions, change))
    }

    /// Delete what `from` published in its partitions and restore what it archived.
    pub(crate) async fn replace_undo(&self, from: &Recorded) -> backfill_core::Result<Change> {
        if self.is_partitioned().await? {
            return self.reattach(&from.receipt.run_id).await;
        }
        self.ensure_archive().await?;
        let d = self.d();
        let t = self.target.quoted(d);
        let (in_list, parts) = in_list(&from.receipt.partitions);
        let mut stmts = vec![Stmt::new(
            format!(
                "DELETE FROM {t} WHERE {} IN ({in_list})",
                self.q(self.schema.partition_column)
            ),
            parts,
        )];
        stmts.extend(self.restore_archive(&from.receipt.run_id));
        Ok(Change {
            stmts,
            view: None,
            reference: format!("{}:{}", d.name(), self.target),
        })
    }

    /// Puts back the rows `run_id`'s publication archived, and forgets them.
    pub(crate) fn restore_archive(&self, run_id: &RunId) -> [Stmt; 2] {
        let d = self.d();
        let a = self.archive_table().quoted(d);
        let cols = column_list(&self.schema, d, "");
        let arch = self.q(ARCHIVED_BY);
        [
            Stmt::new(
                format!(
                    "INSERT INTO {} ({cols}) SELECT {cols} FROM {a} WHERE {arch} = ?",
                    self.target.quoted(d)
                ),
                vec![run_id.as_str().into()],
            ),
            Stmt::new(
                format!("DELETE FROM {a} WHERE {arch} = ?"),
                vec![run_id.as_str().into()],
            ),
        ]
    }

    /// Rows `run_id`'s publication archived (what rolling it back restores).
    pub(crate) async fn archived_rows(&self, run_id: &RunId) -> backfill_core::Result<u64> {
        let d = self.d();
        let a = self.archive_table();
        if !self.exists(&a).await? {
            return Ok(0);
        }
        let sql = d
            .sql(&format!(
                "SELECT COUNT(*) FROM {} WHERE {} = ?",
                a.quoted(d),
                self.q(ARCHIVED_BY)
            ))
            .into_owned();
        let n: i64 = with_pool!(&self.pool, p => {
            sqlx::query_scalar(&sql).bind(run_id.as_str()).fetch_one(p).await.map_err(db)?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
