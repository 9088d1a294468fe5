//! Plan and estimate before approval: sizes from the source, duration and cost from declared
//! rates, coverage, the cost ceiling at start and while reading, evidence and the cost gauge, and
//! a dry run on a named subset of chunks.

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::estimate::{CostModel, Coverage, Estimate, Rate, SizeEstimate};
use backfill_core::evidence::{EvidenceKind, EvidenceRecord};
use backfill_core::memory::MemorySource;
use backfill_core::plan::{PlannedChunk, SourcePlan};
use backfill_core::prelude::*;
use backfill_core::telemetry;
use common::*;
use futures::stream::BoxStream;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// The fixtures' memory source, with a byte size per record, chunks it cannot size, a chunk
/// dropped from its plan (a gap), or record counts it understates.
#[derive(Debug)]
struct Sized {
    inner: MemorySource<Event>,
    bytes_per_record: Option<u64>,
    unknown: Option<&'static str>,
    drop_label: Option<&'static str>,
    understate: Option<u64>,
}

impl Sized {
    fn new() -> Self {
        Self {
            inner: source(),
            bytes_per_record: None,
            unknown: None,
            drop_label: None,
            understate: None,
        }
    }
}

#[async_trait]
impl BackfillSource<Event> for Sized {
    fn name(&self) -> &str {
        "sized-memory"
    }

    async fn plan(&self, m: &RunManifest) -> backfill_core::Result<SourcePlan> {
        let mut plan = self.inner.plan(m).await?;
        if let Some(label) = self.drop_label {
            plan.chunks.retain(|c| c.label != label);
        }
        Ok(plan)
    }

    fn read(&self, chunk: &PlannedChunk) -> BoxStream<'static, backfill_core::Result<Vec<Event>>> {
        self.inner.read(chunk)
    }

    async fn estimate(&self, chunk: &PlannedChunk) -> backfill_core::Result<SizeEstimate> {
        if self.unknown == Some(chunk.label.as_str()) {
            return Ok(SizeEstimate::unknown());
        }
        let mut size = self.inner.estimate(chunk).await?;
        if let Some(n) = self.understate {
            size.records = Some(n);
        }
        if let (Some(b), Some(r)) = (self.bytes_per_record, size.records) {
            size = size.with_bytes(b * r);
        }
        Ok(size)
    }
}

fn rate(x: f64) -> Option<Rate> {
    Some(Rate::new(x).expect("a finite rate of at least 0"))
}

/// The fixtures' manifest with declared rates: 10 records/s per worker, $1,000 per million
/// records, $100 per GB, $0.50 fixed.
fn priced(run_id: &str) -> RunManifest {
    let mut m = manifest(run_id);
    m.safety.cost_model = Some(CostModel {
        rows_per_second: rate(10.0),
        usd_per_million_rows: rate(1_000.0),
        usd_per_gb: rate(100.0),
        usd_fixed: rate(0.5),
        ..CostModel::default()
    });
    m
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test]
async fn estimate_sizes_every_chunk_and_prices_it_from_declared_rates() {
    let parts = Parts::new();
    let control = parts.control();
    let src = Sized {
        bytes_per_record: Some(100),
        ..Sized::new()
    };
    let m = priced("bf-est-1");
    let e = control.estimate(&m, &src).await.unwrap();

    let months: Vec<(&str, Option<u64>)> = e
        .chunks
        .iter()
        .map(|c| (c.label.as_str(), c.size.records))
        .collect();
    assert_eq!(
        months,
        [
            ("2025-01", Some(93)),
            ("2025-02", Some(84)),
            ("2025-03", Some(93))
        ]
    );
    assert_eq!(e.records, 270);
    assert_eq!(e.bytes, 27_000);
    assert!(e.complete() && e.unsized_records.is_empty());
    assert_eq!(e.coverage, Coverage::Exact);
    assert_eq!(e.snapshot.as_deref(), Some("s-1"));
    assert_eq!(e.manifest_digest, m.digest());
    // One worker at 10 records/s.
    assert_eq!(e.seconds, Some(27.0));
    // $0.50 + 270 / 1e6 * $1,000 + 27,000 / 1e9 * $100.
    assert!(close(e.cost_usd.unwrap(), 0.5 + 0.27 + 0.0027), "{e:?}");
    // Nothing was persisted and nothing read.
    assert!(src.inner.read_log().is_empty());
    assert!(control.store().plan(&m.run_id).await.unwrap().is_none());
    let shown = e.to_string();
    assert!(
        shown.contains("270 input records, 27000 bytes, ~27 s, ~$0.77"),
        "{shown}"
    );
    assert!(shown.contains("coverage: exact"), "{shown}");
}

