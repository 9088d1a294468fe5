//! Public proptest strategies: manifests, input ranges and records.
//!
//! Every manifest [`manifests`] generates passes [`RunManifest::check`] without blocking findings and can
//! be approved; its publish range lies inside its input range (sometimes narrower: warm-up), and its
//! target partitions are the months the publish range touches. [`valid_manifest`] builds one such
//! manifest by hand for fixtures.
//!
//! ```
//! use proptest::strategy::{Strategy, ValueTree};
//! use proptest::test_runner::TestRunner;
//! use backfill_testkit::strategy;
//!
//! let mut runner = TestRunner::deterministic();
//! for _ in 0..16 {
//!     let m = strategy::manifests().new_tree(&mut runner).unwrap().current();
//!     let at = chrono::DateTime::from_timestamp(1_750_000_000, 0).unwrap();
//!     assert!(m.approve("owner", at).is_ok());
//! }
//! ```

use std::borrow::Cow;

use backfill_core::context::ExecutionMode;
use backfill_core::digest::OutputRow;
use backfill_core::ids::PartitionKey;
use backfill_core::manifest::{
    InputRange, Mutation, OffsetRange, RunKind, RunManifest, SideEffectPolicy, SourceSpec,
    TargetSpec, ValidationPlan,
};
use chrono::{Datelike, Days, Months, NaiveDate};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use crate::TestRow;

/// The first day strategies draw dates from: 2020-01-01.
pub fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(2020, 1, 1).unwrap_or_default()
}

/// Dates from `from` (included) over `days` days.
pub fn dates(from: NaiveDate, days: u32) -> impl Strategy<Value = NaiveDate> + Clone {
    (0..u64::from(days.max(1))).prop_map(move |d| from + Days::new(d))
}

/// Non-empty, half-open date ranges between 2020 and 2029, up to about a year long.
pub fn date_ranges() -> impl Strategy<Value = InputRange> + Clone {
    (0u64..3_650, 1u64..400).prop_map(|(start, len)| {
        let from = epoch() + Days::new(start);
        InputRange::Dates {
            from,
            to_exclusive: from + Days::new(len),
        }
    })
}

/// Non-empty input ranges of every kind: dates, instants, offsets on one to three log partitions, keys.
pub fn input_ranges() -> impl Strategy<Value = InputRange> {
    let instants = (1_577_836_800i64..1_893_456_000, 1i64..86_400 * 90).prop_map(|(s, len)| {
        InputRange::Timestamps {
            from: chrono::DateTime::from_timestamp(s, 0).unwrap_or_default(),
            to_exclusive: chrono::DateTime::from_timestamp(s + len, 0).unwrap_or_default(),
        }
    });
    let offsets = proptest::collection::vec((0i64..1_000_000, 1i64..100_000), 1..4).prop_map(|v| {
        InputRange::Offsets {
            partitions: v
                .into_iter()
                .enumerate()
                .map(|(p, (from, len))| OffsetRange {
                    partition: i32::try_from(p).unwrap_or_default(),
                    from,
                    to_exclusive: from + len,
                })
                .collect(),
        }
    });
    let keys = ("[a-m][a-z0-9]{0,6}", "[n-z][a-z0-9]{0,6}")
        .prop_map(|(from, to_exclusive)| InputRange::Keys { from, to_exclusive });
    prop_oneof![date_ranges(), instants, offsets, keys]
}

/// The months (`YYYY-MM`) a date range touches, in order.
pub fn months_of(from: NaiveDate, to_exclusive: NaiveDate) -> Vec<PartitionKey> {
    let mut out = Vec::new();
    let mut m = from.with_day(1).unwrap_or(from);
    while m < to_exclusive {
        out.push(PartitionKey::new(m.format("%Y-%m").to_string()));
        m = match m.checked_add_months(Months::new(1)) {
            Some(next) => next,
            None => break,
        };
    }
    out
}

