//! An in-memory outbox of correction events.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;

use super::poisoned;
use crate::correction::{CorrectionEvent, CorrectionOutbox};
use crate::error::{Error, Result};
use crate::ids::RunId;
use crate::publish::PublishReceipt;
use crate::sink::SinkDescriptor;

#[derive(Debug, Default)]
struct State {
    receipts: BTreeMap<RunId, PublishReceipt>,
    /// Every event written, in write order.
    events: Vec<CorrectionEvent>,
    ids: BTreeSet<String>,
    writes: u64,
}

/// A [`CorrectionOutbox`] in memory: each write of a run's events and receipt happens under one
/// lock (all or nothing), a run is written once, and an event id is stored once. For unit tests of
/// correction publications; [`events`](Self::events) shows what consumers would read.
#[derive(Debug)]
pub struct MemoryOutbox {
    descriptor: SinkDescriptor,
    state: Mutex<State>,
}

impl MemoryOutbox {
    /// An outbox named `name`, without external side effects.
    pub fn new(name: impl Into<String>) -> Self {
        Self::with_descriptor(SinkDescriptor::internal(name, "memory_outbox"))
    }

    /// An outbox described as `descriptor`.
    pub fn with_descriptor(descriptor: SinkDescriptor) -> Self {
        Self {
            descriptor,
            state: Mutex::new(State::default()),
        }
    }

    /// Every stored event, in write order.
    pub fn events(&self) -> Vec<CorrectionEvent> {
        self.state
            .lock()
            .map(|s| s.events.clone())
            .unwrap_or_default()
    }

    /// How many writes stored something (a write of an already written run does not count).
    pub fn writes(&self) -> u64 {
        self.state.lock().map(|s| s.writes).unwrap_or_default()
    }
}

#[async_trait]
impl CorrectionOutbox for MemoryOutbox {
    fn descriptor(&self) -> SinkDescriptor {
        self.descriptor.clone()
    }

    async fn write(
        &self,
        run_id: &RunId,
        events: &[CorrectionEvent],
        receipt: &PublishReceipt,
    ) -> Result<PublishReceipt> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        if let Some(done) = state.receipts.get(run_id) {
            return Ok(done.clone());
        }
        let mut fresh = BTreeSet::new();
        for e in events {
            if state.ids.contains(&e.event_id) || !fresh.insert(e.event_id.as_str()) {
                return Err(Error::Conflict {
                    run_id: run_id.clone(),
                    what: format!("event id {} in outbox {}", e.event_id, self.descriptor.name),
                    expected: "an id not stored yet".into(),
                    found: "an event with that id".into(),
                });
            }
        }
        state.ids.extend(events.iter().map(|e| e.event_id.clone()));
        state.events.extend_from_slice(events);
        state.receipts.insert(run_id.clone(), receipt.clone());
        state.writes += 1;
        Ok(receipt.clone())
    }

    async fn inspect(&self, run_id: &RunId) -> Result<Option<PublishReceipt>> {
        Ok(self
            .state
            .lock()
            .map_err(|_| poisoned())?
            .receipts
            .get(run_id)
            .cloned())
    }
}