#[tokio::test]
async fn duration_follows_parallelism_and_the_throughput_limits() {
    let control = Parts::new().control();
    let mut m = priced("bf-est-2");
    m.safety.limits.max_chunks_in_parallel = 3;
    let e = control.estimate(&m, &Sized::new()).await.unwrap();
    assert_eq!(e.seconds, Some(9.0), "three workers at 10 records/s");

    // 60 rows a minute caps the run at one record a second, whatever the workers do.
    m.safety.limits.max_rows_per_minute = Some(60);
    let e = control.estimate(&m, &Sized::new()).await.unwrap();
    assert_eq!(e.seconds, Some(270.0));

    // Pauses between windows come on top: 3 chunks over 3 workers, one pause each.
    m.safety.limits.pause_between_windows_ms = 2_000;
    let e = control.estimate(&m, &Sized::new()).await.unwrap();
    assert_eq!(e.seconds, Some(272.0));

    // No rates and no limits: no duration, no cost.
    let plain = manifest("bf-est-3");
    let e = control.estimate(&plain, &Sized::new()).await.unwrap();
    assert_eq!((e.seconds, e.cost_usd), (None, None));
    assert!(e.to_string().contains("cost unknown"));
}

#[tokio::test]
async fn a_gap_in_the_plan_is_reported_not_raised() {
    let control = Parts::new().control();
    let src = Sized {
        drop_label: Some("2025-02"),
        ..Sized::new()
    };
    let e = control.estimate(&priced("bf-est-gap"), &src).await.unwrap();
    assert_eq!(
        e.coverage,
        Coverage::Problem {
            detail: "gap [2025-02-01, 2025-03-01)".into()
        }
    );
    assert_eq!(e.chunks.len(), 2);
    assert!(e.to_string().contains("coverage: PROBLEM: gap"));
}

#[tokio::test]
async fn chunks_the_source_cannot_size_are_named_and_the_totals_are_lower_bounds() {
    let control = Parts::new().control();
    let src = Sized {
        unknown: Some("2025-02"),
        ..Sized::new()
    };
    let e = control.estimate(&priced("bf-est-unk"), &src).await.unwrap();
    assert_eq!(e.unsized_records, ["2025-02"]);
    assert_eq!(e.records, 93 + 93);
    assert!(!e.complete());
    assert!(e.to_string().contains("lower bounds"));
}