/// A manifest that passes [`RunManifest::check`] without blocking findings: input `[from, to_exclusive)`
/// of dates from a memory source pinned at snapshot `memory` (what
/// [`MemorySource`](backfill_core::memory::MemorySource) resolves unless told otherwise; the runner
/// refuses a plan at another snapshot), publish range `publish` (the input range when `None`),
/// transform `test`/`1.0.0`, replace-partitions of the publish range's months on target `testkit_target`,
/// side effects forbidden, checksums required, a row ceiling.
pub fn valid_manifest(
    run_id: &str,
    mode: ExecutionMode,
    from: NaiveDate,
    to_exclusive: NaiveDate,
    publish: Option<(NaiveDate, NaiveDate)>,
) -> RunManifest {
    let mut m = RunManifest::new(run_id, RunKind::Backfill, mode);
    m.reason = "testkit fixture".into();
    m.requested_by = "testkit".into();
    m.source = SourceSpec {
        kind: "memory".into(),
        name: "testkit_source".into(),
        snapshot: Some("memory".into()),
        range: Some(InputRange::Dates { from, to_exclusive }),
        ..SourceSpec::default()
    };
    let (pf, pt) = publish.unwrap_or((from, to_exclusive));
    m.publish_range = publish.map(|(from, to_exclusive)| InputRange::Dates { from, to_exclusive });
    m.transform.name = "test".into();
    m.transform.version = "1.0.0".into();
    m.transform.git_commit = Some("0000000".into());
    m.target = TargetSpec {
        kind: "memory".into(),
        name: "testkit_target".into(),
        mutation: Some(Mutation::ReplacePartitions),
        partitions: months_of(pf, pt),
        consumers: vec!["testkit".into()],
        ..TargetSpec::default()
    };
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.safety.max_rows_expected = Some(1_000_000);
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        count_tolerance: Some(0),
        ..ValidationPlan::default()
    });
    m
}

/// Execution modes a backfill may run in: Backfill, Replay, DryRun.
pub fn backfill_modes() -> impl Strategy<Value = ExecutionMode> + Clone {
    prop_oneof![
        Just(ExecutionMode::Backfill),
        Just(ExecutionMode::Replay),
        Just(ExecutionMode::DryRun),
    ]
}

/// Run kinds.
pub fn run_kinds() -> impl Strategy<Value = RunKind> + Clone {
    prop_oneof![
        Just(RunKind::Backfill),
        Just(RunKind::Replay),
        Just(RunKind::Reprocessing),
        Just(RunKind::Restatement),
        Just(RunKind::Repair),
        Just(RunKind::Migration),
        Just(RunKind::Bootstrap),
    ]
}

/// Valid, approvable manifests (see [`valid_manifest`]) with a random run id, kind, backfill mode, date
/// range and, half of the time, a narrower publish range after a warm-up.
pub fn manifests() -> impl Strategy<Value = RunManifest> {
    (
        "bf-[a-z0-9]{4,12}",
        run_kinds(),
        backfill_modes(),
        0u64..3_650,
        2u64..400,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(run_id, kind, mode, start, len, warm, seed)| {
            let from = epoch() + Days::new(start);
            let to = from + Days::new(len);
            let publish = warm.then(|| {
                let warm_days = 1 + seed % (len - 1);
                (from + Days::new(warm_days), to)
            });
            let mut m = valid_manifest(&run_id, mode, from, to, publish);
            m.kind = kind;
            m
        })
}

/// [`TestRow`]s with ids `r<n>`, partitions drawn from `partitions` (non-empty) and small values.
pub fn test_rows(
    partitions: Vec<String>,
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = Vec<TestRow>> {
    let parts = if partitions.is_empty() {
        vec!["p".to_owned()]
    } else {
        partitions
    };
    let row = (
        proptest::sample::select(parts),
        "[a-z]{1,4}",
        -1_000i64..1_000,
        proptest::option::of("[ -~]{0,12}"),
    );
    proptest::collection::vec(row, len).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (partition, key, value, note))| TestRow {
                id: format!("r{i}"),
                partition,
                key,
                value,
                note,
            })
            .collect()
    })
}

/// A generic input record: a business key, a business date and a value. Its [`OutputRow`] partition
/// is the date's month (`YYYY-MM`), so it can also stand for an output row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Keyed<V> {
    /// Business key, such as an account.
    pub key: String,
    /// Business date.
    pub day: NaiveDate,
    /// The value.
    pub value: V,
}

impl<V> Keyed<V> {
    /// The month of `day`, as `YYYY-MM`.
    pub fn month(&self) -> String {
        self.day.format("%Y-%m").to_string()
    }
}

impl<V: Serialize + Clone + Send + Sync + std::fmt::Debug + 'static> OutputRow for Keyed<V> {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Owned(self.month())
    }
}

/// Lists of [`Keyed`] records: keys `k0`..`k{keys-1}`, dates over `days` days from `from`, values from
/// `value`, in date order (as a source reads them).
pub fn keyed<V: Strategy>(
    keys: usize,
    from: NaiveDate,
    days: u32,
    value: V,
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = Vec<Keyed<V::Value>>>
where
    V::Value: Clone,
{
    let record = (0..keys.max(1), dates(from, days), value).prop_map(|(k, day, value)| Keyed {
        key: format!("k{k}"),
        day,
        value,
    });
    proptest::collection::vec(record, len).prop_map(|mut v| {
        v.sort_by_key(|r| r.day);
        v
    })
}
