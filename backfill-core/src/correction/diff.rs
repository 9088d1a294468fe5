//! How rows become correction events, and the pure per-partition diff.

use std::collections::btree_map::{self, BTreeMap};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::CorrectionEvent;
use crate::error::{Error, Result};
use crate::ids::{PartitionKey, RunId};

type TextFn<R> = Arc<dyn Fn(&R) -> String + Send + Sync>;
type ValueFn<R> = Arc<dyn Fn(&R) -> Value + Send + Sync>;

/// How rows of one output become correction events: the event type, the key that identifies a row
/// across runs (unique within a partition), the id of an accepted row (what an event corrects) and
/// the value consumers compare (only what they care about: lineage columns that differ on every run
/// would make every key look changed).
pub struct Correction<R> {
    event_type: String,
    key: TextFn<R>,
    id: TextFn<R>,
    value: ValueFn<R>,
}

impl<R> Clone for Correction<R> {
    fn clone(&self) -> Self {
        Self {
            event_type: self.event_type.clone(),
            key: Arc::clone(&self.key),
            id: Arc::clone(&self.id),
            value: Arc::clone(&self.value),
        }
    }
}

impl<R> fmt::Debug for Correction<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Correction")
            .field("event_type", &self.event_type)
            .finish_non_exhaustive()
    }
}

/// Who produced the events, why, and when.
#[derive(Debug, Clone, Copy)]
pub struct EventOrigin<'a> {
    /// The producing run (the namespace of the event ids).
    pub run_id: &'a RunId,
    /// Why (the manifest's reason).
    pub reason: &'a str,
    /// The run whose accepted output is corrected, when known.
    pub supersedes: Option<&'a RunId>,
    /// When (injected clock).
    pub produced_at: DateTime<Utc>,
}

impl<'a> EventOrigin<'a> {
    /// An origin without a superseded run.
    pub fn new(run_id: &'a RunId, reason: &'a str, produced_at: DateTime<Utc>) -> Self {
        Self {
            run_id,
            reason,
            supersedes: None,
            produced_at,
        }
    }

    /// Sets the superseded run.
    pub fn supersedes(mut self, run: Option<&'a RunId>) -> Self {
        self.supersedes = run;
        self
    }
}

/// One row, projected: the accepted row's id and the compared value.
#[derive(Debug)]
struct Projected {
    id: String,
    value: Value,
}

/// One side of a partition's diff, by key; built batch by batch so that only the projections of a
/// partition's rows are held, never the rows.
#[derive(Debug, Default)]
pub(crate) struct Side(BTreeMap<String, Projected>);

impl Side {
    /// Adds a row, refusing a second row with the same key (a correction needs one row per key).
    pub(crate) fn insert<R>(
        &mut self,
        c: &Correction<R>,
        run_id: &RunId,
        partition: &str,
        side: &str,
        row: &R,
    ) -> Result<()> {
        match self.0.entry((c.key)(row)) {
            btree_map::Entry::Occupied(e) => Err(Error::PublishRefused {
                run_id: run_id.clone(),
                reason: format!(
                    "key `{}` appears twice in partition {partition} of the {side} rows; \
                     correction events need one row per key",
                    e.key()
                ),
            }),
            btree_map::Entry::Vacant(e) => {
                e.insert(Projected {
                    id: (c.id)(row),
                    value: (c.value)(row),
                });
                Ok(())
            }
        }
    }
}

impl<R> Correction<R> {
    /// Events of type `event_type`; `key` identifies a row across runs, `id` is the id of an
    /// accepted row (each event's `correctsEventId`), `value` is what is compared and published.
    pub fn new(
        event_type: impl Into<String>,
        key: impl Fn(&R) -> String + Send + Sync + 'static,
        id: impl Fn(&R) -> String + Send + Sync + 'static,
        value: impl Fn(&R) -> Value + Send + Sync + 'static,
    ) -> Self {
        Self {
            event_type: event_type.into(),
            key: Arc::new(key),
            id: Arc::new(id),
            value: Arc::new(value),
        }
    }

    /// The event type.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The diff of one partition: one event per key whose value differs between `accepted` and
    /// `restated`, appears only in `restated` (added) or only in `accepted` (removed), in key order.
    /// Keys with equal values give no event. Input order does not matter.
    ///
    /// # Errors
    /// [`Error::PublishRefused`] naming the run, partition and key when a key appears twice on one side.
    pub fn diff_partition<'r>(
        &self,
        origin: &EventOrigin<'_>,
        partition: &PartitionKey,
        accepted: impl IntoIterator<Item = &'r R>,
        restated: impl IntoIterator<Item = &'r R>,
    ) -> Result<Vec<CorrectionEvent>>
    where
        R: 'r,
    {
        let mut old = Side::default();
        for r in accepted {
            old.insert(self, origin.run_id, partition.as_str(), "accepted", r)?;
        }
        let mut new = Side::default();
        for r in restated {
            new.insert(self, origin.run_id, partition.as_str(), "restated", r)?;
        }
        let mut out = Vec::new();
        self.events(origin, partition, old, new, &mut out);
        Ok(out)
    }

    /// Merges two sides in key order, appending one event per differing key to `out`.
    pub(crate) fn events(
        &self,
        origin: &EventOrigin<'_>,
        partition: &PartitionKey,
        old: Side,
        new: Side,
        out: &mut Vec<CorrectionEvent>,
    ) {
        let mut old = old.0.into_iter().peekable();
        let mut new = new.0.into_iter().peekable();
        loop {
            let pick = match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(_), None) => (old.next(), None),
                (None, Some(_)) => (None, new.next()),
                (Some((a, _)), Some((b, _))) => match a.cmp(b) {
                    std::cmp::Ordering::Less => (old.next(), None),
                    std::cmp::Ordering::Greater => (None, new.next()),
                    std::cmp::Ordering::Equal => (old.next(), new.next()),
                },
            };
            let (key, o, n) = match pick {
                (Some((_, o)), Some((_, n))) if o.value == n.value => continue,
                (Some((k, o)), n) => (k, Some(o), n.map(|(_, n)| n)),
                (None, Some((k, n))) => (k, None, Some(n)),
                (None, None) => break,
            };
            out.push(CorrectionEvent {
                event_id: CorrectionEvent::derive_id(
                    origin.run_id,
                    &self.event_type,
                    partition,
                    &key,
                ),
                event_type: self.event_type.clone(),
                partition: partition.clone(),
                corrects_event_id: o.as_ref().map(|o| o.id.clone()),
                reason: origin.reason.to_owned(),
                old: o.map(|o| o.value),
                new: n.map(|n| n.value),
                produced_by_run_id: origin.run_id.clone(),
                supersedes_run_id: origin.supersedes.cloned(),
                produced_at: origin.produced_at,
                key,
            });
        }
    }
}