#[tokio::test]
async fn an_estimate_over_the_ceiling_refuses_the_run_before_any_chunk() {
    let parts = Parts::new();
    let src = Arc::new(Sized::new());
    let runner = Executor::builder(
        parts.control(),
        src.clone(),
        Arc::new(Scale::default()),
        parts.sink.clone(),
        parts.publisher.clone(),
    )
    .build();
    let mut m = priced("bf-est-over");
    // 270 records at $10,000 per million = $2.70 + $0.50: over a $2 ceiling.
    m.safety.cost_model.as_mut().unwrap().usd_per_million_rows = rate(10_000.0);
    m.safety.max_cost_usd = Some(2);
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();

    let err = runner.run(approved.run_id()).await.unwrap_err();
    match &err {
        Error::LimitExceeded {
            run_id,
            limit,
            value,
            max,
        } => {
            assert_eq!(run_id.as_str(), "bf-est-over");
            assert_eq!(*limit, "safety.max_cost_usd");
            assert_eq!((*value, *max), (4, 2), "$3.20 rounded up against $2");
        }
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
    assert!(src.inner.read_log().is_empty(), "no chunk was read");
    let run = runner.control().run(approved.run_id()).await.unwrap();
    assert_eq!(run.state, RunState::Failed);
    let evidence = parts.store.evidence(approved.run_id()).await.unwrap();
    let estimated: Vec<&Estimate> = evidence
        .iter()
        .filter_map(|e| match &e.record {
            EvidenceRecord::Estimated(est) => Some(&**est),
            _ => None,
        })
        .collect();
    assert_eq!(estimated.len(), 1);
    assert!(close(estimated[0].cost_usd.unwrap(), 3.2));
    assert!(!evidence
        .iter()
        .any(|e| e.kind() == EvidenceKind::ChunkStaged));

    // Refused again on resume: the estimate does not change, nor is it recorded twice.
    assert!(runner.run(approved.run_id()).await.is_err());
    let again = parts.store.evidence(approved.run_id()).await.unwrap();
    let n = again
        .iter()
        .filter(|e| e.kind() == EvidenceKind::Estimated)
        .count();
    assert_eq!(n, 1);
    assert!(src.inner.read_log().is_empty());
}

#[tokio::test]
async fn a_run_whose_records_read_cost_more_than_the_ceiling_stops() {
    let parts = Parts::new();
    // The source claims 10 records per chunk: $0.80 estimated, under the ceiling.
    let src = Arc::new(Sized {
        understate: Some(10),
        ..Sized::new()
    });
    let runner = Executor::builder(
        parts.control(),
        src.clone(),
        Arc::new(Scale::default()),
        parts.sink.clone(),
        parts.publisher.clone(),
    )
    .build();
    let mut m = priced("bf-est-actual");
    m.safety.cost_model.as_mut().unwrap().usd_per_million_rows = rate(10_000.0);
    m.safety.max_cost_usd = Some(1);
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();

    let err = runner.run(approved.run_id()).await.unwrap_err();
    // $0.50 + 10,000 per million: more than $1 after 50 records, within the first chunk.
    assert_eq!(err.root().kind(), ErrorKind::Limit, "{err}");
    assert!(err.to_string().contains("safety.max_cost_usd"), "{err}");
    let run = runner.control().run(approved.run_id()).await.unwrap();
    assert_eq!(run.state, RunState::Failed);
    let chunks = parts.store.chunks(approved.run_id()).await.unwrap();
    assert!(
        chunks.iter().all(|c| c.output_count == 0),
        "no chunk staged"
    );
    assert!(parts
        .store
        .accepted("amounts_daily")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_chunk_whose_bytes_would_take_the_run_over_the_ceiling_is_not_read() {
    let parts = Parts::new();
    // 10 records of 100 bytes claimed per chunk: $0.60 estimated, under the $2 ceiling. Read:
    // 93, 84 and 93 records at a cent each, each chunk's 1,000 bytes charged ($0.10) as it starts.
    let src = Arc::new(Sized {
        understate: Some(10),
        bytes_per_record: Some(100),
        ..Sized::new()
    });
    let runner = Executor::builder(
        parts.control(),
        src.clone(),
        Arc::new(Scale::default()),
        parts.sink.clone(),
        parts.publisher.clone(),
    )
    .build();
    let mut m = manifest("bf-est-bytes");
    m.safety.cost_model = Some(CostModel {
        usd_per_million_rows: rate(10_000.0),
        usd_per_gb: rate(100_000.0),
        ..CostModel::default()
    });
    m.safety.max_cost_usd = Some(2);
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();

    let err = runner.run(approved.run_id()).await.unwrap_err();
    assert_eq!(err.root().kind(), ErrorKind::Limit, "{err}");
    // January and February: $1.77 of records and $0.20 of bytes. March would add $0.10 of bytes
    // before a record of it: refused without reading it.
    let done: Vec<u64> = parts
        .store
        .chunks(approved.run_id())
        .await
        .unwrap()
        .iter()
        .map(|c| c.input_count)
        .collect();
    assert_eq!(done, [93, 84, 0]);
    let march = InputRange::Dates {
        from: day(2025, 3, 1),
        to_exclusive: day(2025, 4, 1),
    };
    assert!(
        !src.inner.read_log().contains(&march),
        "{:?}",
        src.inner.read_log()
    );
    let run = runner.control().run(approved.run_id()).await.unwrap();
    assert_eq!(run.state, RunState::Failed);
}

#[tokio::test]
async fn a_dry_run_on_a_subset_reads_validates_and_publishes_nothing() {
    let parts = Parts::new();
    // An accepted output to compare with.
    let src = Arc::new(source());
    let runner = parts.runner(src.clone(), Scale::default()).build();
    let first = approve(manifest("bf-sub-base"));
    runner.control().submit(&first).await.unwrap();
    runner.run(first.run_id()).await.unwrap();
    let before = parts.publisher.snapshot();

    let src = Arc::new(source());
    let runner = parts.runner(src.clone(), Scale::default()).build();
    let mut m = manifest("bf-sub-dry");
    m.mode = ExecutionMode::DryRun;
    m.safety.dry_run_chunks = vec!["2025-03".into()];
    assert!(!m.check().has_blocking(), "{:?}", m.check());

    // The estimate is of the subset, its coverage that of the whole plan.
    let e = runner.control().estimate(&m, src.as_ref()).await.unwrap();
    assert_eq!(e.subset, ["2025-03"]);
    assert_eq!((e.planned, e.chunks.len(), e.records), (3, 1, 93));
    assert!(e.coverage.is_exact());

    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();
    let report = runner.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Validated);
    assert_eq!((report.chunks_total, report.output_rows), (1, 93));
    assert_eq!(
        src.read_log(),
        [InputRange::Dates {
            from: day(2025, 3, 1),
            to_exclusive: day(2025, 4, 1)
        }]
    );
    // Validated like a full run: the digests, and the count against the accepted output of the
    // partition it covers (93 rows in 2025-03, not the 270 of the quarter).
    let evidence = parts.store.evidence(approved.run_id()).await.unwrap();
    let validators: Vec<(String, Verdict)> = evidence
        .iter()
        .filter_map(|e| match &e.record {
            EvidenceRecord::Validation(o) => Some((o.validator.clone(), o.verdict)),
            _ => None,
        })
        .collect();
    for name in [
        "digest_matches_ledger",
        "count_tolerance",
        "declared_partitions_staged",
    ] {
        assert!(
            validators.contains(&(name.to_owned(), Verdict::Pass)),
            "{name}: {validators:?}"
        );
    }
    // Published nothing.
    assert_eq!(parts.publisher.snapshot(), before);
    let accepted = parts
        .store
        .accepted("amounts_daily")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(accepted.run_id, *first.run_id());
    assert!(runner
        .control()
        .publish(approved.run_id(), "owner")
        .await
        .is_err());
}

#[tokio::test]
async fn a_subset_must_name_planned_chunks_and_be_a_dry_run() {
    let parts = Parts::new();
    let src = Arc::new(source());
    let runner = parts.runner(src.clone(), Scale::default()).build();

    let mut m = manifest("bf-sub-bad");
    m.mode = ExecutionMode::DryRun;
    m.safety.dry_run_chunks = vec!["2025-13".into()];
    let err = runner
        .control()
        .estimate(&m, src.as_ref())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidManifest { field, .. } if field == "safety.dry_run_chunks[0]"),
        "{err}"
    );
    let approved = approve(m);
    runner.control().submit(&approved).await.unwrap();
    let err = runner.run(approved.run_id()).await.unwrap_err();
    assert!(err.to_string().contains("2025-13"), "{err}");
    assert!(src.read_log().is_empty());

    let mut m = manifest("bf-sub-live");
    m.safety.dry_run_chunks = vec!["2025-03".into()];
    assert!(m.check().contains("subset_outside_dry_run"));
    assert!(m.check().has_blocking());
}

