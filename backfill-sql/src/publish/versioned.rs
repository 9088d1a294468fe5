//! Versioned output: every run's rows stay in a table of their own (as for shadow swap) and the
//! view `<target>_current` shows the accepted version. Rolling back points it at any earlier
//! version still kept.

use backfill_core::digest::OutputRow;
use backfill_core::ids::RunId;
use backfill_core::manifest::Mutation;
use serde::de::DeserializeOwned;

use super::artifacts::Staged;
use super::record::Recorded;
use super::{Change, SqlPublisher};
use crate::ident::QualifiedName;

impl<R> SqlPublisher<R> {
    /// The view readers query for versioned output, `<target>_current`.
    fn current_view(&self) -> backfill_core::Result<QualifiedName> {
        self.relation_for(Mutation::VersionedOutput.name())
    }
}

impl<R: OutputRow + DeserializeOwned> SqlPublisher<R> {
    /// Keep the run's rows as a new version and point `<target>_current` at it.
    pub(crate) async fn versioned(
        &self,
        run_id: &RunId,
        staged: &Staged,
    ) -> backfill_core::Result<Change> {
        self.shadow(run_id, staged, self.current_view()?).await
    }

    /// Point `<target>_current` back at `to`'s version.
    pub(crate) async fn versioned_undo(&self, to: &Recorded) -> backfill_core::Result<Change> {
        self.shadow_undo(to, self.current_view()?).await
    }
}
