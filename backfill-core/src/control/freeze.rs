//! The run's side of a target-window freeze (`target.live_writes: freeze`, see [`crate::live`]):
//! freezing before the first chunk, checking at publication that no live write slipped in, and
//! thawing once the run is published or cancelled.

use std::sync::Arc;

use super::Control;
use crate::error::{Error, Result};
use crate::evidence::{Evidence, EvidenceRecord};
use crate::ids::RunId;
use crate::live::{written_since, LiveWrites, TargetWindows};
use crate::manifest::RunManifest;

fn frozen_watermark(evidence: &[Evidence]) -> Option<&std::collections::BTreeMap<String, u64>> {
    evidence.iter().find_map(|e| match &e.record {
        EvidenceRecord::WindowFrozen { watermark, .. } => Some(watermark),
        _ => None,
    })
}

impl Control {
    /// Uses `windows` for runs whose manifest freezes their target window; live writers must ask
    /// the same registry to admit their writes.
    pub fn with_windows(mut self, windows: Arc<dyn TargetWindows>) -> Self {
        self.windows = Some(windows);
        self
    }

    /// The registry of target windows, if one is configured.
    pub fn windows(&self) -> Option<&Arc<dyn TargetWindows>> {
        self.windows.as_ref()
    }

    fn windows_for(&self, run_id: &RunId) -> Result<&Arc<dyn TargetWindows>> {
        self.windows.as_ref().ok_or_else(|| Error::InvalidManifest {
            run_id: run_id.clone(),
            field: "target.live_writes".into(),
            message: "the manifest freezes its target window, but no window registry is configured (Control::with_windows)".into(),
        })
    }

    /// Freezes the run's target window when its manifest asks for a freeze (a no-op otherwise, and
    /// when already frozen). The first freeze is recorded as `window_frozen` evidence with each
    /// partition's live-write counter. Another run's freeze on a partition answers
    /// [`Error::WindowFrozen`].
    pub async fn freeze_window(&self, run_id: &RunId, m: &RunManifest, by: &str) -> Result<()> {
        if m.target.live_writes != LiveWrites::Freeze {
            return Ok(());
        }
        let windows = self.windows_for(run_id)?;
        let partitions: Vec<String> = m
            .target
            .partitions
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect();
        let now = self.clock.now();
        let watermark = windows
            .freeze(run_id, &m.target.name, &partitions, now)
            .await?;
        let evidence = self.store.evidence(run_id).await?;
        if frozen_watermark(&evidence).is_none() {
            tracing::info!(run_id = %run_id, target = %m.target.name, partitions = partitions.len(), "target window frozen against live writes");
            let record = EvidenceRecord::WindowFrozen {
                target: m.target.name.clone(),
                watermark,
            };
            self.store.append_evidence(run_id, now, by, &record).await?;
        }
        Ok(())
    }

    /// Refuses to publish a freezing run when a partition it replaces was written by a live writer
    /// after its freeze (the window thawed early), naming the partition and the writer.
    pub(crate) async fn check_window(
        &self,
        run_id: &RunId,
        m: &RunManifest,
        evidence: &[Evidence],
    ) -> Result<()> {
        if m.target.live_writes != LiveWrites::Freeze {
            return Ok(());
        }
        let windows = self.windows_for(run_id)?.windows(&m.target.name).await?;
        let refuse = |reason: String| Error::PublishRefused {
            run_id: run_id.clone(),
            reason,
        };
        let Some(watermark) = frozen_watermark(evidence) else {
            return Err(refuse(format!(
                "the run never froze its window on target {}",
                m.target.name
            )));
        };
        if let Some(w) = written_since(run_id, &windows, watermark).first() {
            return Err(refuse(format!(
                "partition {} of target {} was written by live writer {} after the run froze it ({} writes since); the staged output would overwrite them",
                w.partition,
                w.target,
                w.last_writer.as_deref().unwrap_or("?"),
                w.writes - watermark.get(&w.partition).copied().unwrap_or(0)
            )));
        }
        Ok(())
    }

    /// Thaws the run's target window (a no-op when its manifest does not freeze, or when already
    /// thawed); records `window_thawed` evidence once.
    pub async fn thaw_window(
        &self,
        run_id: &RunId,
        m: &RunManifest,
        by: &str,
        reason: &str,
    ) -> Result<()> {
        if m.target.live_writes != LiveWrites::Freeze {
            return Ok(());
        }
        self.windows_for(run_id)?
            .thaw(run_id, &m.target.name)
            .await?;
        let evidence = self.store.evidence(run_id).await?;
        let thawed = evidence
            .iter()
            .any(|e| matches!(e.record, EvidenceRecord::WindowThawed { .. }));
        if !thawed && frozen_watermark(&evidence).is_some() {
            tracing::info!(run_id = %run_id, target = %m.target.name, reason, "target window thawed");
            let record = EvidenceRecord::WindowThawed {
                target: m.target.name.clone(),
                reason: reason.into(),
            };
            self.store
                .append_evidence(run_id, self.clock.now(), by, &record)
                .await?;
        }
        Ok(())
    }
}
