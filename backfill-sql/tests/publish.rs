//! Publishers on every engine: replace partitions, merge by version, append, shadow swap, rollback.
#![allow(clippy::clone_on_ref_ptr)]

mod common;

use std::borrow::Cow;
use std::sync::Arc;

use backfill_core::digest::{OutputRow, PartitionDigests};
use backfill_core::manifest::SideEffectPolicy;
use backfill_core::prelude::*;
use backfill_core::publish::{PublishRequest, RollbackRequest};
use backfill_core::sink::StageRequest;
use backfill_sql::{Column, SqlPool, SqlPublisher, SqlRow, SqlSink, SqlStore, SqlType};
use chrono::{TimeZone, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Sla {
    case_id: String,
    month: String,
    breached: bool,
    version: i64,
    note: Option<String>,
}

impl OutputRow for Sla {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

impl SqlRow for Sla {
    const COLUMNS: &'static [Column] = &[
        Column::new("case_id", SqlType::Text),
        Column::new("month", SqlType::Text),
        Column::new("breached", SqlType::Boolean),
        Column::new("version", SqlType::BigInt),
        Column::nullable("note", SqlType::Text),
    ];
    const PARTITION_COLUMN: &'static str = "month";
}

fn rows(months: &[&str], per: usize, version: i64, breached_every: usize) -> Vec<Sla> {
    let mut v = Vec::new();
    for m in months {
        for i in 0..per {
            v.push(Sla {
                case_id: format!("C-{i:04}"),
                month: (*m).to_owned(),
                breached: i % breached_every == 0,
                version,
                note: (i % 2 == 0).then(|| format!("v{version}")),
            });
        }
    }
    v
}

fn at() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 4, 9, 0, 0).unwrap()
}

fn manifest(run: &str, mutation: Mutation, partitions: &[&str]) -> RunManifest {
    let mut m = RunManifest::new(run, RunKind::Restatement, ExecutionMode::Backfill);
    m.target.name = "case_sla_daily".into();
    m.target.mutation = Some(mutation);
    m.target.partitions = partitions.iter().map(|p| PartitionKey::from(*p)).collect();
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m
}

struct Parts {
    sink: SqlSink<Sla>,
    publisher: SqlPublisher<Sla>,
}

impl Parts {
    async fn new(pool: SqlPool) -> Self {
        Self {
            sink: SqlSink::new(pool.clone(), "case_sla_daily").await.unwrap(),
            publisher: SqlPublisher::new(pool, "case_sla_daily").await.unwrap(),
        }
    }

    async fn stage_and_publish(
        &self,
        m: &RunManifest,
        rows: Vec<Sla>,
        previous: Option<&RunId>,
    ) -> PublishReceipt {
        let ctx = TransformContext::fixed(m.run_id.clone(), ExecutionMode::Backfill, at());
        let chunk = ChunkId::from("c0");
        self.sink
            .stage(
                StageRequest {
                    run_id: &m.run_id,
                    chunk_id: &chunk,
                    attempt: 1,
                    lineage: ctx.lineage(),
                },
                stream::iter([Ok(rows)]).boxed(),
            )
            .await
            .unwrap();
        let digests = PartitionDigests::default();
        let req = PublishRequest {
            run_id: &m.run_id,
            manifest: m,
            digests: &digests,
            previous,
            at: at(),
        };
        self.publisher.publish(req, &self.sink).await.unwrap()
    }

    async fn current(&self, p: &str) -> Vec<Sla> {
        let key = PartitionKey::from(p);
        let mut v: Vec<Sla> = self
            .publisher
            .read_current(&key)
            .try_concat()
            .await
            .unwrap();
        v.sort_by(|a, b| a.case_id.cmp(&b.case_id));
        v
    }
}

