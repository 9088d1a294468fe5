//! Folding change streams into per-key states: "replay CDC range" and "snapshot + CDC range".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::position::{PositionRange, SourcePosition};
use super::record::{ChangeKey, ChangeOp, ChangeRecord};

/// One key's state after a fold: its row, or a delete fact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyState<T> {
    /// The key.
    pub key: ChangeKey,
    /// The row, or `None` when the last change deleted the key.
    pub state: Option<T>,
    /// For a deleted key, the last image of the row known to the fold (the delete's `before`, or
    /// the state it deleted), so output rows can carry its non-key columns; `None` otherwise.
    pub last_image: Option<T>,
    /// The op of the change that set the state ([`ChangeOp::Read`] for a row only a snapshot saw).
    pub op: ChangeOp,
    /// Where the change that set the state is in the log.
    pub position: SourcePosition,
    /// Its merge version.
    pub version: i64,
}

impl<T> KeyState<T> {
    /// Whether the key was deleted (a fact to apply downstream, not a missing row).
    pub fn is_deleted(&self) -> bool {
        self.state.is_none()
    }

    fn apply(&mut self, change: ChangeRecord<T>) {
        match change.op {
            ChangeOp::Delete => {
                let gone = self.state.take();
                self.last_image = change.before.or(gone).or(self.last_image.take());
            }
            ChangeOp::Create | ChangeOp::Update | ChangeOp::Read => {
                self.state = change.after;
                self.last_image = None;
            }
        }
        self.op = change.op;
        self.position = change.position;
        self.version = change.version;
    }

    fn from_change(change: ChangeRecord<T>) -> Self {
        let (state, last_image) = match change.op {
            ChangeOp::Delete => (None, change.before),
            _ => (change.after, None),
        };
        Self {
            key: change.key,
            state,
            last_image,
            op: change.op,
            position: change.position,
            version: change.version,
        }
    }
}

/// The rows a table snapshot observed, all at one position of the source log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot<T> {
    position: SourcePosition,
    rows: BTreeMap<ChangeKey, (T, i64)>,
}

impl<T> Snapshot<T> {
    /// An empty snapshot taken at `position`.
    pub fn new(position: SourcePosition) -> Self {
        Self {
            position,
            rows: BTreeMap::new(),
        }
    }

    /// A snapshot at `position` from the connector's snapshot reads (`r` records; other records
    /// are not observations and are left out). A key read twice keeps its later read.
    pub fn from_reads(
        position: SourcePosition,
        reads: impl IntoIterator<Item = ChangeRecord<T>>,
    ) -> Self {
        let mut s = Self::new(position);
        for r in reads {
            if let (ChangeOp::Read, Some(row)) = (r.op, r.after) {
                s.insert(r.key, row, r.version);
            }
        }
        s
    }

    /// Records that the snapshot observed `row` under `key`, with merge version `version`.
    pub fn insert(&mut self, key: ChangeKey, row: T, version: i64) {
        self.rows.insert(key, (row, version));
    }

    /// Where in the source log the snapshot was taken.
    pub fn position(&self) -> &SourcePosition {
        &self.position
    }

    /// Whether the snapshot observed `key`.
    pub fn contains(&self, key: &ChangeKey) -> bool {
        self.rows.contains_key(key)
    }

    /// The observed rows, by key.
    pub fn rows(&self) -> impl Iterator<Item = (&ChangeKey, &T)> {
        self.rows.iter().map(|(k, (r, _))| (k, r))
    }

    /// How many rows it observed.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it observed none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// The changes in `range`, in position order (a stable sort: changes at equal positions keep
/// their input order).
fn ordered<T>(
    changes: impl IntoIterator<Item = ChangeRecord<T>>,
    range: &PositionRange,
) -> Vec<ChangeRecord<T>> {
    let mut v: Vec<ChangeRecord<T>> = changes
        .into_iter()
        .filter(|c| range.contains(&c.position))
        .collect();
    v.sort_by(|a, b| a.position.cmp(&b.position));
    v
}

fn fold_into<T>(states: &mut BTreeMap<ChangeKey, KeyState<T>>, change: ChangeRecord<T>) {
    match states.get_mut(&change.key) {
        Some(s) => s.apply(change),
        None => {
            let s = KeyState::from_change(change);
            states.insert(s.key.clone(), s);
        }
    }
}

/// "Replay CDC range": every key changed in `range`, with its final state, sorted by key.
///
/// Changes are applied in position order whatever the input order. A key whose last change in
/// the range deletes it comes out [deleted](KeyState::is_deleted), not left out: downstream, the
/// delete must be applied.
pub fn replay<T>(
    changes: impl IntoIterator<Item = ChangeRecord<T>>,
    range: &PositionRange,
) -> Vec<KeyState<T>> {
    let mut states = BTreeMap::new();
    for c in ordered(changes, range) {
        fold_into(&mut states, c);
    }
    states.into_values().collect()
}

/// "Snapshot + CDC range": the state of every key at `target`, from the rows `snapshot`
/// observed and `changes` up to `target` (inclusive), for point-in-time reconstruction.
///
/// Changes are applied in position order. A change at or before the snapshot's position is
/// skipped for a key the snapshot observed (the observation already includes it); for a key the
/// snapshot did not see, it is applied (so a key deleted before the snapshot comes out as a
/// delete fact, as a full replay would give). Keys whose last change deletes them are kept, as
/// [deleted](KeyState::is_deleted) states. If the snapshot is the fold of every change up to its
/// position, the result equals [`replay`] of all changes up to `target` (states and ops aside
/// from the snapshot rows' own, which are [`ChangeOp::Read`] at the snapshot's position).
pub fn reconstruct<T: Clone>(
    snapshot: &Snapshot<T>,
    changes: impl IntoIterator<Item = ChangeRecord<T>>,
    target: &SourcePosition,
) -> BTreeMap<ChangeKey, KeyState<T>> {
    let mut states: BTreeMap<ChangeKey, KeyState<T>> = snapshot
        .rows
        .iter()
        .map(|(k, (row, version))| {
            let s = KeyState {
                key: k.clone(),
                state: Some(row.clone()),
                last_image: None,
                op: ChangeOp::Read,
                position: snapshot.position.clone(),
                version: *version,
            };
            (k.clone(), s)
        })
        .collect();
    for c in ordered(changes, &PositionRange::up_to(target.clone())) {
        if c.position <= snapshot.position && snapshot.contains(&c.key) {
            continue;
        }
        fold_into(&mut states, c);
    }
    states
}
