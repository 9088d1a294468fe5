//! Refs (branches and tags) and the run markers the adapter keeps in a table's metadata.
//!
//! iceberg 0.10 has no ref actions and no `refs()` accessor: refs are read through the metadata's
//! serde form and moved with `SetSnapshotRef` / `RemoveSnapshotRef` through the adapter's pointer swap.

use std::collections::BTreeMap;

use iceberg::spec::{SnapshotReference, SnapshotRetention, MAIN_BRANCH};
use iceberg::table::Table;
use iceberg::{TableRequirement, TableUpdate};

use backfill_core::Result;
use iceberg::TableIdent;

use crate::catalog::IcebergCatalog;
use crate::commit::{commit, Committed, TableChange};

/// Summary property naming the run that produced a snapshot.
pub const RUN_ID_PROPERTY: &str = "backfill.run-id";
/// Summary property with the producing transform's version.
pub const TRANSFORM_VERSION_PROPERTY: &str = "backfill.transform-version";
/// Summary property with the run's mutation mode.
pub const MUTATION_PROPERTY: &str = "backfill.mutation";
/// Table property prefix of a publication receipt (`backfill.published.<run id>`).
pub(crate) const PUBLISHED_PREFIX: &str = "backfill.published.";
/// Table property prefix of a rollback receipt (`backfill.rolled-back.<from>.<to>`).
pub(crate) const ROLLED_BACK_PREFIX: &str = "backfill.rolled-back.";

/// The branch a write-audit-publish run commits to before `main` is fast-forwarded: `bf-<run>`
/// (a run id that already starts with `bf-` is used as it is).
pub fn audit_branch(run_id: &str) -> String {
    if run_id.starts_with("bf-") {
        run_id.to_owned()
    } else {
        format!("bf-{run_id}")
    }
}

/// The run that produced `snapshot_id`, from its summary.
pub fn run_of(table: &Table, snapshot_id: i64) -> Option<String> {
    table
        .metadata()
        .snapshot_by_id(snapshot_id)?
        .summary()
        .additional_properties
        .get(RUN_ID_PROPERTY)
        .cloned()
}

/// A branch or tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    /// The snapshot it points at.
    pub snapshot_id: i64,
    /// Whether it is a branch (else a tag).
    pub branch: bool,
}

/// Every ref of the table, by name.
pub fn refs(table: &Table) -> BTreeMap<String, TableRef> {
    let Ok(v) = serde_json::to_value(table.metadata()) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    if let Some(map) = v.get("refs").and_then(|r| r.as_object()) {
        for (name, r) in map {
            if let Some(id) = r.get("snapshot-id").and_then(serde_json::Value::as_i64) {
                let branch = r.get("type").and_then(|t| t.as_str()) != Some("tag");
                out.insert(
                    name.clone(),
                    TableRef {
                        snapshot_id: id,
                        branch,
                    },
                );
            }
        }
    }
    out
}

/// The head of `main`, if the table has a snapshot.
pub fn main_head(table: &Table) -> Option<i64> {
    table
        .metadata()
        .snapshot_for_ref(MAIN_BRANCH)
        .map(|s| s.snapshot_id())
}

/// The change that points `name` at `snapshot_id`, requiring it to point at `expected` now
/// (`None`: it must not exist).
pub(crate) fn set_ref(
    table: &Table,
    name: &str,
    snapshot_id: i64,
    expected: Option<i64>,
    branch: bool,
) -> TableChange {
    let retention = if branch {
        SnapshotRetention::branch(None, None, None)
    } else {
        SnapshotRetention::Tag {
            max_ref_age_ms: None,
        }
    };
    TableChange {
        requirements: vec![
            TableRequirement::UuidMatch {
                uuid: table.metadata().uuid(),
            },
            TableRequirement::RefSnapshotIdMatch {
                r#ref: name.to_owned(),
                snapshot_id: expected,
            },
        ],
        updates: vec![TableUpdate::SetSnapshotRef {
            ref_name: name.to_owned(),
            reference: SnapshotReference::new(snapshot_id, retention),
        }],
    }
}

/// The change that removes the ref `name` (no requirement beyond the table's identity).
pub(crate) fn remove_ref(table: &Table, name: &str) -> TableChange {
    TableChange {
        requirements: vec![TableRequirement::UuidMatch {
            uuid: table.metadata().uuid(),
        }],
        updates: vec![TableUpdate::RemoveSnapshotRef {
            ref_name: name.to_owned(),
        }],
    }
}

/// The newest snapshot whose summary names `run_id`, on any branch.
pub fn find_run_snapshot(table: &Table, run_id: &str) -> Option<i64> {
    table
        .metadata()
        .snapshots()
        .filter(|s| {
            s.summary()
                .additional_properties
                .get(RUN_ID_PROPERTY)
                .map(String::as_str)
                == Some(run_id)
        })
        .max_by_key(|s| (s.sequence_number(), s.timestamp_ms()))
        .map(|s| s.snapshot_id())
}

/// Whether `ancestor` is `head` or one of its ancestors.
pub fn is_ancestor(table: &Table, ancestor: i64, head: i64) -> bool {
    iceberg::util::snapshot::ancestors_of(&table.metadata_ref(), head)
        .any(|s| s.snapshot_id() == ancestor)
}

/// Creates the tag `name` at `snapshot_id` (kept until removed: no age limit), so snapshot expiry
/// keeps a pinned input readable. A tag that already points there is left alone; one pointing
/// elsewhere is an error.
pub async fn create_tag(
    catalog: &IcebergCatalog,
    table: &TableIdent,
    name: &str,
    snapshot_id: i64,
) -> Result<()> {
    for _ in 0..10 {
        let t = catalog.load(table).await?;
        match refs(&t).get(name) {
            Some(r) if r.snapshot_id == snapshot_id => return Ok(()),
            Some(r) => {
                return Err(crate::error::IcebergError::Moved {
                    table: table.to_string(),
                    detail: format!(
                        "tag {name} already points at snapshot {}, not {snapshot_id}",
                        r.snapshot_id
                    ),
                }
                .into())
            }
            None => {}
        }
        if let Committed::Yes(_) =
            commit(catalog, &t, set_ref(&t, name, snapshot_id, None, false)).await?
        {
            return Ok(());
        }
    }
    Err(crate::error::IcebergError::Contended {
        table: table.to_string(),
        attempts: 10,
    }
    .into())
}

/// Drops the write-audit-publish branch of `run_id` if the table still has it (a run abandoned
/// after its branch commit, or an audit whose drop failed). `main` is never touched; a table moved
/// by a concurrent commit is looked at again. Returns whether a branch was dropped.
pub(crate) async fn drop_audit_branch(
    catalog: &IcebergCatalog,
    ident: &TableIdent,
    run_id: &str,
) -> Result<bool> {
    const ATTEMPTS: u32 = 5;
    let branch = audit_branch(run_id);
    for _ in 0..ATTEMPTS {
        let table = catalog.load(ident).await?;
        if !refs(&table).contains_key(&branch) {
            return Ok(false);
        }
        if let Committed::Yes(_) = commit(catalog, &table, remove_ref(&table, &branch)).await? {
            tracing::info!(run = run_id, table = %ident, %branch, "dropped the audit branch");
            return Ok(true);
        }
    }
    Err(crate::error::IcebergError::Contended {
        table: ident.to_string(),
        attempts: ATTEMPTS,
    }
    .into())
}
