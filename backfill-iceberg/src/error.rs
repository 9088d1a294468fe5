//! The adapter's own errors, sorted into backfill-core's kinds.

use backfill_core::Error as CoreError;
use iceberg::ErrorKind as IceKind;

pub(crate) const ADAPTER: &str = "iceberg";

/// What went wrong in backfill-iceberg. Every variant names the table (and where it matters the run,
/// chunk, partition or file) it is about; they reach callers inside
/// [`backfill_core::Error::Adapter`] or [`backfill_core::Error::Transient`] (downcast the source to
/// this type to match on them).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IcebergError {
    /// The iceberg crate reported an error.
    #[error("{context}: {kind}: {message}")]
    Iceberg {
        /// What the adapter was doing.
        context: String,
        /// The crate's error kind.
        kind: IceKind,
        /// The crate's message (without the backtrace its `Display` adds).
        message: String,
    },
    /// The catalog database reported an error.
    #[error("{context}: {source}")]
    Catalog {
        /// What the adapter was doing.
        context: String,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// A commit lost the compare-and-swap on the table's metadata pointer more often than allowed.
    #[error(
        "table {table}: {attempts} commits lost the race for the metadata pointer to other writers"
    )]
    Contended {
        /// The table.
        table: String,
        /// Commits tried.
        attempts: u32,
    },
    /// A row's publish partition is not the Iceberg partition the table's spec puts it in.
    #[error(
        "table {table}: a row of partition `{row}` falls into the table's partition `{table_partition}`; \
         a row's partition must be the table's partition value (see `partition_label`)"
    )]
    PartitionMismatch {
        /// The table.
        table: String,
        /// What the row says.
        row: String,
        /// What the table's spec computes.
        table_partition: String,
    },
    /// Rows that do not fit the table's schema, or a staged file whose schema does not.
    #[error("table {table}: {detail}")]
    Schema {
        /// The table.
        table: String,
        /// What does not fit.
        detail: String,
    },
    /// The table changed under a pinned read (a snapshot expired, a file list differs from the plan).
    #[error("table {table}: {detail}")]
    Pinned {
        /// The table.
        table: String,
        /// What differs.
        detail: String,
    },
    /// A ref move the adapter refuses because the table is not where the run left it.
    #[error("table {table}: {detail}")]
    Moved {
        /// The table.
        table: String,
        /// What moved.
        detail: String,
    },
    /// Stored state (a staged file list, a receipt) that does not parse.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// What was read.
        what: String,
        /// The parse error.
        detail: String,
    },
}

impl From<IcebergError> for CoreError {
    fn from(e: IcebergError) -> Self {
        let transient = match &e {
            IcebergError::Iceberg { kind, .. } => matches!(kind, IceKind::CatalogCommitConflicts),
            IcebergError::Catalog { source, .. } => is_transient_sql(source),
            IcebergError::Contended { .. } => true,
            _ => false,
        };
        if transient {
            Self::transient(ADAPTER, e)
        } else {
            Self::adapter(ADAPTER, e)
        }
    }
}

fn is_transient_sql(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
    ) || matches!(e, sqlx::Error::Database(d) if d.message().contains("locked") || d.message().contains("busy"))
}

/// An iceberg error with what the adapter was doing, as a core error.
pub(crate) fn ice(context: impl Into<String>, e: iceberg::Error) -> CoreError {
    use std::error::Error as _;
    let mut message = e.message().to_owned();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    IcebergError::Iceberg {
        context: context.into(),
        kind: e.kind(),
        message,
    }
    .into()
}

/// A catalog database error with what the adapter was doing, as a core error.
pub(crate) fn sql(context: impl Into<String>, source: sqlx::Error) -> CoreError {
    IcebergError::Catalog {
        context: context.into(),
        source,
    }
    .into()
}

pub(crate) fn corrupt(what: impl Into<String>, detail: impl ToString) -> CoreError {
    IcebergError::Corrupt {
        what: what.into(),
        detail: detail.to_string(),
    }
    .into()
}

pub(crate) fn schema(table: impl ToString, detail: impl Into<String>) -> CoreError {
    IcebergError::Schema {
        table: table.to_string(),
        detail: detail.into(),
    }
    .into()
}

/// An arrow error while building or reading batches of `table`.
pub(crate) fn arrow(table: impl ToString, e: arrow_schema::ArrowError) -> CoreError {
    schema(table, format!("arrow: {e}"))
}
