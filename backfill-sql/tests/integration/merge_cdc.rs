//! A CDC change stream, decoded by `backfill_kafka::cdc`, merged by version with deletes into a SQL
//! target on every engine: "snapshot + CDC range" first, then "replay CDC range" runs. Deletes
//! remove rows, a delete of an absent key inserts nothing, stale updates and deletes lose, and
//! rollback restores exactly what each run overwrote or deleted. On SQLite the `sqlite3` CLI reads
//! the target back as an independent reader.

use crate::common;
use crate::publishing;

use std::borrow::Cow;
use std::collections::BTreeMap;

use backfill_core::digest::{OutputRow, PartitionDigests};
use backfill_core::prelude::*;
use backfill_kafka::cdc::{
    reconstruct, replay, ChangeDecoder, ChangeRecord, ChangeRow, KafkaCoordinates, PositionRange,
    Snapshot, SourcePosition,
};
use backfill_sql::{Column, SqlRow, SqlType};
use publishing::{manifest, Parts};
use serde_json::{json, Value};

/// The source table's row, as Debezium's `before`/`after` images carry it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
struct Image {
    id: i64,
    region: String,
    email: String,
}

/// The target's row: the image, the merge version and the delete marker.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Customer {
    id: i64,
    region: String,
    email: String,
    version: i64,
    deleted: bool,
}

impl OutputRow for Customer {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.region)
    }
}

impl SqlRow for Customer {
    const COLUMNS: &'static [Column] = &[
        Column::new("id", SqlType::BigInt),
        Column::new("region", SqlType::Text),
        Column::new("email", SqlType::Text),
        Column::new("version", SqlType::BigInt),
        Column::new("deleted", SqlType::Boolean),
    ];
    const PARTITION_COLUMN: &'static str = "region";
}

const REGION: &str = "eu";
const TARGET: &str = "customers";

/// The transform's output mapping: a folded key state as a target row.
fn to_row(c: ChangeRow<Image>) -> Customer {
    let id = c.key.to_json()["id"].as_i64().expect("an integer key");
    let (region, email) = c
        .row
        .map_or((REGION.to_owned(), String::new()), |r| (r.region, r.email));
    Customer {
        id,
        region,
        email,
        version: c.version,
        deleted: c.deleted,
    }
}

fn image(id: i64, email: &str) -> Value {
    json!({"id": id, "region": REGION, "email": email})
}

/// One Debezium PostgreSQL envelope (schemas disabled), with a full `before` image.
fn event(op: &str, before: Value, after: Value, lsn: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "before": before, "after": after, "op": op, "ts_ms": 1_733_300_000_000_i64 + lsn as i64,
        "source": {"connector": "postgresql", "name": "shop", "db": "shop", "schema": "public",
                   "table": "customers", "snapshot": if op == "r" { "true" } else { "false" },
                   "lsn": lsn, "txId": lsn / 10}
    }))
    .unwrap()
}

/// The topic `shop.public.customers` as (key, value) messages; `None` values are tombstones.
fn topic_messages() -> Vec<(i64, Option<Vec<u8>>)> {
    let n = Value::Null;
    vec![
        (
            2,
            Some(event("u", image(2, "b@first"), image(2, "b@old"), 900)),
        ),
        (
            3,
            Some(event("u", image(3, "c@first"), image(3, "c@x"), 920)),
        ),
        (5, Some(event("c", n.clone(), image(5, "e@gone"), 940))),
        (4, Some(event("c", n.clone(), image(4, "d@x"), 960))),
        (5, Some(event("d", image(5, "e@gone"), n.clone(), 970))),
        (5, None),
        // The connector's snapshot, at LSN 1000.
        (1, Some(event("r", n.clone(), image(1, "a@x"), 1000))),
        (2, Some(event("r", n.clone(), image(2, "b@old"), 1000))),
        (3, Some(event("r", n.clone(), image(3, "c@x"), 1000))),
        (4, Some(event("r", n.clone(), image(4, "d@x"), 1000))),
        // Streaming after the snapshot.
        (5, Some(event("c", n.clone(), image(5, "e@back"), 1100))),
        (
            2,
            Some(event("u", image(2, "b@old"), image(2, "b@new"), 1200)),
        ),
        (3, Some(event("d", image(3, "c@x"), n.clone(), 1300))),
        (3, None),
        (6, Some(event("c", n.clone(), image(6, "f@brief"), 1400))),
        (6, Some(event("d", image(6, "f@brief"), n.clone(), 1500))),
        (6, None),
        (1, Some(event("d", image(1, "a@x"), n.clone(), 1600))),
        (1, None),
    ]
}