#[tokio::test]
async fn replace_partitions_touches_only_the_manifests_partitions_and_rolls_back() {
    for engine in common::engines() {
        let ns = engine.namespace("replace");
        let parts = Parts::new(ns.pool().await).await;
        let all = ["2024-12", "2025-01", "2025-02", "2025-03"];
        let v1 = manifest("bf-v1", Mutation::ReplacePartitions, &all);
        let r1 = parts
            .stage_and_publish(&v1, rows(&all, 50, 1, 3), None)
            .await;
        assert_eq!(r1.rows, 200, "{}", engine.name);
        let before_dec = parts.current("2024-12").await;
        let before_mar = parts.current("2025-03").await;

        // v2 restates Jan and Feb only.
        let v2 = manifest(
            "bf-v2",
            Mutation::ReplacePartitions,
            &["2025-01", "2025-02"],
        );
        let r2 = parts
            .stage_and_publish(
                &v2,
                rows(&["2025-01", "2025-02"], 40, 2, 4),
                Some(&v1.run_id),
            )
            .await;
        assert_eq!(r2.partitions.len(), 2);
        assert_eq!(
            parts.current("2025-01").await,
            rows(&["2025-01"], 40, 2, 4),
            "{}",
            engine.name
        );
        assert_eq!(
            parts.current("2024-12").await,
            before_dec,
            "{}: untouched partition changed",
            engine.name
        );
        assert_eq!(
            parts.current("2025-03").await,
            before_mar,
            "{}: untouched partition changed",
            engine.name
        );

        // Idempotent: the same receipt, nothing changes.
        let again = parts
            .stage_and_publish(&v2, rows(&["2025-01"], 1, 9, 1), Some(&v1.run_id))
            .await;
        assert_eq!(again, r2);
        assert_eq!(parts.current("2025-01").await.len(), 40);
        assert_eq!(
            parts.publisher.inspect(&v2.run_id).await.unwrap(),
            Some(r2.clone())
        );
        assert_eq!(
            parts.publisher.inspect(&"bf-none".into()).await.unwrap(),
            None
        );

        // Rollback to anything but the replaced run is refused; to it, restores v1 exactly.
        let bad = parts
            .publisher
            .rollback(RollbackRequest {
                from: &v2.run_id,
                to: &"bf-none".into(),
                manifest: &v2,
                at: at(),
            })
            .await;
        assert!(bad.is_err());
        parts
            .publisher
            .rollback(RollbackRequest {
                from: &v2.run_id,
                to: &v1.run_id,
                manifest: &v2,
                at: at(),
            })
            .await
            .unwrap();
        assert_eq!(
            parts.current("2025-01").await,
            rows(&["2025-01"], 50, 1, 3),
            "{}",
            engine.name
        );
        assert_eq!(parts.current("2025-02").await, rows(&["2025-02"], 50, 1, 3));
        assert_eq!(parts.current("2024-12").await, before_dec);
        ns.drop().await;
    }
}

#[tokio::test]
async fn merge_never_lets_a_stale_version_win() {
    for engine in common::engines() {
        let ns = engine.namespace("merge");
        let parts = Parts::new(ns.pool().await).await;
        let merge = Mutation::MergeByKey {
            key: vec!["case_id".into()],
            version_column: "version".into(),
        };
        let v5 = manifest("bf-m5", merge.clone(), &[]);
        parts
            .stage_and_publish(&v5, rows(&["2025-01"], 10, 5, 2), None)
            .await;
        // An older version for half the keys plus new keys.
        let mut stale = rows(&["2025-01"], 5, 3, 1);
        stale.push(Sla {
            case_id: "C-0100".into(),
            month: "2025-01".into(),
            breached: true,
            version: 3,
            note: None,
        });
        let v3 = manifest("bf-m3", merge.clone(), &[]);
        parts.stage_and_publish(&v3, stale, Some(&v5.run_id)).await;
        let now = parts.current("2025-01").await;
        assert_eq!(now.len(), 11, "{}", engine.name);
        for r in now.iter().filter(|r| r.case_id != "C-0100") {
            assert_eq!(
                r.version, 5,
                "{}: stale version won for {}",
                engine.name, r.case_id
            );
        }
        // A newer version wins.
        let v7 = manifest("bf-m7", merge.clone(), &[]);
        parts
            .stage_and_publish(&v7, rows(&["2025-01"], 2, 7, 1), Some(&v3.run_id))
            .await;
        let now = parts.current("2025-01").await;
        assert_eq!(
            now.iter().filter(|r| r.version == 7).count(),
            2,
            "{}",
            engine.name
        );
        assert!(now.iter().filter(|r| r.version == 7).all(|r| r.breached));
        // Rolling back v7 restores exactly what it overwrote.
        parts
            .publisher
            .rollback(RollbackRequest {
                from: &v7.run_id,
                to: &v3.run_id,
                manifest: &v7,
                at: at(),
            })
            .await
            .unwrap();
        assert!(
            parts
                .current("2025-01")
                .await
                .iter()
                .all(|r| r.version != 7),
            "{}",
            engine.name
        );
        ns.drop().await;
    }
}

