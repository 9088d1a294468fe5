//! After publication: commit a run's file decisions to the import ledger, then archive the files.

use std::sync::Arc;

use backfill_core::ids::RunId;
use backfill_core::plan::PlannedChunk;
use backfill_core::state::RunState;
use backfill_core::store::RunStore;
use backfill_core::{Error, ErrorKind, Result};
use chrono::{DateTime, Utc};

use crate::landing::Landing;
use crate::layout::archive_path;
use crate::ledger::{ImportLedger, ImportRecord, ImportStatus};
use crate::state::{Decision, FileEntry, FilesState};

/// What [`Importer::commit`] did, file by file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Files whose rows were published (processed, reprocessed or corrections).
    pub accepted: Vec<String>,
    /// Corrections among them, as `(path, sha256 of the superseded content)`.
    pub corrections: Vec<(String, String)>,
    /// Files refused by the `reject` policy, with the reason naming both hashes.
    pub rejected: Vec<(String, String)>,
    /// Files skipped (already imported, or the `ignore` policy), with the reason.
    pub skipped: Vec<(String, String)>,
    /// Where each archived file went, as `(from, to)`.
    pub archived: Vec<(String, String)>,
    /// Files left in landing because their content changed after planning (a new landing that the
    /// next plan sees).
    pub left: Vec<String>,
}

/// Commits a published run's file decisions to the import ledger, then archives the files.
///
/// The ledger commit comes first and is all or nothing; only then are files moved to
/// `archive/accepted`, `archive/rejected` or `archive/ignored`, so a crash in between leaves
/// files in landing that the next plan decides as already imported. Both steps are idempotent:
/// committing a run again is safe.
#[derive(Debug, Clone)]
pub struct Importer {
    landing: Arc<dyn Landing>,
    ledger: Arc<dyn ImportLedger>,
}

impl Importer {
    /// An importer for files of `landing` recorded in `ledger`.
    pub fn new(landing: Arc<dyn Landing>, ledger: Arc<dyn ImportLedger>) -> Self {
        Self { landing, ledger }
    }

    /// Commits run `run_id` from its persisted plan in `store`; refuses a run that is not
    /// published (or superseded after publication).
    pub async fn commit(
        &self,
        store: &dyn RunStore,
        run_id: &RunId,
        now: DateTime<Utc>,
    ) -> Result<ImportReport> {
        let run = store.run(run_id).await?.ok_or_else(|| Error::NotFound {
            run_id: run_id.clone(),
            what: "run".into(),
        })?;
        if !matches!(run.state, RunState::Published | RunState::Superseded) {
            return Err(Error::PublishRefused {
                run_id: run_id.clone(),
                reason: format!(
                    "its files are committed to the import ledger only once it is published, and it is {}",
                    run.state
                ),
            });
        }
        let plan = store.plan(run_id).await?.ok_or_else(|| Error::NotFound {
            run_id: run_id.clone(),
            what: "plan".into(),
        })?;
        self.commit_chunks(&plan.chunks, now).await
    }

    /// Commits the decisions persisted in `chunks` (of a run the caller knows is published).
    pub async fn commit_chunks(
        &self,
        chunks: &[PlannedChunk],
        now: DateTime<Utc>,
    ) -> Result<ImportReport> {
        let mut report = ImportReport::default();
        let mut records = Vec::new();
        let mut moves: Vec<(FileEntry, &'static str)> = Vec::new();
        for chunk in chunks {
            let state: FilesState = chunk.state.parse()?;
            for f in state.files {
                let record = |status, corrects| ImportRecord {
                    source: state.source.clone(),
                    sha256: f.sha256.clone(),
                    path: f.path.clone(),
                    size: f.size,
                    business_date: f.business_date,
                    schema_version: f.schema_version.clone(),
                    run_id: state.run_id.clone(),
                    status,
                    corrects,
                    recorded_at: now,
                };
                let archive = match &f.decision {
                    // Committed and archived by the run that imported it.
                    Decision::Imported { .. } => continue,
                    Decision::Process | Decision::Reprocess { .. } => {
                        records.push(record(ImportStatus::Accepted, None));
                        report.accepted.push(f.path.clone());
                        "accepted"
                    }
                    Decision::Correction { corrects } => {
                        records.push(record(ImportStatus::Accepted, Some(corrects.clone())));
                        report.accepted.push(f.path.clone());
                        report.corrections.push((f.path.clone(), corrects.clone()));
                        "accepted"
                    }
                    Decision::Reject { reason } => {
                        records.push(record(ImportStatus::Rejected, None));
                        report.rejected.push((f.path.clone(), reason.clone()));
                        "rejected"
                    }
                    Decision::Skip { reason } => {
                        report.skipped.push((f.path.clone(), reason.clone()));
                        "ignored"
                    }
                };
                moves.push((f, archive));
            }
        }
        self.ledger.commit(&records).await?;
        for (f, status) in moves {
            let to = archive_path(status, &f.sha256, &f.path);
            match self.landing.hash(&f.path).await {
                Ok((_, sha)) if sha != f.sha256 => {
                    report.left.push(f.path);
                    continue;
                }
                Ok(_) => {}
                // Archived by an earlier commit.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.landing.archive(&f.path, &to).await?;
            report.archived.push((f.path, to));
        }
        Ok(report)
    }
}
