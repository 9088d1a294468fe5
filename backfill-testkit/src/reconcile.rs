//! Reconciliation against a golden dataset: expected per-partition aggregates (row count and the sum
//! of one value) compared with what a run produced, with a typed mismatch per partition.
//!
//! ```
//! # use std::borrow::Cow;
//! # use backfill_core::digest::OutputRow;
//! # #[derive(Debug, Clone, serde::Serialize)] struct Row { month: String, cents: i64 }
//! # impl OutputRow for Row { fn partition(&self) -> Cow<'_, str> { Cow::Borrowed(&self.month) } }
//! use backfill_testkit::reconcile::{Golden, MismatchKind};
//!
//! let golden = Golden::new().partition("2025-01", 2, 300).partition("2025-02", 1, 50);
//! let produced = vec![
//!     Row { month: "2025-01".into(), cents: 100 },
//!     Row { month: "2025-01".into(), cents: 200 },
//! ];
//! let report = golden.check(&produced, |r| r.cents).unwrap_err();
//! assert_eq!(report.mismatches.len(), 1);
//! assert_eq!(report.mismatches[0].partition.as_str(), "2025-02");
//! assert!(matches!(report.mismatches[0].kind, MismatchKind::Missing { .. }));
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use backfill_core::digest::OutputRow;
use backfill_core::ids::PartitionKey;
use backfill_core::publish::TargetReader;
use futures::stream::TryStreamExt;

/// Aggregates of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Aggregates {
    /// Rows.
    pub rows: u64,
    /// Sum of the value over the rows.
    pub sum: i128,
}

/// Aggregates of rows per partition, with `value` summed.
pub fn aggregate<'a, R: OutputRow>(
    rows: impl IntoIterator<Item = &'a R>,
    value: impl Fn(&R) -> i64,
) -> BTreeMap<PartitionKey, Aggregates> {
    let mut out: BTreeMap<PartitionKey, Aggregates> = BTreeMap::new();
    for r in rows {
        let a = out
            .entry(PartitionKey::new(r.partition().as_ref()))
            .or_default();
        a.rows += 1;
        a.sum += i128::from(value(r));
    }
    out
}

/// How one partition differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MismatchKind {
    /// Expected, but the run produced no rows there.
    Missing {
        /// What was expected.
        expected: Aggregates,
    },
    /// Not expected, but the run produced rows there.
    Unexpected {
        /// What was produced.
        actual: Aggregates,
    },
    /// The row counts differ.
    Rows {
        /// Expected rows.
        expected: u64,
        /// Produced rows.
        actual: u64,
    },
    /// The sums differ.
    Sum {
        /// Expected sum.
        expected: i128,
        /// Produced sum.
        actual: i128,
    },
    /// The partition could not be read.
    Unreadable {
        /// The error.
        error: String,
    },
}

/// One partition's mismatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMismatch {
    /// The partition.
    pub partition: PartitionKey,
    /// How it differs.
    pub kind: MismatchKind,
}

/// Every mismatch, in partition order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReconciliationReport {
    /// The mismatches.
    pub mismatches: Vec<PartitionMismatch>,
}

impl fmt::Display for ReconciliationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} partitions do not reconcile:", self.mismatches.len())?;
        for m in &self.mismatches {
            write!(f, " {}: ", m.partition)?;
            match &m.kind {
                MismatchKind::Missing { expected } => {
                    write!(f, "missing (expected {} rows);", expected.rows)?;
                }
                MismatchKind::Unexpected { actual } => {
                    write!(f, "unexpected ({} rows);", actual.rows)?;
                }
                MismatchKind::Rows { expected, actual } => {
                    write!(f, "{actual} rows, expected {expected};")?;
                }
                MismatchKind::Sum { expected, actual } => {
                    write!(f, "sum {actual}, expected {expected};")?;
                }
                MismatchKind::Unreadable { error } => write!(f, "unreadable: {error};")?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ReconciliationReport {}

/// The golden dataset's expected aggregates, per partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Golden {
    /// Expected aggregates.
    pub expected: BTreeMap<PartitionKey, Aggregates>,
}

impl Golden {
    /// No partitions expected.
    pub fn new() -> Self {
        Self::default()
    }

    /// Expects `rows` rows summing to `sum` in `partition`.
    pub fn partition(mut self, partition: &str, rows: u64, sum: i128) -> Self {
        self.expected
            .insert(PartitionKey::new(partition), Aggregates { rows, sum });
        self
    }

    /// Compares the golden aggregates with `actual`.
    pub fn compare(
        &self,
        actual: &BTreeMap<PartitionKey, Aggregates>,
    ) -> Result<(), ReconciliationReport> {
        let keys: BTreeSet<&PartitionKey> = self.expected.keys().chain(actual.keys()).collect();
        let mut mismatches = Vec::new();
        for k in keys {
            let mut push = |kind| {
                mismatches.push(PartitionMismatch {
                    partition: k.clone(),
                    kind,
                });
            };
            match (self.expected.get(k), actual.get(k).filter(|a| a.rows > 0)) {
                (Some(e), None) if e.rows > 0 => push(MismatchKind::Missing { expected: *e }),
                (Some(_), None) => {}
                (None, Some(a)) => push(MismatchKind::Unexpected { actual: *a }),
                (None, None) => {}
                (Some(e), Some(a)) => {
                    if e.rows != a.rows {
                        push(MismatchKind::Rows {
                            expected: e.rows,
                            actual: a.rows,
                        });
                    }
                    if e.sum != a.sum {
                        push(MismatchKind::Sum {
                            expected: e.sum,
                            actual: a.sum,
                        });
                    }
                }
            }
        }
        if mismatches.is_empty() {
            Ok(())
        } else {
            Err(ReconciliationReport { mismatches })
        }
    }

    /// Compares the golden aggregates with `rows` (for example what a run staged), summing `value`.
    pub fn check<R: OutputRow>(
        &self,
        rows: &[R],
        value: impl Fn(&R) -> i64,
    ) -> Result<(), ReconciliationReport> {
        self.compare(&aggregate(rows, value))
    }

    /// Compares the golden aggregates with what readers of the target see (through `reader`, such as
    /// a [`MemoryPublisher`](backfill_core::memory::MemoryPublisher)) in the expected partitions and
    /// in `also` (for example the manifest's target partitions, to catch unexpected rows).
    pub async fn check_published<R: OutputRow>(
        &self,
        reader: &dyn TargetReader<R>,
        also: &[PartitionKey],
        value: impl Fn(&R) -> i64,
    ) -> Result<(), ReconciliationReport> {
        let keys: BTreeSet<&PartitionKey> = self.expected.keys().chain(also).collect();
        let (mut rows, mut unreadable) = (Vec::new(), Vec::new());
        for k in keys {
            match reader.read_current(k).try_concat().await {
                Ok(mut v) => rows.append(&mut v),
                Err(e) => unreadable.push(PartitionMismatch {
                    partition: k.clone(),
                    kind: MismatchKind::Unreadable {
                        error: e.to_string(),
                    },
                }),
            }
        }
        match (self.check(&rows, value), unreadable.is_empty()) {
            (Ok(()), true) => Ok(()),
            (Ok(()), false) => Err(ReconciliationReport {
                mismatches: unreadable,
            }),
            (Err(mut r), _) => {
                r.mismatches.extend(unreadable);
                Err(r)
            }
        }
    }
}