fn decode_topic() -> Vec<ChangeRecord<Image>> {
    let mut d = ChangeDecoder::new();
    topic_messages()
        .into_iter()
        .enumerate()
        .map(|(offset, (id, value))| {
            let key = json!({ "id": id }).to_string();
            let at = KafkaCoordinates::new("shop.public.customers", 0, offset as i64);
            d.decode(Some(key.as_bytes()), value.as_deref(), Some(&at))
                .unwrap()
        })
        .collect()
}

fn lsn(n: u64) -> SourcePosition {
    SourcePosition::lsn(n)
}

fn rows_of(states: impl IntoIterator<Item = ChangeRow<Image>>) -> Vec<Customer> {
    states.into_iter().map(to_row).collect()
}

fn merge_with_deletes() -> Mutation {
    Mutation::MergeByKey {
        key: vec!["id".into()],
        version_column: "version".into(),
        delete_column: Some("deleted".into()),
    }
}

/// The target by id, as `(email, version)`.
async fn target(parts: &Parts<Customer>) -> BTreeMap<i64, (String, i64)> {
    parts
        .read(REGION)
        .await
        .into_iter()
        .map(|c| {
            assert!(!c.deleted, "a delete marker reached the target: {c:?}");
            (c.id, (c.email, c.version))
        })
        .collect()
}

fn expect(rows: &[(i64, &str, i64)]) -> BTreeMap<i64, (String, i64)> {
    rows.iter()
        .map(|(id, e, v)| (*id, ((*e).to_owned(), *v)))
        .collect()
}