#[test]
fn the_estimate_is_evidence_and_sets_the_cost_gauge() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let parts = Parts::new();
    let control = parts.control();
    let m = priced("bf-est-gauge");
    let estimate = metrics::with_local_recorder(&recorder, || {
        rt().block_on(async {
            control.submit_draft(&m).await.unwrap();
            control
                .estimate_run(&m.run_id, &Sized::new(), "alice")
                .await
                .unwrap()
        })
    });
    let evidence = rt().block_on(parts.store.evidence(&m.run_id)).unwrap();
    let recorded: Vec<&EvidenceRecord> = evidence
        .iter()
        .filter(|e| e.kind() == EvidenceKind::Estimated)
        .map(|e| &e.record)
        .collect();
    assert_eq!(
        recorded,
        [&EvidenceRecord::Estimated(Box::new(estimate.clone()))]
    );
    // The stored form reads back typed.
    let json = recorded[0].to_json();
    assert_eq!(json["type"], "estimated");
    assert_eq!(EvidenceRecord::from_json(json).unwrap(), *recorded[0]);

    let gauge = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(k, _, _, _)| k.key().name() == telemetry::COST_ESTIMATE)
        .map(|(k, _, _, v)| (k, v))
        .expect("the cost gauge is set");
    let labels: Vec<(String, String)> = gauge
        .0
        .key()
        .labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect();
    assert!(labels.contains(&("run_id".into(), "bf-est-gauge".into())));
    match gauge.1 {
        DebugValue::Gauge(v) => assert!(close(v.into_inner(), estimate.cost_usd.unwrap())),
        other => panic!("{other:?}"),
    }

    // An estimate of another manifest version is refused.
    let mut other = estimate.clone();
    other.manifest_digest = priced("bf-est-gauge-2").digest();
    let err = rt()
        .block_on(control.record_estimate(&other, "alice"))
        .unwrap_err();
    assert!(matches!(err, Error::Tampered { .. }), "{err}");
}

