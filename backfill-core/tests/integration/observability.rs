//! Metrics under the seed's names, and throttling. (Spans are in `spans.rs`, a process of their own.)

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backfill_core::prelude::*;
use backfill_core::telemetry;
use common::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[test]
fn metrics_use_the_documented_names_and_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let report = metrics::with_local_recorder(&recorder, || rt().block_on(run_one("bf-metrics")));
    let mut counters = BTreeMap::new();
    let mut histograms = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let labels: BTreeMap<_, _> = key
            .key()
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        assert_eq!(labels.get("run_id").map(String::as_str), Some("bf-metrics"));
        assert_eq!(labels.get("mode").map(String::as_str), Some("BACKFILL"));
        assert_eq!(
            labels.get("target").map(String::as_str),
            Some("amounts_daily")
        );
        match value {
            DebugValue::Counter(n) => {
                counters.insert(key.key().name().to_owned(), n);
            }
            DebugValue::Histogram(v) => {
                histograms.insert(key.key().name().to_owned(), v.len());
            }
            DebugValue::Gauge(_) => {}
        }
    }
    assert_eq!(
        counters[telemetry::INPUT_RECORDS_TOTAL],
        report.input_records
    );
    assert_eq!(
        counters[telemetry::OUTPUT_RECORDS_TOTAL],
        report.output_rows
    );
    assert_eq!(counters[telemetry::CHUNKS_COMPLETED_TOTAL], 3);
    assert_eq!(counters[telemetry::VALIDATION_FAILURES_TOTAL], 0);
    assert_eq!(histograms[telemetry::CHUNK_DURATION_SECONDS], 3);
    assert_eq!(histograms[telemetry::SINK_WRITE_LATENCY_MS], 3);
    assert_eq!(histograms[telemetry::PUBLISH_DURATION_SECONDS], 1);
}

#[tokio::test]
async fn rows_per_minute_and_commits_per_hour_are_enforced() {
    let parts = Parts::new();
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    let mut m = manifest("bf-throttle");
    // 270 rows at 9,000 rows/min (150/s, burst 150): the other 120 rows need at least 0.8 s.
    m.safety.limits.max_rows_per_minute = Some(9_000);
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();
    let started = Instant::now();
    runner.run(approved.run_id()).await.unwrap();
    let rows_elapsed = started.elapsed();
    assert!(
        rows_elapsed >= Duration::from_millis(700),
        "{rows_elapsed:?}"
    );

    let parts = Parts::new();
    let runner = parts.runner(Arc::new(source()), Scale::default()).build();
    let mut m = manifest("bf-commits");
    // 3 chunks at 7,200 commits/hour (one per 0.5 s, burst 1): at least 1 s.
    m.safety.limits.max_sink_commits_per_hour = Some(7_200);
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();
    let started = Instant::now();
    runner.run(approved.run_id()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn context_is_pinned_and_knows_the_publish_range() {
    let mut m = manifest("bf-ctx");
    m.source.range = Some(InputRange::Dates {
        from: day(2024, 12, 1),
        to_exclusive: day(2025, 4, 1),
    });
    m.publish_range = Some(InputRange::Dates {
        from: day(2025, 1, 1),
        to_exclusive: day(2025, 4, 1),
    });
    m.transform.reference_data = vec![ReferenceData {
        name: "calendar".into(),
        version: "v2026-06".into(),
        semantics: ReferenceSemantics::CorrectedTruth,
    }];
    let ctx = TransformContext::for_manifest(&m, at());
    assert!(!ctx.publishes_date(day(2024, 12, 31)));
    assert!(ctx.publishes_date(day(2025, 1, 1)));
    assert!(!ctx.publishes_date(day(2025, 4, 1)));
    assert_eq!(ctx.reference_version("calendar"), Some("v2026-06"));
    assert_eq!(ctx.clock().now(), at());
    assert_eq!(ctx.lineage().reference_data, "calendar/v2026-06");
    assert_eq!(ctx.lineage().input_range, "dates[2024-12-01, 2025-04-01)");
    assert_eq!(
        ctx.output_id(&["a"]),
        TransformContext::for_manifest(&m, at()).output_id(&["a"])
    );
    assert_ne!(
        ctx.output_id(&["a"]),
        TransformContext::for_manifest(&manifest("bf-other"), at()).output_id(&["a"])
    );
}
