//! Rollback: what undoing a publication changes, per mutation, and the rollbacks the target
//! recorded (a repeated rollback returns the recorded receipt).

use backfill_core::digest::OutputRow;
use backfill_core::ids::RunId;
use backfill_core::manifest::Mutation;
use backfill_core::publish::PublishReceipt;
use backfill_core::Error as CoreError;
use serde::de::DeserializeOwned;

use super::merge::Guard;
use super::record::Recorded;
use super::{refuse, Change, SqlPublisher};

impl<R: OutputRow + DeserializeOwned> SqlPublisher<R> {
    /// What rolling `from` back to `to` changes.
    pub(crate) async fn undo(
        &self,
        mutation: &Mutation,
        from: &Recorded,
        to: &Recorded,
    ) -> backfill_core::Result<Change> {
        let only_previous = !matches!(mutation, Mutation::ShadowSwap | Mutation::VersionedOutput);
        if only_previous && from.previous.as_ref() != Some(&to.receipt.run_id) {
            return Err(refuse(
                &to.receipt.run_id,
                format!(
                    "{} replaced {} on {}, so it can only roll back to that run",
                    from.receipt.run_id,
                    from.previous.as_ref().map_or("nothing", RunId::as_str),
                    self.target
                ),
            ));
        }
        match mutation {
            Mutation::ReplacePartitions => self.replace_undo(from).await,
            Mutation::MergeByKey {
                key,
                version_column,
                delete_column,
            } => {
                let guard = Guard {
                    version: version_column,
                    delete: delete_column.as_deref(),
                };
                self.merge_undo(from, key, guard).await
            }
            Mutation::AppendWithRunId => self.append_undo(from),
            Mutation::ShadowSwap => self.shadow_undo(to, self.target.clone()).await,
            Mutation::VersionedOutput => self.versioned_undo(to).await,
            Mutation::CorrectionEvents => Err(CoreError::NotSupported {
                adapter: crate::error::ADAPTER,
                operation: "roll back correction_events",
            }),
        }
    }

    /// The receipt of the recorded rollback `from → to` (`None` when `from` was not rolled back,
    /// or was rolled back to another run).
    pub(crate) async fn rolled_back_to(
        &self,
        from: &RunId,
        to: &RunId,
    ) -> backfill_core::Result<Option<PublishReceipt>> {
        let Some(done) = self.rolled_back(from).await? else {
            return Ok(None);
        };
        if done.to != *to {
            return Ok(None);
        }
        if let Some(receipt) = done.receipt {
            return Ok(Some(receipt));
        }
        // Recorded before receipts were kept: rebuild it from the two publications.
        let (Some(f), Some(t)) = (self.recorded(from).await?, self.recorded(to).await?) else {
            return Err(refuse(
                from,
                "its rollback is recorded but a publication is missing",
            ));
        };
        let relation = self.relation_for(&t.mutation)?;
        Ok(Some(PublishReceipt {
            mutation: "rollback".into(),
            partitions: f.receipt.partitions,
            published_at: done.at,
            reference: format!("{}:{relation} rolled back from {from}", self.d().name()),
            ..t.receipt
        }))
    }

    /// The receipt of the recorded rollback `from → to`, with its view switch completed; a
    /// rollback of `from` to another run is a conflict.
    pub(crate) async fn finish_rollback(
        &self,
        from: &RunId,
        to: &RunId,
    ) -> backfill_core::Result<Option<PublishReceipt>> {
        if let Some(done) = self.rolled_back_to(from, to).await? {
            self.complete_switch(to).await?;
            return Ok(Some(done));
        }
        match self.rolled_back(from).await? {
            Some(other) => Err(CoreError::Conflict {
                run_id: from.clone(),
                what: format!("rollback on target {}", self.target),
                expected: format!("a rollback to {to}"),
                found: format!("a rollback to {}", other.to),
            }),
            None => Ok(None),
        }
    }
}
