//! Partition digests: order- and chunking-independent, sensitive to duplicates, losses and edits.

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use backfill_core::prelude::*;
use common::*;
use proptest::prelude::*;

fn arb_rows() -> impl Strategy<Value = Vec<Row>> {
    proptest::collection::vec(
        (
            0u32..3,
            "[A-Z]-[0-9]{1,3}",
            1u32..28,
            -1_000_000i64..1_000_000,
        ),
        1..80,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(m, account, d, cents)| {
                let day = day(2025, m + 1, d);
                Row {
                    id: format!("{account}/{day}"),
                    account,
                    day,
                    month: day.format("%Y-%m").to_string(),
                    cents,
                    run_id: "bf-1".into(),
                }
            })
            .collect()
    })
}

fn chunked(rows: &[Row], cuts: &[usize]) -> PartitionDigests {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (rows.len() + 1)).collect();
    cuts.sort_unstable();
    let mut total = PartitionDigests::default();
    let mut start = 0;
    for c in cuts.into_iter().chain([rows.len()]) {
        total.merge(&PartitionDigests::of_rows(&rows[start..c.max(start)]));
        start = c.max(start);
    }
    total
}

proptest! {
    #[test]
    fn same_for_any_permutation_and_chunking(
        (rows, shuffled) in arb_rows().prop_flat_map(|r| (Just(r.clone()), Just(r).prop_shuffle())),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let whole = PartitionDigests::of_rows(&rows);
        prop_assert_eq!(&PartitionDigests::of_rows(&shuffled), &whole);
        prop_assert_eq!(&chunked(&shuffled, &cuts), &whole);
        prop_assert_eq!(whole.total_rows(), rows.len() as u64);
    }

    #[test]
    fn differs_when_a_row_is_duplicated_dropped_or_altered(rows in arb_rows(), pick in any::<prop::sample::Index>(), delta in 1i64..1000) {
        let whole = PartitionDigests::of_rows(&rows);
        let i = pick.index(rows.len());

        let mut duplicated = rows.clone();
        duplicated.push(rows[i].clone());
        prop_assert_ne!(&PartitionDigests::of_rows(&duplicated), &whole);

        let mut dropped = rows.clone();
        dropped.remove(i);
        prop_assert_ne!(&PartitionDigests::of_rows(&dropped), &whole);

        let mut altered = rows.clone();
        altered[i].cents += delta;
        let a = PartitionDigests::of_rows(&altered);
        prop_assert_ne!(&a, &whole);
        // Same count, different hash: the change is in content, not cardinality.
        prop_assert_eq!(a.total_rows(), whole.total_rows());
    }

    #[test]
    fn display_form_round_trips(rows in arb_rows()) {
        for d in PartitionDigests::of_rows(&rows).0.values() {
            prop_assert_eq!(PartitionDigest::parse(&d.to_string()), Some(*d));
        }
    }
}

#[test]
fn swapping_rows_between_partitions_changes_both_digests() {
    let a = Row {
        id: "1".into(),
        account: "A".into(),
        day: day(2025, 1, 1),
        month: "2025-01".into(),
        cents: 1,
        run_id: "r".into(),
    };
    let mut b = a.clone();
    b.month = "2025-02".into();
    let one = PartitionDigests::of_rows([&a]);
    let two = PartitionDigests::of_rows([&b]);
    assert_ne!(one, two);
    assert_eq!(one.0.keys().next().unwrap().as_str(), "2025-01");
}
