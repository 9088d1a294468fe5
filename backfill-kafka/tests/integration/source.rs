//! The Kafka source against a real broker: exact ranges, time windows, retention, no group commits.

use crate::common;

use backfill_core::manifest::{InputRange, OffsetRange, RunKind, RunManifest, SourceSpec};
use backfill_core::plan::ResolvedPlan;
use backfill_core::prelude::ExecutionMode;
use backfill_core::source::BackfillSource;
use backfill_kafka::{KafkaChunkState, KafkaError, KafkaRecord, KafkaSource};
use futures::TryStreamExt;

fn manifest(topic: &str, range: InputRange) -> RunManifest {
    let mut m = RunManifest::new("bf-kafka-src", RunKind::Replay, ExecutionMode::Replay);
    m.source = SourceSpec {
        kind: "kafka".into(),
        name: topic.into(),
        range: Some(range),
        ..SourceSpec::default()
    };
    m
}

fn offsets(parts: &[(i32, i64, i64)]) -> InputRange {
    InputRange::Offsets {
        partitions: parts
            .iter()
            .map(|(p, a, b)| OffsetRange {
                partition: *p,
                from: *a,
                to_exclusive: *b,
            })
            .collect(),
    }
}

async fn read_all(source: &KafkaSource, m: &RunManifest) -> Vec<KafkaRecord> {
    let plan = source.plan(m).await.expect("plan");
    let plan = ResolvedPlan::new(&m.run_id, m.digest(), plan, chrono::Utc::now());
    let mut out = Vec::new();
    for c in &plan.chunks {
        let batches: Vec<Vec<KafkaRecord>> = source.read(c).try_collect().await.expect("read");
        assert!(batches.iter().all(|b| !b.is_empty()));
        out.extend(batches.into_iter().flatten());
    }
    out
}

/// Recent timestamps: the broker deletes records older than its retention (7 days) by timestamp.
fn t0() -> i64 {
    (chrono::Utc::now().timestamp_millis() / 1000) * 1000 - 3_600_000
}

fn seeded(n: i64, partitions: i32) -> Vec<(i32, String, Option<String>, i64)> {
    seeded_at(n, partitions, t0())
}

