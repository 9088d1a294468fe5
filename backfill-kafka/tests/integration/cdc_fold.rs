//! The CDC folds: replay of a range and snapshot + CDC range, by property and by example.

use std::collections::BTreeMap;

use backfill_kafka::cdc::{
    reconstruct, replay, ChangeKey, ChangeOp, ChangeRecord, ChangeRow, KeyState, PositionRange,
    Snapshot, SourceInfo, SourcePosition,
};
use proptest::prelude::*;
use serde_json::json;

fn key(k: u8) -> ChangeKey {
    ChangeKey::from_json(&json!({ "id": k }))
}

fn change(k: u8, op: ChangeOp, value: Option<i64>, lsn: u64) -> ChangeRecord<i64> {
    ChangeRecord {
        op,
        key: key(k),
        before: None,
        after: value,
        source: SourceInfo::default(),
        position: SourcePosition::lsn(lsn),
        kafka: None,
        ts_ms: None,
        version: i64::try_from(lsn).unwrap(),
    }
}

/// A log: changes to keys 0..5 at strictly increasing LSNs (10, 20, …). An upsert of a key the log
/// has not seen alive is a create, else an update; deletes may repeat (a delete, then its tombstone).
fn log() -> impl Strategy<Value = Vec<ChangeRecord<i64>>> {
    prop::collection::vec((0u8..5, prop::option::weighted(0.7, 0i64..1000)), 0..40).prop_map(
        |steps| {
            let mut alive = [false; 5];
            steps
                .into_iter()
                .enumerate()
                .map(|(i, (k, v))| {
                    let lsn = (i as u64 + 1) * 10;
                    let op = match v {
                        None => ChangeOp::Delete,
                        Some(_) if alive[k as usize] => ChangeOp::Update,
                        Some(_) => ChangeOp::Create,
                    };
                    alive[k as usize] = v.is_some();
                    change(k, op, v, lsn)
                })
                .collect()
        },
    )
}

/// A log, a permutation of it and a position within it.
fn shuffled_log() -> impl Strategy<Value = (Vec<ChangeRecord<i64>>, Vec<ChangeRecord<i64>>)> {
    log().prop_flat_map(|l| {
        let original = l.clone();
        Just(l)
            .prop_shuffle()
            .prop_map(move |s| (original.clone(), s))
    })
}

fn states(v: &[KeyState<i64>]) -> BTreeMap<ChangeKey, Option<i64>> {
    v.iter().map(|s| (s.key.clone(), s.state)).collect()
}

fn lsn_of(i: usize) -> SourcePosition {
    SourcePosition::lsn(i as u64 * 10)
}

proptest! {
    #[test]
    fn folding_is_deterministic_whatever_the_input_order((original, shuffled) in shuffled_log()) {
        let a = replay(original.clone(), &PositionRange::all());
        let b = replay(shuffled.clone(), &PositionRange::all());
        prop_assert_eq!(&a, &b);
        // Keys come out sorted.
        prop_assert!(a.windows(2).all(|w| w[0].key < w[1].key));
        let snap = Snapshot::new(SourcePosition::lsn(0));
        let target = SourcePosition::lsn(u64::MAX / 2);
        prop_assert_eq!(reconstruct(&snap, original, &target), reconstruct(&snap, shuffled, &target));
    }

    #[test]
    fn each_key_ends_in_the_state_of_its_last_change_by_position((original, shuffled) in shuffled_log()) {
        let folded = replay(shuffled, &PositionRange::all());
        let mut last: BTreeMap<ChangeKey, &ChangeRecord<i64>> = BTreeMap::new();
        for c in &original {
            last.insert(c.key.clone(), c);
        }
        prop_assert_eq!(folded.len(), last.len());
        for s in &folded {
            let c = last[&s.key];
            prop_assert_eq!(s.state, c.state().copied());
            prop_assert_eq!(&s.position, &c.position);
            prop_assert_eq!(s.version, c.version);
            prop_assert_eq!(s.op, c.op);
        }
    }

    #[test]
    fn snapshot_plus_cdc_equals_a_full_replay_when_the_snapshot_folds_the_prefix(
        (l, cut, extra) in log().prop_flat_map(|l| { let n = l.len(); (Just(l), 0..=n, 0..=n) })
    ) {
        let snap_at = lsn_of(cut);
        let target = lsn_of((cut + extra).min(l.len()));
        let mut snapshot = Snapshot::new(snap_at.clone());
        for s in replay(l.clone(), &PositionRange::up_to(snap_at.clone())) {
            if let Some(v) = s.state {
                snapshot.insert(s.key, v, s.version);
            }
        }
        let rebuilt = reconstruct(&snapshot, l.clone(), &target);
        let full = replay(l.clone(), &PositionRange::up_to(target.clone()));
        let rebuilt_states: BTreeMap<ChangeKey, Option<i64>> =
            rebuilt.iter().map(|(k, s)| (k.clone(), s.state)).collect();
        prop_assert_eq!(rebuilt_states, states(&full));
        // And "replay CDC range" after the snapshot, on top of the snapshot, gives the same.
        let mut layered: BTreeMap<ChangeKey, Option<i64>> =
            snapshot.rows().map(|(k, v)| (k.clone(), Some(*v))).collect();
        for s in replay(l.clone(), &PositionRange::between(snap_at, target.clone())) {
            layered.insert(s.key, s.state);
        }
        let present = |m: &BTreeMap<ChangeKey, Option<i64>>| -> BTreeMap<ChangeKey, i64> {
            m.iter().filter_map(|(k, v)| v.map(|v| (k.clone(), v))).collect()
        };
        prop_assert_eq!(present(&layered), present(&states(&full)));
    }

    #[test]
    fn a_deleted_key_never_reappears_unless_re_created_later(l in log(), upto in 0usize..45) {
        let target = lsn_of(upto);
        let folded = replay(l.clone(), &PositionRange::up_to(target.clone()));
        for s in &folded {
            let changes: Vec<&ChangeRecord<i64>> =
                l.iter().filter(|c| c.key == s.key && c.position <= target).collect();
            if let Some(d) = changes.iter().rposition(|c| c.is_delete()) {
                let recreated = changes[d + 1..].iter().any(|c| !c.is_delete());
                prop_assert_eq!(s.state.is_some(), recreated);
            }
            let row = ChangeRow::from(s.clone());
            prop_assert_eq!(row.deleted, s.state.is_none());
            prop_assert_eq!(row.version, s.version);
        }
    }
}

