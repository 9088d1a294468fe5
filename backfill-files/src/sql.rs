//! backfill-sql's [`FileLedger`] as an [`ImportLedger`].

use async_trait::async_trait;
use backfill_core::Result;
use std::collections::BTreeMap;

use backfill_core::ids::RunId;
use backfill_sql::{FileIdentity, FileLedger, FileRecord};
use chrono::NaiveDate;

use crate::ledger::{ImportLedger, ImportRecord, ImportStatus};

/// Contents are keyed by `(scope, sha256)`: `known`, `accepted` and `commit` use the ledger
/// scoped to the record's source (see [`FileLedger::scoped`]). The SQL status `accepted`,
/// `rejected` or `superseded` is the record's; rows that [`FileLedger::register`] wrote and that
/// were never accepted (`pending`, `ignored`, `reprocess`, `correction`) read as `rejected`, that
/// is, not imported. A commit is one transaction per source (a plan has one).
#[async_trait]
impl ImportLedger for FileLedger {
    async fn known(
        &self,
        source: &str,
        paths: &[String],
        hashes: &[String],
    ) -> Result<Vec<ImportRecord>> {
        let scoped = self.clone().scoped(source);
        let hashes: Vec<String> = hashes.iter().map(|h| format!("sha256:{h}")).collect();
        let rows = scoped.lookup(paths, &hashes).await?;
        Ok(rows.into_iter().map(|r| record(source, r)).collect())
    }

    async fn accepted(
        &self,
        source: &str,
        from: NaiveDate,
        to_exclusive: NaiveDate,
    ) -> Result<Vec<ImportRecord>> {
        let rows = self
            .clone()
            .scoped(source)
            .accepted_between(from, to_exclusive)
            .await?;
        Ok(rows.into_iter().map(|r| record(source, r)).collect())
    }

    async fn commit(&self, records: &[ImportRecord]) -> Result<()> {
        let mut by_source: BTreeMap<&str, Vec<FileRecord>> = BTreeMap::new();
        for r in records {
            let scoped = self.clone().scoped(r.source.as_str());
            let content_hash = format!("sha256:{}", r.sha256);
            by_source
                .entry(r.source.as_str())
                .or_default()
                .push(FileRecord {
                    file_id: scoped.key(&content_hash),
                    identity: FileIdentity {
                        path: r.path.clone(),
                        size: r.size,
                        content_hash,
                        business_date: r.business_date,
                        schema_version: r.schema_version.clone().unwrap_or_default(),
                    },
                    first_seen_at: r.recorded_at,
                    accepted_run_id: Some(RunId::from(r.run_id.as_str())),
                    corrects_file_id: r
                        .corrects
                        .as_ref()
                        .map(|c| scoped.key(&format!("sha256:{c}"))),
                    status: r.status.as_str().to_owned(),
                });
        }
        // One transaction per source: a plan has one source, so a run commits all or nothing.
        for (source, rows) in by_source {
            self.clone().scoped(source).commit_rows(&rows).await?;
        }
        Ok(())
    }
}

fn record(source: &str, r: FileRecord) -> ImportRecord {
    ImportRecord {
        source: source.to_owned(),
        sha256: r
            .identity
            .content_hash
            .strip_prefix("sha256:")
            .unwrap_or(&r.identity.content_hash)
            .to_owned(),
        path: r.identity.path,
        size: r.identity.size,
        business_date: r.identity.business_date,
        schema_version: Some(r.identity.schema_version).filter(|s| !s.is_empty()),
        run_id: r
            .accepted_run_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        // Rows `register` wrote and nobody accepted (`pending`, `ignored`, `reprocess`,
        // `correction`) were never part of a published run: not imported.
        status: ImportStatus::parse(&r.status).unwrap_or(ImportStatus::Rejected),
        // The ledger keeps the corrected row's key, not its hash.
        corrects: None,
        recorded_at: r.first_seen_at,
    }
}