#[test]
fn rates_read_camel_case_and_refuse_negative_numbers() {
    let safety: SafetySpec = serde_json::from_value(serde_json::json!({
        "sideEffectsAllowed": false,
        "maxCostUsd": 40,
        "costModel": {"rowsPerSecond": 5000, "usdPerMillionRows": 0.25, "usdPerGb": 0.09},
        "dryRunChunks": ["2025-03"]
    }))
    .unwrap();
    let model = safety.cost_model.unwrap();
    assert_eq!(model.usd_per_million_rows, rate(0.25));
    assert_eq!(safety.dry_run_chunks, ["2025-03"]);

    let err =
        serde_json::from_value::<CostModel>(serde_json::json!({"usd_per_gb": -1.0})).unwrap_err();
    assert!(err.to_string().contains("at least 0"), "{err}");
    let err =
        serde_json::from_value::<CostModel>(serde_json::json!({"usd_per_row": 1.0})).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");

    // A manifest that declares none of it keeps its digest: the new fields are not written.
    let m = manifest("bf-est-digest");
    let json = String::from_utf8(backfill_core::manifest::canonical_json(&m)).unwrap();
    assert!(!json.contains("cost_model") && !json.contains("dry_run_chunks"));
}

#[test]
fn a_ceiling_without_prices_is_a_finding() {
    let mut m = manifest("bf-est-unpriced");
    m.safety.max_cost_usd = Some(10);
    assert!(m.check().contains("cost_ceiling_unpriced"));
    let m = {
        let mut m = priced("bf-est-priced");
        m.safety.max_cost_usd = Some(10);
        m
    };
    assert!(!m.check().contains("cost_ceiling_unpriced"));
}
