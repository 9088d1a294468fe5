//! Transactions on both sides: a source range across aborted transactions and markers, a zombie
//! staging attempt fenced by its successor (checked with kcat), lineage headers on the wire, and a
//! live consumer group's committed offsets untouched by a replay.

use crate::common;

use std::time::Duration;

use backfill_core::context::{ExecutionMode, OutputLineage};
use backfill_core::ids::{ChunkId, RunId};
use backfill_core::manifest::{InputRange, OffsetRange, RunKind, RunManifest, SourceSpec};
use backfill_core::plan::ResolvedPlan;
use backfill_core::sink::{StageRequest, StagingSink};
use backfill_core::source::BackfillSource;
use backfill_kafka::{
    KafkaRecord, KafkaSource, KafkaStagingSink, ReplayCodec, ReplayRecord, SourcePosition,
};
use futures::{StreamExt, TryStreamExt};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn transactional(b: &str, id: &str) -> ThreadedProducer<rdkafka::producer::DefaultProducerContext> {
    let p: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", b)
        .set("transactional.id", id)
        .create()
        .expect("producer");
    p.init_transactions(Duration::from_secs(10)).expect("init");
    p
}

fn produce_txn(
    p: &ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    topic: &str,
    keys: &[&str],
    commit: bool,
) {
    p.begin_transaction().expect("begin");
    for k in keys {
        p.send(BaseRecord::to(topic).partition(0).key(*k).payload(*k))
            .expect("send");
    }
    p.flush(Duration::from_secs(10)).expect("flush");
    if commit {
        p.commit_transaction(Duration::from_secs(10))
            .expect("commit");
    } else {
        p.abort_transaction(Duration::from_secs(10)).expect("abort");
    }
}

fn manifest(topic: &str, from: i64, to: i64) -> RunManifest {
    let mut m = RunManifest::new("bf-kafka-txn", RunKind::Replay, ExecutionMode::Replay);
    m.source = SourceSpec {
        kind: "kafka".into(),
        name: topic.into(),
        range: Some(InputRange::Offsets {
            partitions: vec![OffsetRange {
                partition: 0,
                from,
                to_exclusive: to,
            }],
        }),
        ..SourceSpec::default()
    };
    m
}