#[tokio::test]
async fn append_and_shadow_swap_expose_only_the_accepted_run() {
    for engine in common::engines() {
        let ns = engine.namespace("views");
        let pool = ns.pool().await;
        for mutation in [
            Mutation::AppendWithRunId,
            Mutation::ShadowSwap,
            Mutation::VersionedOutput,
        ] {
            let target = format!("t_{}", mutation.name());
            let sink = SqlSink::<Sla>::new(pool.clone(), &target).await.unwrap();
            let publisher = SqlPublisher::<Sla>::new(pool.clone(), &target)
                .await
                .unwrap();
            let parts = Parts { sink, publisher };
            let mut a = manifest("bf-a", mutation.clone(), &[]);
            a.target.name = target.clone();
            parts
                .stage_and_publish(&a, rows(&["2025-01"], 3, 1, 1), None)
                .await;
            let mut b = manifest("bf-b", mutation.clone(), &[]);
            b.target.name = target.clone();
            parts
                .stage_and_publish(&b, rows(&["2025-01"], 4, 2, 1), Some(&a.run_id))
                .await;
            let now = parts.current("2025-01").await;
            assert_eq!(now.len(), 4, "{} {}", engine.name, mutation.name());
            assert!(now.iter().all(|r| r.version == 2));
            parts
                .publisher
                .rollback(RollbackRequest {
                    from: &b.run_id,
                    to: &a.run_id,
                    manifest: &b,
                    at: at(),
                })
                .await
                .unwrap();
            let now = parts.current("2025-01").await;
            assert_eq!(now.len(), 3, "{} {}", engine.name, mutation.name());
            assert!(now.iter().all(|r| r.version == 1));
        }
        ns.drop().await;
    }
}

#[derive(Debug)]
struct Pass;
impl DeterministicTransform for Pass {
    type Input = Sla;
    type Output = Sla;
    fn name(&self) -> &str {
        "pass"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    fn apply(
        &self,
        i: &Sla,
        _: &TransformContext,
        out: &mut Vec<Sla>,
    ) -> Result<(), TransformError> {
        out.push(i.clone());
        Ok(())
    }
}

#[tokio::test]
async fn runner_end_to_end_on_sql_store_sink_and_publisher() {
    for engine in common::engines() {
        let ns = engine.namespace("e2e");
        let pool = ns.pool().await;
        let store = Arc::new(SqlStore::new(pool.clone()).await.unwrap());
        let sink = Arc::new(
            SqlSink::<Sla>::new(pool.clone(), "case_sla_daily")
                .await
                .unwrap(),
        );
        let publisher = Arc::new(
            SqlPublisher::<Sla>::new(pool.clone(), "case_sla_daily")
                .await
                .unwrap(),
        );
        let input = rows(&["2025-01", "2025-02", "2025-03"], 30, 1, 3);
        let runner = Runner::builder(
            store.clone(),
            Arc::new(backfill_core::memory::MemorySource::by_offset(
                input.clone(),
                20,
            )),
            Arc::new(Pass),
            sink.clone(),
            publisher.clone(),
        )
        .clock(Arc::new(FixedClock(at())))
        .build();
        let mut m = manifest(
            "bf-e2e",
            Mutation::ReplacePartitions,
            &["2025-01", "2025-02", "2025-03"],
        );
        m.reason = "e2e".into();
        m.requested_by = "alice".into();
        m.source = SourceSpec {
            kind: "memory".into(),
            name: "in".into(),
            snapshot: Some("s".into()),
            range: Some(InputRange::Offsets {
                partitions: vec![backfill_core::manifest::OffsetRange {
                    partition: 0,
                    from: 0,
                    to_exclusive: 90,
                }],
            }),
        };
        m.transform.name = "pass".into();
        m.transform.version = "1.0.0".into();
        m.validation = Some(ValidationPlan {
            checksum_required: true,
            ..Default::default()
        });
        let approved = m.approve("bob", at()).unwrap();
        runner.submit(&approved).await.unwrap();
        let report = runner.run(approved.run_id()).await.unwrap();
        assert_eq!(report.state, RunState::Published, "{}", engine.name);
        assert_eq!(report.chunks_total, 5);
        assert!(report
            .validations
            .iter()
            .all(|v| v.verdict == Verdict::Pass));
        let visible: Vec<Sla> = [
            parts_current(&publisher, "2025-01").await,
            parts_current(&publisher, "2025-02").await,
            parts_current(&publisher, "2025-03").await,
        ]
        .concat();
        assert_eq!(
            PartitionDigests::of_rows(&visible),
            report.digests,
            "{}",
            engine.name
        );
        ns.drop().await;
    }
}

async fn parts_current(p: &SqlPublisher<Sla>, part: &str) -> Vec<Sla> {
    let key = PartitionKey::from(part);
    p.read_current(&key).try_concat().await.unwrap()
}
