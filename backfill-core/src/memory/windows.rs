//! An in-memory registry of target windows.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::poisoned;
use crate::error::Result;
use crate::ids::RunId;
use crate::live::{frozen, TargetWindows, WindowState};

/// The reference [`TargetWindows`]: every operation is atomic under one mutex. Share one between
/// the run's [`Control`](crate::control::Control) and the live writers of a test.
#[derive(Debug, Default)]
pub struct MemoryWindows {
    inner: Mutex<BTreeMap<(String, String), WindowState>>,
}

impl MemoryWindows {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }
}

fn entry<'a>(
    map: &'a mut BTreeMap<(String, String), WindowState>,
    target: &str,
    partition: &str,
) -> &'a mut WindowState {
    map.entry((target.to_owned(), partition.to_owned()))
        .or_insert_with(|| WindowState {
            target: target.to_owned(),
            partition: partition.to_owned(),
            frozen_by: None,
            writes: 0,
            last_writer: None,
            last_write_at: None,
        })
}

#[async_trait]
impl TargetWindows for MemoryWindows {
    async fn freeze(
        &self,
        run_id: &RunId,
        target: &str,
        partitions: &[String],
        _now: DateTime<Utc>,
    ) -> Result<BTreeMap<String, u64>> {
        let mut map = self.inner.lock().map_err(|_| poisoned())?;
        for p in partitions {
            if let Some(holder) = entry(&mut map, target, p).frozen_by.as_ref() {
                if holder != run_id {
                    return Err(frozen(target, p, holder));
                }
            }
        }
        let mut marks = BTreeMap::new();
        for p in partitions {
            let w = entry(&mut map, target, p);
            w.frozen_by = Some(run_id.clone());
            marks.insert(p.clone(), w.writes);
        }
        Ok(marks)
    }

    async fn thaw(&self, run_id: &RunId, target: &str) -> Result<()> {
        let mut map = self.inner.lock().map_err(|_| poisoned())?;
        for w in map.values_mut() {
            if w.target == target && w.frozen_by.as_ref() == Some(run_id) {
                w.frozen_by = None;
            }
        }
        Ok(())
    }

    async fn admit(
        &self,
        target: &str,
        partitions: &[String],
        writer: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut map = self.inner.lock().map_err(|_| poisoned())?;
        for p in partitions {
            if let Some(holder) = &entry(&mut map, target, p).frozen_by {
                return Err(frozen(target, p, holder));
            }
        }
        for p in partitions {
            let w = entry(&mut map, target, p);
            w.writes += 1;
            w.last_writer = Some(writer.to_owned());
            w.last_write_at = Some(now);
        }
        Ok(())
    }

    async fn windows(&self, target: &str) -> Result<Vec<WindowState>> {
        let map = self.inner.lock().map_err(|_| poisoned())?;
        Ok(map
            .values()
            .filter(|w| w.target == target)
            .cloned()
            .collect())
    }
}