async fn read(source: &KafkaSource, m: &RunManifest) -> Vec<KafkaRecord> {
    let plan = source.plan(m).await.expect("plan");
    let plan = ResolvedPlan::new(&m.run_id, m.digest(), plan, chrono::Utc::now());
    let mut out = Vec::new();
    for c in &plan.chunks {
        let b: Vec<Vec<KafkaRecord>> = source.read(c).try_collect().await.expect("read");
        out.extend(b.into_iter().flatten());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_range_across_aborted_transactions_and_markers_reads_only_committed_records() {
    let b = broker_or_skip!();
    let t = common::fresh_topic(&b, "aborted", 1).await;
    let p = transactional(&b, &format!("{t}-writer"));
    produce_txn(&p, &t, &["a1", "a2", "a3"], true);
    produce_txn(&p, &t, &["x1", "x2"], false);
    produce_txn(&p, &t, &["b1", "b2"], true);
    let (_, _, end) = backfill_kafka::watermarks(&common::config(&b), &t, &[0])
        .await
        .expect("wm")[0];
    // 7 records and 3 markers take offsets: the end is past the record count.
    assert!(end > 7, "end {end}");
    // One chunk: noida-db 0.2.3 returns nothing for a read_committed fetch that starts inside the
    // committed batch after an aborted one (kcat shows the same); real Kafka does not, see README.
    let got = read(&KafkaSource::new(common::config(&b)), &manifest(&t, 0, end)).await;
    let keys: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned())
        .collect();
    assert_eq!(keys, ["a1", "a2", "a3", "b1", "b2"]);
    // kcat, read_committed, agrees.
    let kc: Vec<String> = common::kcat_dump(&b, &t)
        .iter()
        .map(|l| l.split(' ').nth(2).unwrap_or("").to_owned())
        .collect();
    assert_eq!(kc, keys);
    // A range that ends inside the committed data stops there, whatever follows.
    let first = read(
        &KafkaSource::new(common::config(&b)),
        &manifest(&t, 0, got[1].offset + 1),
    )
    .await;
    assert_eq!(first.len(), 2);
}

fn rows(n: i64, tag: &str) -> Vec<ReplayRecord> {
    (0..n)
        .map(|i| ReplayRecord {
            key: Some(format!("{tag}-{i}").into_bytes()),
            value: Some(tag.as_bytes().to_vec()),
            headers: vec![],
            timestamp_ms: Some(1_000 + i),
            source: SourcePosition {
                topic: "live".into(),
                partition: 0,
                offset: i,
            },
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zombie_attempt_is_fenced_and_read_committed_readers_see_only_its_successor() {
    let b = broker_or_skip!();
    let prefix = format!("{}.", common::topic("zombie"));
    let sink = KafkaStagingSink::new(common::config(&b), ReplayCodec)
        .prefix(&prefix)
        .partitions(1);
    let run = RunId::from("bf-zombie");
    let chunk = ChunkId::new("00000-zombie");
    let lineage = OutputLineage {
        run_id: run.clone(),
        mode: ExecutionMode::Replay,
        transform_name: "identity".into(),
        transform_version: "1.0.0".into(),
        input_snapshot: Some("kafka:live@0:0-10".into()),
        input_range: "offsets".into(),
        reference_data: String::new(),
        produced_at: chrono::Utc::now(),
    };
    let req = |attempt| StageRequest {
        run_id: &run,
        chunk_id: &chunk,
        attempt,
        lineage: &lineage,
    };
    // Attempt 1 produces half its rows, then stalls (a worker paused past its lease).
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let first = rows(5, "zombie");
    let stalled = futures::stream::iter(vec![Ok(first)])
        .chain(futures::stream::once(async move {
            let _ = rx.await;
            Ok(rows(5, "late"))
        }))
        .boxed();
    let sink2 = &sink;
    let zombie = async { sink2.stage(req(1), stalled).await };
    let successor = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let r = sink2
            .stage(
                req(2),
                futures::stream::iter(vec![Ok(rows(3, "fresh"))]).boxed(),
            )
            .await;
        let _ = tx.send(());
        r
    };
    let (z, s) = tokio::join!(zombie, successor);
    assert_eq!(s.expect("successor stages").rows, 3);
    assert!(z.is_err(), "the zombie's commit must fail: {z:?}");
    // The zombie again, later: refused before it writes anything.
    let again = sink
        .stage(
            req(1),
            futures::stream::iter(vec![Ok(rows(2, "again"))]).boxed(),
        )
        .await;
    assert!(
        matches!(
            again,
            Err(backfill_core::Error::Fenced {
                attempt: 1,
                current: 2,
                ..
            })
        ),
        "{again:?}"
    );
    // kcat, read_committed, sees only the successor's rows in the staging topic.
    let staged = common::kcat_dump(&b, &sink.staging_topic(&run));
    let keys: Vec<&str> = staged
        .iter()
        .map(|l| l.split(' ').nth(2).unwrap_or(""))
        .collect();
    assert_eq!(keys, ["fresh-0", "fresh-1", "fresh-2"], "{staged:?}");
    // Lineage headers are on the wire as bytes.
    for l in &staged {
        for h in [
            "backfill_run_id=bf-zombie",
            "transform_version=1.0.0",
            "processing_mode=REPLAY",
            "source_topic=live",
            "source_partition=0",
            "input_snapshot=kafka:live@0:0-10",
            "backfill_attempt=2",
        ] {
            assert!(l.contains(h), "{l} lacks {h}");
        }
    }
    let back: Vec<Vec<ReplayRecord>> = sink
        .read_staged(&run)
        .try_collect()
        .await
        .expect("read back");
    assert_eq!(back.concat(), rows(3, "fresh"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_leaves_the_live_groups_committed_offsets_untouched() {
    let b = broker_or_skip!();
    let t = common::fresh_topic(&b, "groups", 1).await;
    let t0 = chrono::Utc::now().timestamp_millis();
    let recs: Vec<_> = (0..20)
        .map(|i| (0, format!("k{i}"), Some("v".to_owned()), t0 + i))
        .collect();
    common::seed(&b, &t, &recs).await;
    // The live pipeline's group has committed offset 7.
    let group = format!("{t}-live");
    let live: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&t, 0, Offset::Offset(7))
        .expect("tpl");
    live.commit(&tpl, CommitMode::Sync).expect("commit");
    let committed = || {
        let mut q = TopicPartitionList::new();
        q.add_partition(&t, 0);
        live.committed_offsets(q, Duration::from_secs(10))
            .expect("committed")
            .find_partition(&t, 0)
            .map(|e| e.offset())
    };
    let before = committed();
    assert_eq!(before, Some(Offset::Offset(7)));
    let groups_before = common::committed_groups(&b);
    let got = read(&KafkaSource::new(common::config(&b)), &manifest(&t, 0, 20)).await;
    assert_eq!(got.len(), 20);
    assert_eq!(committed(), before);
    assert_eq!(
        common::committed_groups(&b),
        groups_before,
        "the replay joined or created a group"
    );
}
