//! Correction events: a restatement told to event-sourced consumers as one event per changed key,
//! instead of rows rewritten under them.
//!
//! A consumer that folded the accepted output into its own state cannot see an overwritten row.
//! [`CorrectionPublisher`] (the mutation `correction_events`) compares, per partition and per key,
//! what readers see now (a [`TargetReader`](crate::publish::TargetReader)) with what the run staged,
//! and writes one [`CorrectionEvent`] per key whose value changed, appeared or disappeared to a
//! [`CorrectionOutbox`] (a SQL outbox table in `backfill-sql`, a topic), together with the
//! publication's receipt, atomically and once per run.
//!
//! The pieces, from the bottom:
//! - [`CorrectionEvent`]: the event as consumers read it (JSON field names in camelCase), with an id
//!   derived from run, event type, partition and key, so writing the same run again gives the same ids;
//! - [`Correction`]: how rows become events (event type, key, accepted row id, value), and
//!   [`Correction::diff_partition`], the pure diff of one partition;
//! - [`CorrectionOutbox`]: where events go (the trait outbox adapters implement);
//! - [`CorrectionPublisher`]: the [`Publisher`](crate::publish::Publisher) that ties them together;
//! - [`MemoryOutbox`](crate::memory::MemoryOutbox): an outbox in memory for unit tests.
//!
//! # Examples
//! ```
//! use backfill_core::correction::{ChangeKind, Correction, EventOrigin};
//! use backfill_core::ids::{PartitionKey, RunId};
//!
//! #[derive(Clone)]
//! struct Row { id: String, case: String, due: &'static str }
//!
//! let c = Correction::new(
//!     "CaseSlaBreachCorrected",
//!     |r: &Row| r.case.clone(),
//!     |r: &Row| r.id.clone(),
//!     |r: &Row| serde_json::json!({ "dueOn": r.due }),
//! );
//! let run = RunId::new("bf-002");
//! let origin = EventOrigin::new(&run, "timezone fix", chrono::DateTime::UNIX_EPOCH);
//! let old = [Row { id: "r1".into(), case: "C-101".into(), due: "2025-04-10" }];
//! let new = [Row { id: "r2".into(), case: "C-101".into(), due: "2025-04-09" }];
//! let events = c.diff_partition(&origin, &PartitionKey::new("2025-04"), &old, &new)?;
//! assert_eq!(events.len(), 1);
//! assert_eq!(events[0].change(), ChangeKind::Changed);
//! assert_eq!(events[0].corrects_event_id.as_deref(), Some("r1"));
//! # Ok::<(), backfill_core::Error>(())
//! ```

mod diff;
mod outbox;
mod publisher;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use diff::{Correction, EventOrigin};
pub use outbox::CorrectionOutbox;
pub use publisher::CorrectionPublisher;

use crate::ids::{derive_id, PartitionKey, RunId};

/// What a correction event says happened to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The key was not in the accepted output; the restatement adds it.
    Added,
    /// The key's value differs between the accepted output and the restatement.
    Changed,
    /// The key was in the accepted output; the restatement removes it.
    Removed,
}

/// One correction of one key, as consumers read it.
///
/// Serialized with camelCase field names (`eventId`, `eventType`, `correctsEventId`,
/// `producedByRunId`, …). `old` is `null` when the key was absent from the accepted output and `new`
/// is `null` when the restatement removes it, so a value function should not itself return JSON
/// `null` (it would read back as "absent").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CorrectionEvent {
    /// Deterministic id: [`CorrectionEvent::derive_id`] over run, event type, partition and key.
    pub event_id: String,
    /// Event type, such as `CaseSlaBreachCorrected`.
    pub event_type: String,
    /// The corrected key, unique within its partition.
    pub key: String,
    /// The publish partition the key belongs to.
    pub partition: PartitionKey,
    /// The id of the accepted row (or event) this corrects; `None` for an added key.
    pub corrects_event_id: Option<String>,
    /// Why: the manifest's `reason`.
    pub reason: String,
    /// The accepted value; `None` when the key was absent.
    pub old: Option<serde_json::Value>,
    /// The restated value; `None` when the restatement removes the key.
    pub new: Option<serde_json::Value>,
    /// The run that produced the correction.
    pub produced_by_run_id: RunId,
    /// The run whose accepted output is corrected, when known.
    pub supersedes_run_id: Option<RunId>,
    /// When (the publication's injected clock, not the wall clock at write time).
    pub produced_at: DateTime<Utc>,
}

impl CorrectionEvent {
    /// The event id for a key: [`derive_id`] in the run's namespace over event type, partition and
    /// key. The partition is part of it because a key is only unique within its partition.
    pub fn derive_id(
        run_id: &RunId,
        event_type: &str,
        partition: &PartitionKey,
        key: &str,
    ) -> String {
        derive_id(run_id.as_str(), &[event_type, partition.as_str(), key])
    }

    /// Whether the key was added, changed or removed.
    pub fn change(&self) -> ChangeKind {
        match (&self.old, &self.new) {
            (None, _) => ChangeKind::Added,
            (_, None) => ChangeKind::Removed,
            _ => ChangeKind::Changed,
        }
    }
}