/// Records one second apart from `t0` (tests that compute windows from `t0` pass the same one: two
/// calls of `t0()` may fall on either side of a second).
fn seeded_at(n: i64, partitions: i32, t0: i64) -> Vec<(i32, String, Option<String>, i64)> {
    (0..n)
        .map(|i| {
            let p = (i % i64::from(partitions)) as i32;
            (p, format!("k{i}"), Some(format!("v{i}")), t0 + i * 1000)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn exact_range_stops_at_to_exclusive_and_keeps_key_value_headers_time() {
    let b = broker_or_skip!();
    let t = common::fresh_topic(&b, "exact", 2).await;
    common::seed(&b, &t, &seeded(40, 2)).await;
    let source = KafkaSource::new(common::config(&b)).chunk_offsets(3);
    let got = read_all(&source, &manifest(&t, offsets(&[(0, 5, 12), (1, 0, 4)]))).await;
    let pos: Vec<(i32, i64)> = got.iter().map(|r| (r.partition, r.offset)).collect();
    let want: Vec<(i32, i64)> = (5..12)
        .map(|o| (0, o))
        .chain((0..4).map(|o| (1, o)))
        .collect();
    assert_eq!(pos, want);
    // Partition 0 holds records 0, 2, 4, ...: offset o is record 2o.
    let r = &got[0];
    assert_eq!(r.key.as_deref(), Some(&b"k10"[..]));
    assert_eq!(r.value.as_deref(), Some(&b"v10"[..]));
    assert_eq!(r.header("origin"), Some(&b"seed"[..]));
    assert!(r.timestamp_ms.is_some_and(|t| t % 1000 == 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_time_window_is_resolved_once_into_offsets_in_the_plan() {
    let b = broker_or_skip!();
    let t = common::fresh_topic(&b, "window", 2).await;
    let t0 = t0();
    common::seed(&b, &t, &seeded_at(40, 2, t0)).await;
    let from = chrono::DateTime::from_timestamp_millis(t0 + 10 * 1000).expect("ts");
    let to = chrono::DateTime::from_timestamp_millis(t0 + 20 * 1000).expect("ts");
    let m = manifest(
        &t,
        InputRange::Timestamps {
            from,
            to_exclusive: to,
        },
    );
    let source = KafkaSource::new(common::config(&b));
    let plan = source.plan(&m).await.expect("plan");
    let states: Vec<KafkaChunkState> = plan
        .chunks
        .iter()
        .map(|c| c.state.parse().expect("state"))
        .collect();
    let ranges: Vec<(i32, i64, i64)> = states
        .iter()
        .flat_map(|s| {
            s.ranges
                .iter()
                .map(|r| (r.partition, r.from, r.to_exclusive))
        })
        .collect();
    assert_eq!(ranges, vec![(0, 5, 10), (1, 5, 10)]);
    // Records produced after planning do not change what the plan reads.
    common::seed(
        &b,
        &t,
        &[(0, "late".into(), Some("late".into()), t0 + 15_500)],
    )
    .await;
    let again: Vec<KafkaChunkState> = plan
        .chunks
        .iter()
        .map(|c| c.state.parse().expect("state"))
        .collect();
    assert_eq!(states, again);
    // Reading the plan made before the late record reads exactly its offsets: the window is not
    // looked up again, and the late record (in the window by its timestamp) is not read.
    let plan = ResolvedPlan::new(&m.run_id, m.digest(), plan, chrono::Utc::now());
    let mut got = Vec::new();
    for c in &plan.chunks {
        let batches: Vec<Vec<KafkaRecord>> = source.read(c).try_collect().await.expect("read");
        got.extend(batches.into_iter().flatten());
    }
    let mut read: Vec<(i32, i64)> = got.iter().map(|r| (r.partition, r.offset)).collect();
    read.sort_unstable();
    let planned: Vec<(i32, i64)> = [0, 1]
        .into_iter()
        .flat_map(|p| (5..10).map(move |o| (p, o)))
        .collect();
    assert_eq!(read, planned);
    assert!(got.iter().all(|r| r.key.as_deref() != Some(&b"late"[..])));
    let ts: Vec<i64> = got.iter().filter_map(|r| r.timestamp_ms).collect();
    assert!(
        ts.iter().all(|t| (t0 + 10_000..t0 + 20_000).contains(t)),
        "records with timestamps in the window: {ts:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ranges_past_the_end_or_on_unknown_partitions_are_refused_by_name() {
    let b = broker_or_skip!();
    let t = common::fresh_topic(&b, "refuse", 2).await;
    common::seed(&b, &t, &seeded(10, 2)).await;
    let source = KafkaSource::new(common::config(&b));
    let err = source
        .plan(&manifest(&t, offsets(&[(1, 0, 50)])))
        .await
        .expect_err("past end");
    let KafkaError::PastEnd { partition, end, .. } = downcast(&err) else {
        panic!("{err}")
    };
    assert_eq!((*partition, *end), (1, 5));
    let err = source
        .plan(&manifest(&t, offsets(&[(7, 0, 1)])))
        .await
        .expect_err("unknown");
    assert!(
        matches!(
            downcast(&err),
            KafkaError::UnknownPartition { partition: 7, .. }
        ),
        "{err}"
    );
}

fn downcast(e: &backfill_core::Error) -> &KafkaError {
    match e.root() {
        backfill_core::Error::Adapter { source, .. }
        | backfill_core::Error::Transient { source, .. } => {
            source.downcast_ref::<KafkaError>().expect("a KafkaError")
        }
        other => panic!("not an adapter error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_range_the_topic_no_longer_retains_is_refused_naming_the_partition() {
    let b = broker_or_skip!();
    let t = common::fresh_topic(&b, "retention", 1).await;
    // Records a year old: the broker's time-based retention deletes them and moves the log start.
    let old = t0() - 365 * 86_400_000;
    let records: Vec<_> = (0..5)
        .map(|i| (0, format!("k{i}"), Some("v".to_owned()), old + i))
        .collect();
    common::seed(&b, &t, &records).await;
    let cfg = common::config(&b);
    let mut low = 0;
    for _ in 0..300 {
        low = backfill_kafka::watermarks(&cfg, &t, &[0])
            .await
            .expect("watermarks")[0]
            .1;
        if low > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(low > 0, "the broker never applied retention");
    let source = KafkaSource::new(cfg);
    let err = source
        .plan(&manifest(&t, offsets(&[(0, 0, 5)])))
        .await
        .expect_err("not retained");
    let KafkaError::NotRetained {
        partition,
        from,
        log_start,
        ..
    } = downcast(&err)
    else {
        panic!("{err}")
    };
    assert_eq!((*partition, *from, *log_start), (0, 0, low));
    assert!(err.to_string().contains("partition 0"), "{err}");
}
