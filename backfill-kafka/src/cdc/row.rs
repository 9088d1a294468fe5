//! A folded key state as an output row for a merge by version with a delete column.

use serde::{Deserialize, Serialize};

use super::fold::KeyState;
use super::record::ChangeKey;

/// One key's final state, ready for a merge by key guarded by a version column with a delete
/// column (`Mutation::MergeByKey { delete_column: Some(..), .. }`): a transform maps it to the
/// target's row type, copying `deleted` into the delete column and `version` into the version
/// column.
///
/// ```
/// use backfill_kafka::cdc::ChangeRow;
///
/// #[derive(Debug, Clone, serde::Deserialize)]
/// struct Customer { id: i64, name: String }
/// #[derive(Debug, PartialEq)]
/// struct Out { id: i64, name: String, version: i64, deleted: bool }
/// #[derive(serde::Deserialize)]
/// struct Key { id: i64 }
///
/// fn to_output(c: ChangeRow<Customer>) -> Out {
///     let id = c.key.parse::<Key>().map(|k| k.id).unwrap_or_default();
///     // A delete keeps the last image the fold knew, if any; a tombstone has only its key.
///     let name = c.row.map(|r| r.name).unwrap_or_default();
///     Out { id, name, version: c.version, deleted: c.deleted }
/// }
/// # let _ = to_output;
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRow<T> {
    /// The key.
    pub key: ChangeKey,
    /// The row's state; for a delete, the last image of the row the fold knew (`None` when it
    /// knew none, as for a lone tombstone).
    pub row: Option<T>,
    /// Whether the key was deleted: the merge removes it from the target.
    pub deleted: bool,
    /// The merge version of the change that set the state.
    pub version: i64,
}

impl<T> ChangeRow<T> {
    /// Maps the row image, keeping the key, flag and version.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> ChangeRow<U> {
        ChangeRow {
            key: self.key,
            row: self.row.map(f),
            deleted: self.deleted,
            version: self.version,
        }
    }
}

impl<T> From<KeyState<T>> for ChangeRow<T> {
    fn from(s: KeyState<T>) -> Self {
        let deleted = s.is_deleted();
        Self {
            key: s.key,
            row: s.state.or(s.last_image),
            deleted,
            version: s.version,
        }
    }
}