#[test]
fn changes_at_one_position_apply_in_input_order() {
    let a = change(1, ChangeOp::Update, Some(1), 50);
    let b = change(1, ChangeOp::Update, Some(2), 50);
    assert_eq!(
        replay(vec![a.clone(), b.clone()], &PositionRange::all())[0].state,
        Some(2)
    );
    assert_eq!(replay(vec![b, a], &PositionRange::all())[0].state, Some(1));
}

#[test]
fn a_snapshot_observation_wins_over_changes_it_already_includes() {
    let mut snapshot = Snapshot::new(SourcePosition::lsn(100));
    snapshot.insert(key(1), 7, 100);
    let changes = vec![
        // Before the snapshot, for a key it saw: already included, skipped.
        change(1, ChangeOp::Delete, None, 40),
        change(1, ChangeOp::Update, Some(3), 90),
        // Before the snapshot, for a key it did not see: applied, and a delete stays a fact.
        change(2, ChangeOp::Create, Some(5), 60),
        change(2, ChangeOp::Delete, None, 80),
        // After the snapshot, up to the target: applied.
        change(3, ChangeOp::Create, Some(9), 150),
        // After the target: not applied.
        change(1, ChangeOp::Delete, None, 300),
    ];
    let at_200 = reconstruct(&snapshot, changes.clone(), &SourcePosition::lsn(200));
    assert_eq!(at_200[&key(1)].state, Some(7));
    assert_eq!(at_200[&key(1)].op, ChangeOp::Read);
    assert!(at_200[&key(2)].is_deleted());
    assert_eq!(at_200[&key(2)].last_image, Some(5));
    assert_eq!(at_200[&key(3)].state, Some(9));
    let at_300 = reconstruct(&snapshot, changes, &SourcePosition::lsn(300));
    let gone = ChangeRow::from(at_300[&key(1)].clone());
    assert!(gone.deleted);
    assert_eq!(gone.version, 300);
    // The delete keeps the last image it removed, for the output row's non-key columns.
    assert_eq!(gone.row, Some(7));
}

#[test]
fn a_snapshot_is_built_from_reads_only() {
    let mut read = change(1, ChangeOp::Read, Some(4), 100);
    read.source.snapshot = true;
    let create = change(2, ChangeOp::Create, Some(5), 100);
    let s = Snapshot::from_reads(SourcePosition::lsn(100), vec![read, create]);
    assert_eq!(s.len(), 1);
    assert!(s.contains(&key(1)) && !s.contains(&key(2)));
    assert_eq!(s.position(), &SourcePosition::lsn(100));
}

#[test]
fn a_replayed_range_keeps_deletes_and_leaves_out_what_is_outside_it() {
    let l = vec![
        change(1, ChangeOp::Create, Some(1), 10),
        change(2, ChangeOp::Create, Some(2), 20),
        change(1, ChangeOp::Delete, None, 30),
        change(3, ChangeOp::Create, Some(3), 40),
    ];
    let r = replay(
        l,
        &PositionRange::between(SourcePosition::lsn(10), SourcePosition::lsn(30)),
    );
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].key.clone(), r[0].state), (key(1), None));
    assert_eq!(r[0].op, ChangeOp::Delete);
    assert_eq!((r[1].key.clone(), r[1].state), (key(2), Some(2)));
}
