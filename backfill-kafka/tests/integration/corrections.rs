//! Correction events on Kafka: the outbox passes the testkit's outbox checks, and a restatement of a
//! replayed topic publishes one `correctsEventId`-carrying event per changed key, once, through
//! `CorrectionPublisher` comparing the accepted backfill topic with the staged restatement (read
//! back with kcat, read_committed).

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use backfill_core::correction::{Correction, CorrectionPublisher};
use backfill_core::manifest::{OffsetRange, SideEffectPolicy, ValidationPlan};
use backfill_core::memory::MemoryStore;
use backfill_core::prelude::*;
use backfill_kafka::{
    KafkaOutbox, KafkaRecord, KafkaSource, KafkaStagingSink, KafkaTopicPublisher, ReplayCodec,
    ReplayRecord,
};
use chrono::{TimeZone, Utc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_outbox_passes_the_outbox_checks() {
    let b = broker_or_skip!();
    let outbox = KafkaOutbox::new(common::config(&b), common::topic("outbox")).partitions(2);
    let failures = backfill_testkit::outbox::run_all(&outbox, "kafka").await;
    assert!(failures.is_empty(), "{failures:?}");
}

/// v1 copies values; v2 upper-cases the values of every third key.
#[derive(Debug)]
struct Values(&'static str);

impl DeterministicTransform for Values {
    type Input = KafkaRecord;
    type Output = ReplayRecord;
    fn name(&self) -> &str {
        "values"
    }
    fn version(&self) -> &str {
        self.0
    }
    fn apply(
        &self,
        r: &KafkaRecord,
        _: &TransformContext,
        out: &mut Vec<ReplayRecord>,
    ) -> Result<(), TransformError> {
        let mut row = ReplayRecord::of(r);
        if self.0 == "2.0.0" && r.offset % 3 == 0 {
            row.value = row.value.map(|v| v.to_ascii_uppercase());
        }
        out.push(row);
        Ok(())
    }
}

fn manifest(
    run: &str,
    version: &str,
    source: &str,
    target: &str,
    mutation: Mutation,
) -> RunManifest {
    let mut m = RunManifest::new(run, RunKind::Restatement, ExecutionMode::Backfill);
    m.reason = "values were not normalised".into();
    m.requested_by = "platform".into();
    m.source = SourceSpec {
        kind: "kafka".into(),
        name: source.into(),
        range: Some(InputRange::Offsets {
            partitions: vec![
                OffsetRange {
                    partition: 0,
                    from: 0,
                    to_exclusive: 15,
                },
                OffsetRange {
                    partition: 1,
                    from: 0,
                    to_exclusive: 15,
                },
            ],
        }),
        ..SourceSpec::default()
    };
    m.transform.name = "values".into();
    m.transform.version = version.into();
    m.transform.git_commit = Some("abc1234".into());
    m.target = TargetSpec {
        kind: "kafka_topic".into(),
        name: target.into(),
        mutation: Some(mutation),
        partitions: vec!["0".into(), "1".into()],
        ..TargetSpec::default()
    };
    m.safety.side_effects = Some(SideEffectPolicy {
        allowed: true,
        allowed_sinks: vec![],
    });
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        ..ValidationPlan::default()
    });
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restatement_publishes_one_correction_event_per_changed_key_once() {
    let b = broker_or_skip!();
    let cfg = common::config(&b);
    let source = common::fresh_topic(&b, "corr-src", 2).await;
    let t0 = Utc::now().timestamp_millis() - 60_000;
    let recs: Vec<_> = (0..30i64)
        .map(|i| {
            (
                (i % 2) as i32,
                format!("k{i}"),
                Some(format!("v{i}")),
                t0 + i,
            )
        })
        .collect();
    common::seed(&b, &source, &recs).await;
    let accepted_topic = format!("{source}.backfill");
    let events_topic = format!("{source}.corrections");
    let at = Utc.with_ymd_and_hms(2026, 12, 4, 9, 0, 0).unwrap();

    let store = Arc::new(MemoryStore::new());
    let sink = Arc::new(
        KafkaStagingSink::new(cfg.clone(), ReplayCodec).prefix(format!("{source}.stage.")),
    );
    let accepted =
        Arc::new(KafkaTopicPublisher::new(cfg.clone(), &accepted_topic, ReplayCodec).partitions(2));
    let outbox = Arc::new(KafkaOutbox::new(cfg.clone(), &events_topic).partitions(2));
    let corrections = Arc::new(CorrectionPublisher::new(
        outbox.clone(),
        accepted.clone(),
        sink.clone(),
        Correction::new(
            "ValueCorrected",
            |r: &ReplayRecord| {
                String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned()
            },
            |r: &ReplayRecord| {
                format!(
                    "{}/{}@{}",
                    r.source.topic, r.source.partition, r.source.offset
                )
            },
            |r: &ReplayRecord| {
                serde_json::json!(String::from_utf8_lossy(
                    r.value.as_deref().unwrap_or_default()
                ))
            },
        ),
    ));
    let control = Control::new(store)
        .with_clock(Arc::new(FixedClock(at)))
        .with_target(accepted.clone() as Arc<dyn Publisher>)
        .and_then(|c| c.with_target(corrections.clone() as Arc<dyn Publisher>))
        .expect("targets");
    let executor = |v: &'static str| {
        Executor::builder(
            control.clone(),
            Arc::new(KafkaSource::new(cfg.clone()).chunk_offsets(8)),
            Arc::new(Values(v)),
            sink.clone(),
            accepted.clone(),
        )
        .build()
    };
    // v1 is the accepted output of the backfill topic.
    let v1 = manifest(
        "bf-values-v1",
        "1.0.0",
        &source,
        &accepted_topic,
        Mutation::AppendWithRunId,
    )
    .approve("owner", at)
    .expect("v1");
    control.submit(&v1).await.expect("submit v1");
    assert_eq!(
        executor("1.0.0").run(v1.run_id()).await.expect("v1").state,
        RunState::Published
    );
    // v2 restates it as correction events instead of overwriting.
    let v2 = manifest(
        "bf-values-v2",
        "2.0.0",
        &source,
        &events_topic,
        Mutation::CorrectionEvents,
    )
    .approve("owner", at)
    .expect("v2");
    control.submit(&v2).await.expect("submit v2");
    let report = executor("2.0.0").run(v2.run_id()).await.expect("v2");
    assert_eq!(report.state, RunState::Published, "{report:?}");

    // Offsets 0, 3, 6, 9, 12 of each partition changed: 10 keys.
    let lines = common::kcat(&[
        "-C",
        "-b",
        &b,
        "-t",
        &events_topic,
        "-o",
        "beginning",
        "-e",
        "-q",
        "-X",
        "isolation.level=read_committed",
        "-f",
        "%k\t%s\n",
    ]);
    let events: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l.split_once('\t').expect("tab").1).expect("json"))
        .collect();
    assert_eq!(events.len(), 10, "{lines}");
    let keys: BTreeSet<&str> = events
        .iter()
        .map(|e| e["key"].as_str().expect("key"))
        .collect();
    assert_eq!(keys.len(), 10);
    for e in &events {
        assert_eq!(e["eventType"], "ValueCorrected");
        assert_eq!(e["producedByRunId"], "bf-values-v2");
        assert_eq!(e["reason"], "values were not normalised");
        assert!(
            e["correctsEventId"]
                .as_str()
                .is_some_and(|c| c.starts_with(&source)),
            "{e}"
        );
        let (old, new) = (
            e["old"].as_str().expect("old"),
            e["new"].as_str().expect("new"),
        );
        assert_eq!(new, old.to_ascii_uppercase());
    }
    // Publishing again produces nothing new.
    control
        .publish(v2.run_id(), "owner")
        .await
        .expect("republish");
    assert_eq!(common::kcat_dump(&b, &events_topic).len(), 10);
    // The accepted backfill topic is untouched by a correction run.
    assert_eq!(
        accepted
            .accepted()
            .await
            .expect("log")
            .values()
            .collect::<BTreeSet<_>>()
            .len(),
        1
    );
}
