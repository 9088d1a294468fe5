//! The testkit's partial-failure scenarios with the Kafka source, staging sink and topic
//! publisher on the broker: sink faults (a failed stage call, a failed batch mid-chunk, a crash after
//! produce before the ledger), an unknown publish outcome, and crashes in every window of publish and
//! rollback all converge to the uninterrupted run, publishing once. Also: the live-topic policy
//! refuses a replay into a live topic before any chunk runs.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use backfill_core::manifest::{OffsetRange, SideEffectPolicy, ValidationPlan};
use backfill_core::prelude::*;
use backfill_kafka::{
    delete_topic, KafkaRecord, KafkaSource, KafkaStagingSink, KafkaTopicPolicy,
    KafkaTopicPublisher, ReplayCodec, ReplayRecord,
};
use backfill_testkit::faults::{FaultKind, SinkFault};
use backfill_testkit::partial_failure::{Adapters, Crash, Scenario};
use chrono::{TimeZone, Utc};

#[derive(Debug)]
struct Identity;

impl DeterministicTransform for Identity {
    type Input = KafkaRecord;
    type Output = ReplayRecord;
    fn name(&self) -> &str {
        "identity"
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
        out.push(ReplayRecord::of(r));
        Ok(())
    }
}

fn manifest(run: &str, source: &str, target: &str) -> RunManifest {
    let mut m = RunManifest::new(run, RunKind::Replay, ExecutionMode::Replay);
    m.reason = "replay for the partial-failure checks".into();
    m.requested_by = "platform".into();
    m.source = SourceSpec {
        kind: "kafka".into(),
        name: source.into(),
        range: Some(InputRange::Offsets {
            partitions: vec![
                OffsetRange {
                    partition: 0,
                    from: 3,
                    to_exclusive: 40,
                },
                OffsetRange {
                    partition: 1,
                    from: 0,
                    to_exclusive: 25,
                },
            ],
        }),
        ..SourceSpec::default()
    };
    m.transform.name = "identity".into();
    m.transform.version = "1.0.0".into();
    m.transform.git_commit = Some("abc1234".into());
    m.target = TargetSpec {
        kind: "kafka_topic".into(),
        name: target.into(),
        mutation: Some(Mutation::AppendWithRunId),
        partitions: vec!["0".into(), "1".into()],
        ..TargetSpec::default()
    };
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        ..ValidationPlan::default()
    });
    m
}

static FRESH: AtomicU64 = AtomicU64::new(0);

async fn scenario(b: &str, name: &str) -> Scenario<Identity> {
    let source = common::fresh_topic(b, name, 2).await;
    let t0 = Utc::now().timestamp_millis() - 60_000;
    let recs: Vec<_> = (0..90i64)
        .map(|i| {
            (
                (i % 2) as i32,
                format!("k{i}"),
                Some(format!("v{i}")),
                t0 + i,
            )
        })
        .collect();
    common::seed(b, &source, &recs).await;
    let target = format!("{source}.backfill");
    let at = Utc.with_ymd_and_hms(2026, 12, 4, 9, 0, 0).unwrap();
    let approved = manifest(&format!("bf-{name}"), &source, &target)
        .approve("owner", at)
        .expect("approve");
    let kafka = KafkaSource::new(common::config(b))
        .chunk_offsets(10)
        .batch_size(8);
    let brokers = b.to_owned();
    Scenario::new(approved, Arc::new(Identity), Arc::new(kafka), at).with_adapters(move || {
        let brokers = brokers.clone();
        let target = target.clone();
        async move {
            let cfg = common::config(&brokers);
            let n = FRESH.fetch_add(1, Ordering::Relaxed);
            // A fresh staging namespace and an empty target per run.
            let sink = KafkaStagingSink::new(cfg.clone(), ReplayCodec)
                .prefix(format!("{target}.stage{n}."))
                .partitions(2);
            let publisher =
                KafkaTopicPublisher::new(cfg.clone(), &target, ReplayCodec).partitions(2);
            delete_topic(&cfg, publisher.topic())
                .await
                .expect("reset target");
            delete_topic(&cfg, &publisher.log_topic())
                .await
                .expect("reset log");
            let pair: Adapters<ReplayRecord> = (Arc::new(sink), Arc::new(publisher));
            pair
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_faults_mid_chunk_and_after_produce_converge() {
    let b = broker_or_skip!();
    let s = scenario(&b, "pf-sink").await;
    for (fault, kind) in [
        (SinkFault::AtStageCall(2), FaultKind::Transient),
        (SinkFault::AtBatch(3), FaultKind::Transient),
        (SinkFault::AfterStage(1), FaultKind::Transient),
        (SinkFault::AtStageCall(4), FaultKind::Fatal),
    ] {
        let out = s
            .check_sink_fault(fault, kind)
            .await
            .unwrap_or_else(|f| panic!("{fault:?} {kind:?}: {f}"));
        assert_eq!(out.report.state, RunState::Published);
        assert_eq!(out.report.output_rows, 37 + 25);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_publish_outcome_is_inspected_and_copies_once() {
    let b = broker_or_skip!();
    let out = scenario(&b, "pf-unknown")
        .await
        .check_unknown_publish_outcome()
        .await
        .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(out.report.state, RunState::Published);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publications_and_rollbacks_crashed_in_any_window_converge() {
    let b = broker_or_skip!();
    let s = scenario(&b, "pf-crash").await;
    for crash in Crash::ALL {
        s.check_publish_crash(crash)
            .await
            .unwrap_or_else(|f| panic!("publish {crash:?}: {f}"));
        s.check_rollback_crash(crash)
            .await
            .unwrap_or_else(|f| panic!("rollback {crash:?}: {f}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_into_a_live_topic_is_refused_before_any_chunk() {
    let b = broker_or_skip!();
    let source = common::fresh_topic(&b, "live", 2).await;
    let t0 = Utc::now().timestamp_millis();
    common::seed(&b, &source, &[(0, "k".into(), Some("v".into()), t0)]).await;
    let at = Utc::now();
    let mut m = manifest("bf-into-live", &source, &source);
    if let Some(InputRange::Offsets { partitions }) = &mut m.source.range {
        partitions.truncate(1);
        partitions[0] = OffsetRange {
            partition: 0,
            from: 0,
            to_exclusive: 1,
        };
    }
    let approved = m.approve("owner", at).expect("approve");
    let store = Arc::new(backfill_core::memory::MemoryStore::new());
    let cfg = common::config(&b);
    let prefix = format!("{source}.stage.");
    let sink = Arc::new(KafkaStagingSink::new(cfg.clone(), ReplayCodec).prefix(&prefix));
    let publisher = Arc::new(KafkaTopicPublisher::new(cfg.clone(), &source, ReplayCodec));
    let control = Control::new(store)
        .with_target(Arc::clone(&publisher) as Arc<dyn Publisher>)
        .expect("target");
    control.submit(&approved).await.expect("submit");
    let exec = Executor::builder(
        control,
        Arc::new(KafkaSource::new(cfg.clone())),
        Arc::new(Identity),
        sink,
        publisher,
    )
    .policy(Arc::new(KafkaTopicPolicy::new([source.clone()])))
    .build();
    let err = exec.run(approved.run_id()).await.expect_err("refused");
    assert!(
        matches!(err, Error::ForbiddenSink { ref sink, .. } if *sink == source),
        "{err}"
    );
    // Nothing was staged: the run's staging topic was never created.
    let staging = format!("{prefix}bf-into-live");
    assert_eq!(
        backfill_kafka::partition_count(&cfg, &staging)
            .await
            .expect("metadata"),
        None
    );
}
