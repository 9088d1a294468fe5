//! Poison records in a replay: a record the transform cannot decode is quarantined with its
//! `topic/partition@offset`, the rest of its chunk is published to the backfill topic (read back
//! with kcat, read_committed), the quarantine is in the chunk's evidence; over the manifest's
//! budget the chunk fails and nothing is published.

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::sync::Arc;

use backfill_core::evidence::EvidenceRecord;
use backfill_core::manifest::{OffsetRange, SideEffectPolicy, ValidationPlan};
use backfill_core::memory::MemoryStore;
use backfill_core::prelude::*;
use backfill_kafka::{
    KafkaRecord, KafkaSource, KafkaStagingSink, KafkaTopicPublisher, ReplayCodec, ReplayRecord,
};
use chrono::{TimeZone, Utc};

/// Copies records whose value is a JSON object; refuses anything else, naming its position.
#[derive(Debug)]
struct JsonOnly;

impl DeterministicTransform for JsonOnly {
    type Input = KafkaRecord;
    type Output = ReplayRecord;
    fn name(&self) -> &str {
        "json_only"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    fn apply(
        &self,
        r: &KafkaRecord,
        _: &TransformContext,
        out: &mut Vec<ReplayRecord>,
    ) -> Result<(), TransformError> {
        let value = r.value.as_deref().unwrap_or_default();
        match serde_json::from_slice::<serde_json::Value>(value) {
            Ok(v) if v.is_object() => {
                out.push(ReplayRecord::of(r));
                Ok(())
            }
            Ok(_) => Err(TransformError::new("not a JSON object")),
            Err(e) => Err(TransformError::new(format!("malformed JSON: {e}"))),
        }
        .map_err(|e| e.for_input(format!("{}/{}@{}", r.topic, r.partition, r.offset)))
    }
}

fn manifest(run: &str, source: &str, target: &str, budget: u64) -> RunManifest {
    let mut m = RunManifest::new(run, RunKind::Replay, ExecutionMode::Replay);
    m.reason = "replay after a consumer bug".into();
    m.requested_by = "platform".into();
    m.source = SourceSpec {
        kind: "kafka".into(),
        name: source.into(),
        range: Some(InputRange::Offsets {
            partitions: vec![OffsetRange {
                partition: 0,
                from: 0,
                to_exclusive: 10,
            }],
        }),
        ..SourceSpec::default()
    };
    m.transform.name = "json_only".into();
    m.transform.version = "1.0.0".into();
    m.transform.git_commit = Some("abc1234".into());
    m.target = TargetSpec {
        kind: "kafka_topic".into(),
        name: target.into(),
        mutation: Some(Mutation::AppendWithRunId),
        partitions: vec!["0".into()],
        ..TargetSpec::default()
    };
    m.safety.side_effects = Some(SideEffectPolicy {
        allowed: true,
        allowed_sinks: vec![],
    });
    m.safety.max_rejected_per_chunk = budget;
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        ..ValidationPlan::default()
    });
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_is_quarantined_with_its_offset_and_the_rest_is_published() {
    let b = broker_or_skip!();
    let cfg = common::config(&b);
    let source = common::fresh_topic(&b, "poison", 1).await;
    let t0 = Utc::now().timestamp_millis() - 60_000;
    // Offsets 3 and 7 are poison: a truncated object and a bare string.
    let recs: Vec<_> = (0..10i64)
        .map(|i| {
            let value = match i {
                3 => "{\"id\": 3, \"amount\":".to_owned(),
                7 => "\"seven\"".to_owned(),
                _ => format!("{{\"id\": {i}}}"),
            };
            (0, format!("k{i}"), Some(value), t0 + i)
        })
        .collect();
    common::seed(&b, &source, &recs).await;
    let at = Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap();

    // Two chunks of five offsets, one poison record in each: within a budget of one per chunk.
    let (run, target) = ("bf-poison", format!("{source}.backfill"));
    {
        let store = Arc::new(MemoryStore::new());
        let sink = Arc::new(
            KafkaStagingSink::new(cfg.clone(), ReplayCodec).prefix(format!("{source}.stage.")),
        );
        let publisher = Arc::new(KafkaTopicPublisher::new(cfg.clone(), &target, ReplayCodec));
        let control = Control::new(store.clone())
            .with_clock(Arc::new(FixedClock(at)))
            .with_target(publisher.clone() as Arc<dyn Publisher>)
            .expect("target");
        let executor = Executor::builder(
            control.clone(),
            Arc::new(KafkaSource::new(cfg.clone()).chunk_offsets(5)),
            Arc::new(JsonOnly),
            sink.clone(),
            publisher.clone(),
        )
        .build();
        let approved = manifest(run, &source, &target, 1)
            .approve("owner", at)
            .expect("approve");
        control.submit(&approved).await.expect("submit");
        let result = executor.run(approved.run_id()).await;
        let report = result.expect("published");
        assert_eq!(report.state, RunState::Published);
        assert_eq!(report.input_records, 10);
        assert_eq!(report.output_rows, 8);
        let evidence = store.evidence(approved.run_id()).await.expect("evidence");
        let mut quarantined: Vec<(String, String)> = evidence
            .iter()
            .flat_map(|e| match &e.record {
                EvidenceRecord::ChunkStaged { quarantined, .. } => quarantined
                    .iter()
                    .map(|q| (q.input.clone().unwrap_or_default(), q.error.clone()))
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        quarantined.sort();
        assert_eq!(quarantined.len(), 2, "{quarantined:?}");
        assert_eq!(quarantined[0].0, format!("{source}/0@3"));
        assert!(
            quarantined[0].1.starts_with("malformed JSON"),
            "{quarantined:?}"
        );
        assert_eq!(
            quarantined[1],
            (format!("{source}/0@7"), "not a JSON object".into())
        );
        // kcat, a second client, sees the eight good records once each and neither poison record.
        let dump = common::kcat_dump(&b, &target);
        let mut keys: Vec<&str> = dump.iter().filter_map(|l| l.split(' ').nth(2)).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["k0", "k1", "k2", "k4", "k5", "k6", "k8", "k9"],
            "{dump:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_budget_the_chunk_fails_and_nothing_is_published() {
    let b = broker_or_skip!();
    let cfg = common::config(&b);
    let source = common::fresh_topic(&b, "poison-over", 1).await;
    let t0 = Utc::now().timestamp_millis() - 60_000;
    let recs: Vec<_> = (0..10i64)
        .map(|i| {
            let value = if i % 4 == 1 {
                "oops".to_owned()
            } else {
                format!("{{\"id\": {i}}}")
            };
            (0, format!("k{i}"), Some(value), t0 + i)
        })
        .collect();
    common::seed(&b, &source, &recs).await;
    let target = format!("{source}.backfill");
    let store = Arc::new(MemoryStore::new());
    let sink = Arc::new(
        KafkaStagingSink::new(cfg.clone(), ReplayCodec).prefix(format!("{source}.stage.")),
    );
    let publisher = Arc::new(KafkaTopicPublisher::new(cfg.clone(), &target, ReplayCodec));
    let control = Control::new(store.clone())
        .with_target(publisher.clone() as Arc<dyn Publisher>)
        .expect("target");
    // One chunk of ten records holds three poison records (offsets 1, 5, 9); the budget is two.
    let executor = Executor::builder(
        control.clone(),
        Arc::new(KafkaSource::new(cfg.clone()).chunk_offsets(10)),
        Arc::new(JsonOnly),
        sink,
        publisher,
    )
    .build();
    let approved = manifest("bf-poison-over", &source, &target, 2)
        .approve("owner", Utc::now())
        .expect("approve");
    control.submit(&approved).await.expect("submit");
    let err = executor
        .run(approved.run_id())
        .await
        .expect_err("over budget");
    assert_eq!(err.root().kind(), ErrorKind::Limit, "{err}");
    assert!(err.to_string().contains("max_rejected_per_chunk"), "{err}");
    assert_eq!(
        control.run(approved.run_id()).await.expect("run").state,
        RunState::Failed
    );
    let published = backfill_kafka::watermarks(&cfg, &target, &[0]).await;
    let empty = match published {
        Ok(w) => w.iter().all(|(_, lo, hi)| lo == hi),
        Err(_) => true,
    };
    assert!(empty, "nothing reached {target}");
}