/// What the `sqlite3` CLI reads from the database file: `id|email|version` lines.
fn sqlite3_reads(url: &str) -> String {
    let path = url.trim_start_matches("sqlite:");
    let out = std::process::Command::new("sqlite3")
        .arg(path)
        .arg(format!(
            "SELECT id, email, version FROM {TARGET} ORDER BY id"
        ))
        .output()
        .expect("the sqlite3 CLI (apt-get install sqlite3)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_cdc_stream_merges_with_deletes_stale_versions_lose_and_rollback_restores() {
    let changes = decode_topic();
    let snapshot = Snapshot::from_reads(lsn(1000), changes.clone());
    assert_eq!(snapshot.len(), 4);
    for engine in common::engines() {
        let e = engine.name;
        let ns = engine.namespace("merge_cdc");
        let parts: Parts<Customer> = Parts::of(ns.pool().await, TARGET).await;

        // A: the snapshot, reconstructed at its own position: four rows, observed at 1000.
        let at_snapshot = reconstruct(&snapshot, changes.clone(), &lsn(1000));
        let a_rows = rows_of(
            at_snapshot
                .into_values()
                .filter(|s| !s.is_deleted())
                .map(ChangeRow::from),
        );
        let a = manifest("bf-cdc-a", TARGET, merge_with_deletes(), &[]);
        parts.stage_and_publish(&a, a_rows, None).await;
        let after_a = target(&parts).await;
        assert_eq!(
            after_a,
            expect(&[
                (1, "a@x", 1000),
                (2, "b@old", 1000),
                (3, "c@x", 1000),
                (4, "d@x", 1000)
            ]),
            "{e}"
        );

        // B: replay (1000, 1500]. 3 is deleted; 6 was created and deleted in the range, so its
        // delete reaches a key the target never had and inserts nothing.
        let b_states = replay(
            changes.clone(),
            &PositionRange::between(lsn(1000), lsn(1500)),
        );
        assert!(b_states.iter().any(|s| s.is_deleted() && s.version == 1500));
        let b = manifest("bf-cdc-b", TARGET, merge_with_deletes(), &[]);
        let receipt = parts
            .stage_and_publish(
                &b,
                rows_of(b_states.into_iter().map(ChangeRow::from)),
                Some(&a.run_id),
            )
            .await;
        assert_eq!(receipt.rows, 4, "{e}: two upserts and two deletes staged");
        let after_b = expect(&[
            (1, "a@x", 1000),
            (2, "b@new", 1200),
            (4, "d@x", 1000),
            (5, "e@back", 1100),
        ]);
        assert_eq!(target(&parts).await, after_b, "{e}");

        // C: a replay of the older range (800, 1000) without the snapshot: an update of 2 at 900,
        // a create of 4 at 960 and a delete of 5 at 970 are all older than the target's rows, and
        // the update of 3 at 920 is older than its delete at 1300 (its tombstone keeps 3 deleted).
        let c_states = replay(changes.clone(), &PositionRange::between(lsn(800), lsn(999)));
        assert!(c_states.iter().any(|s| s.is_deleted() && s.version == 970));
        assert!(c_states.iter().any(|s| !s.is_deleted() && s.version == 920));
        let c = manifest("bf-cdc-c", TARGET, merge_with_deletes(), &[]);
        parts
            .stage_and_publish(
                &c,
                rows_of(c_states.into_iter().map(ChangeRow::from)),
                Some(&b.run_id),
            )
            .await;
        assert_eq!(
            target(&parts).await,
            after_b,
            "{e}: a stale update or delete won"
        );

        // D: replay (1500, 1600]: 1 is deleted (its tombstone repeats the same fact).
        let d_states = replay(
            changes.clone(),
            &PositionRange::between(lsn(1500), lsn(1600)),
        );
        let d = manifest("bf-cdc-d", TARGET, merge_with_deletes(), &[]);
        parts
            .stage_and_publish(
                &d,
                rows_of(d_states.into_iter().map(ChangeRow::from)),
                Some(&c.run_id),
            )
            .await;
        let mut after_d = after_b.clone();
        after_d.remove(&1);
        assert_eq!(target(&parts).await, after_d, "{e}");
        // The same state as reconstructing the snapshot plus every change up to 1600.
        let full = reconstruct(&snapshot, changes.clone(), &lsn(1600));
        let present: BTreeMap<i64, (String, i64)> = rows_of(
            full.into_values()
                .filter(|s| !s.is_deleted())
                .map(ChangeRow::from),
        )
        .into_iter()
        .map(|c| (c.id, (c.email, c.version)))
        .collect();
        assert_eq!(present, after_d, "{e}");
        if e == "sqlite" {
            assert_eq!(
                sqlite3_reads(&ns.url),
                "2|b@new|1200\n4|d@x|1000\n5|e@back|1100\n"
            );
        }

        // Rollback, one run at a time: each restores exactly what it overwrote or deleted.
        parts.rollback(&d, &c.run_id).await.unwrap();
        assert_eq!(
            target(&parts).await,
            after_b,
            "{e}: rolling back D restores 1"
        );
        parts.rollback(&c, &b.run_id).await.unwrap();
        assert_eq!(target(&parts).await, after_b, "{e}: C changed nothing");
        parts.rollback(&b, &a.run_id).await.unwrap();
        assert_eq!(
            target(&parts).await,
            after_a,
            "{e}: rolling back B restores 3, drops 5"
        );
        if e == "sqlite" {
            assert_eq!(
                sqlite3_reads(&ns.url),
                "1|a@x|1000\n2|b@old|1000\n3|c@x|1000\n4|d@x|1000\n"
            );
        }
        ns.drop().await;
    }
}

#[tokio::test]
async fn equal_version_deletes_win_tombstones_bury_older_rows_and_bad_delete_columns_are_refused() {
    for engine in common::engines() {
        let e = engine.name;
        let ns = engine.namespace("merge_cdc_eq");
        let parts: Parts<Customer> = Parts::of(ns.pool().await, TARGET).await;
        let row = |id, version, deleted| Customer {
            id,
            region: REGION.into(),
            email: format!("{id}@x"),
            version,
            deleted,
        };
        let a = manifest("bf-eq-a", TARGET, merge_with_deletes(), &[]);
        parts
            .stage_and_publish(&a, vec![row(1, 10, false), row(2, 10, false)], None)
            .await;
        let b = manifest("bf-eq-b", TARGET, merge_with_deletes(), &[]);
        parts
            .stage_and_publish(&b, vec![row(1, 10, true), row(2, 9, true)], Some(&a.run_id))
            .await;
        assert_eq!(target(&parts).await, expect(&[(2, "2@x", 10)]), "{e}");

        // A delete of an absent key leaves a tombstone: an older row of that key loses, until the
        // deleting run is rolled back.
        let c = manifest("bf-eq-c", TARGET, merge_with_deletes(), &[]);
        parts
            .stage_and_publish(
                &c,
                vec![row(7, 10, true), row(8, 1, false)],
                Some(&b.run_id),
            )
            .await;
        let d = manifest("bf-eq-d", TARGET, merge_with_deletes(), &[]);
        parts
            .stage_and_publish(
                &d,
                vec![row(7, 5, false), row(8, 2, false)],
                Some(&c.run_id),
            )
            .await;
        assert_eq!(
            target(&parts).await,
            expect(&[(2, "2@x", 10), (8, "8@x", 2)]),
            "{e}: a row older than its key's tombstone won"
        );
        parts.rollback(&d, &c.run_id).await.unwrap();
        parts.rollback(&c, &b.run_id).await.unwrap();
        let d2 = manifest("bf-eq-d2", TARGET, merge_with_deletes(), &[]);
        parts
            .stage_and_publish(
                &d2,
                vec![row(7, 5, false), row(8, 2, false)],
                Some(&b.run_id),
            )
            .await;
        assert_eq!(
            target(&parts).await,
            expect(&[(2, "2@x", 10), (7, "7@x", 5), (8, "8@x", 2)]),
            "{e}: a rolled-back delete still buried its key"
        );

        // The delete column must be a boolean column that is neither key nor version.
        for bad in ["email", "version", "id", "missing"] {
            let m = manifest(
                &format!("bf-eq-{bad}"),
                TARGET,
                Mutation::MergeByKey {
                    key: vec!["id".into()],
                    version_column: "version".into(),
                    delete_column: Some(bad.into()),
                },
                &[],
            );
            let artifacts = parts
                .stage(&m.run_id, vec![row(3, 1, false), row(4, 1, false)])
                .await;
            let digests = PartitionDigests::default();
            let err = parts
                .publish_staged(&m, &artifacts, &digests, Some(&d2.run_id))
                .await
                .unwrap_err();
            assert!(err.to_string().contains(bad), "{e}: {err}");
        }
        assert_eq!(
            target(&parts).await,
            expect(&[(2, "2@x", 10), (7, "7@x", 5), (8, "8@x", 2)]),
            "{e}"
        );
        ns.drop().await;
    }
}

/// The same change stream through a real broker: the topic is written by `kcat` (tombstones as
/// null values), replayed change by change through `KafkaSource::decoded` and the executor in
/// chunks of five offsets (so one key's changes land in several chunks, and several in one), staged
/// in SQL and merged by version with deletes. The target equals the in-memory fold of the same
/// topic, on every engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cdc_topic_replayed_from_the_broker_through_the_executor_merges_to_the_fold() {
    use std::sync::Arc;

    use backfill_core::manifest::OffsetRange;
    use backfill_kafka::{ensure_topic, KafkaConfig, KafkaRecord, KafkaSource};
    use backfill_sql::{SqlPublisher, SqlSink, SqlStore};

    let Some(brokers) =
        backfill_testkit::services::service("BACKFILL_TEST_KAFKA_BROKERS", "a Kafka broker")
    else {
        return;
    };
    let config = KafkaConfig::new(&brokers).timeout(std::time::Duration::from_secs(20));
    let topic = format!("shop.public.customers.{}", std::process::id());
    ensure_topic(&config, &topic, 1, 1).await.unwrap();
    let lines: String = topic_messages()
        .into_iter()
        .map(|(id, value)| {
            let value = value
                .map(|v| String::from_utf8(v).unwrap())
                .unwrap_or_default();
            format!("{}\t{value}\n", json!({ "id": id }))
        })
        .collect();
    kcat_produce(&brokers, &topic, &lines);
    let n = topic_messages().len() as i64;

    // The fold of the whole topic from an empty target: what the merge must leave.
    let expected: BTreeMap<i64, (String, i64)> = rows_of(
        replay(decode_topic(), &PositionRange::all())
            .into_iter()
            .filter(|s| !s.is_deleted())
            .map(ChangeRow::from),
    )
    .into_iter()
    .map(|c| (c.id, (c.email, c.version)))
    .collect();
    assert_eq!(expected.len(), 3, "{expected:?}");

    for engine in common::engines() {
        let e = engine.name;
        let ns = engine.namespace("cdc_broker");
        let pool = ns.pool().await;
        let store = Arc::new(SqlStore::new(pool.clone()).await.unwrap());
        let sink = Arc::new(
            SqlSink::<Customer>::new(pool.clone(), TARGET)
                .await
                .unwrap(),
        );
        let publisher = Arc::new(
            SqlPublisher::<Customer>::new(pool.clone(), TARGET)
                .await
                .unwrap(),
        );
        let control = Control::new(store)
            .with_target(Arc::clone(&publisher) as Arc<dyn Publisher>)
            .unwrap();
        // Tombstones repeat the delete before them (Debezium writes one after every delete, for
        // compaction); positioned by the source log, a delete carries the fact and its version.
        let source = KafkaSource::new(config.clone())
            .chunk_offsets(5)
            .decoded(|r: KafkaRecord| {
                if r.is_tombstone() {
                    return Ok(None);
                }
                let at = KafkaCoordinates::new(r.topic.as_str(), r.partition, r.offset);
                ChangeDecoder::new()
                    .decode::<Image>(r.key.as_deref(), r.value.as_deref(), Some(&at))
                    .map(Some)
                    .map_err(|e| Error::adapter("cdc", e))
            });
        let executor = Executor::builder(
            control.clone(),
            Arc::new(source),
            Arc::new(ChangeToRow),
            sink,
            publisher,
        )
        .options(RunnerOptions::worker("cdc-broker"))
        .build();
        let mut m = manifest("bf-cdc-broker", TARGET, merge_with_deletes(), &[]);
        m.reason = "replay the customers change stream".into();
        m.requested_by = "crm-data".into();
        m.source = SourceSpec {
            kind: "kafka".into(),
            name: topic.clone(),
            range: Some(InputRange::Offsets {
                partitions: vec![OffsetRange {
                    partition: 0,
                    from: 0,
                    to_exclusive: n,
                }],
            }),
            ..SourceSpec::default()
        };
        m.transform.name = "customers-cdc".into();
        m.transform.version = "1.0.0".into();
        m.validation = Some(ValidationPlan {
            checksum_required: true,
            ..Default::default()
        });
        let approved = m.approve("crm-owner", publishing::at()).unwrap();
        control.submit(&approved).await.unwrap();
        let report = executor.run(approved.run_id()).await.unwrap();
        assert_eq!(report.state, RunState::Published, "{e}: {report:?}");
        assert!(
            report.chunks_total >= 4,
            "{e}: {} chunks",
            report.chunks_total
        );
        let parts: Parts<Customer> = Parts::of(pool, TARGET).await;
        assert_eq!(target(&parts).await, expected, "{e}");
        if e == "sqlite" {
            assert_eq!(
                sqlite3_reads(&ns.url),
                "2|b@new|1200\n4|d@x|1000\n5|e@back|1100\n"
            );
        }
        ns.drop().await;
    }
}

/// One change, one target row (a delete as a delete marker); tombstones add nothing.
#[derive(Debug)]
struct ChangeToRow;

impl DeterministicTransform for ChangeToRow {
    type Input = Option<ChangeRecord<Image>>;
    type Output = Customer;
    fn name(&self) -> &str {
        "customers-cdc"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    fn apply(
        &self,
        change: &Option<ChangeRecord<Image>>,
        _: &TransformContext,
        out: &mut Vec<Customer>,
    ) -> Result<(), TransformError> {
        if let Some(c) = change {
            let image = c.state().or(c.before.as_ref()).cloned();
            out.push(to_row(ChangeRow {
                key: c.key.clone(),
                row: image,
                deleted: c.is_delete(),
                version: c.version,
            }));
        }
        Ok(())
    }
}

/// Writes `key<TAB>value` lines to partition 0 with kcat, empty values as null (tombstones).
fn kcat_produce(brokers: &str, topic: &str, lines: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("kcat")
        .args([
            "-P", "-b", brokers, "-t", topic, "-p", "0", "-K", "\t", "-Z",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("kcat must be installed (scripts/test.sh installs Debian's kcat)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "kcat -P failed");
}
