//! What the publisher tests share: a row type, manifests, staging through the sink (collecting the
//! artifacts a publish request carries) and reading back what readers see.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::clone_on_ref_ptr)]

pub mod faults;

use std::borrow::Cow;

use backfill_core::digest::{OutputRow, PartitionDigests};
use backfill_core::manifest::SideEffectPolicy;
use backfill_core::prelude::*;
use backfill_core::publish::{ChunkArtifact, PublishRequest, RollbackRequest};
use backfill_core::sink::StageRequest;
use backfill_sql::{Column, SqlPool, SqlPublisher, SqlRow, SqlSink, SqlType};
use chrono::{DateTime, TimeZone, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sla {
    pub case_id: String,
    pub month: String,
    pub breached: bool,
    pub version: i64,
    pub note: Option<String>,
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

/// `per` cases in each month, all at `version`.
pub fn rows(months: &[&str], per: usize, version: i64, breached_every: usize) -> Vec<Sla> {
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

pub fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 4, 9, 0, 0).unwrap()
}

/// The merge mutation the tests use.
pub fn merge() -> Mutation {
    Mutation::MergeByKey {
        key: vec!["case_id".into(), "month".into()],
        version_column: "version".into(),
        delete_column: None,
    }
}

/// Every mutation the SQL publisher supports.
pub fn mutations() -> Vec<Mutation> {
    vec![
        Mutation::ReplacePartitions,
        merge(),
        Mutation::AppendWithRunId,
        Mutation::ShadowSwap,
        Mutation::VersionedOutput,
    ]
}

/// Passes rows through (the executor's transform in these tests).
#[derive(Debug)]
pub struct Pass;

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

/// A manifest an [`Executor`] runs with [`Pass`] over `n` input records (offsets `0..n`).
pub fn run_manifest(
    run: &str,
    target: &str,
    mutation: Mutation,
    partitions: &[&str],
    n: u64,
) -> RunManifest {
    let mut m = manifest(run, target, mutation, partitions);
    m.reason = "restate".into();
    m.requested_by = "alice".into();
    m.source = SourceSpec {
        kind: "memory".into(),
        name: "in".into(),
        snapshot: Some("memory".into()),
        range: Some(InputRange::Offsets {
            partitions: vec![backfill_core::manifest::OffsetRange {
                partition: 0,
                from: 0,
                to_exclusive: i64::try_from(n).unwrap(),
            }],
        }),
        ..SourceSpec::default()
    };
    m.transform.name = "pass".into();
    m.transform.version = "1.0.0".into();
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        ..Default::default()
    });
    m
}

pub fn manifest(run: &str, target: &str, mutation: Mutation, partitions: &[&str]) -> RunManifest {
    let mut m = RunManifest::new(run, RunKind::Restatement, ExecutionMode::Backfill);
    m.target.name = target.into();
    m.target.mutation = Some(mutation);
    m.target.partitions = partitions.iter().map(|p| PartitionKey::from(*p)).collect();
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m
}

/// A sink and a publisher for one target, of rows `R`.
#[derive(Debug)]
pub struct Parts<R = Sla> {
    pub pool: SqlPool,
    pub sink: SqlSink<R>,
    pub publisher: SqlPublisher<R>,
}

impl Parts<Sla> {
    pub async fn new(pool: SqlPool, target: &str) -> Self {
        Self::of(pool, target).await
    }

    /// What readers see in a partition, by case.
    pub async fn current(&self, p: &str) -> Vec<Sla> {
        let mut v = self.read(p).await;
        v.sort_by(|a, b| (&a.case_id, a.version).cmp(&(&b.case_id, b.version)));
        v
    }
}

impl<R: SqlRow> Parts<R> {
    /// Parts for any row type.
    pub async fn of(pool: SqlPool, target: &str) -> Self {
        Self {
            sink: SqlSink::new(pool.clone(), target).await.unwrap(),
            publisher: SqlPublisher::new(pool.clone(), target).await.unwrap(),
            pool,
        }
    }

    /// What readers see in a partition, in the order the database returns it.
    pub async fn read(&self, p: &str) -> Vec<R> {
        let key = PartitionKey::from(p);
        self.publisher
            .read_current(&key)
            .try_concat()
            .await
            .unwrap()
    }

    /// Stages `rows` in two chunks and returns the artifacts a publish request carries.
    pub async fn stage(&self, run_id: &RunId, rows: Vec<R>) -> Vec<ChunkArtifact> {
        let ctx = TransformContext::fixed(run_id.clone(), ExecutionMode::Backfill, at());
        let half = rows.len() / 2;
        let mut out = Vec::new();
        for (i, part) in [rows[..half].to_vec(), rows[half..].to_vec()]
            .into_iter()
            .enumerate()
        {
            let chunk = ChunkId::from(format!("c{i}").as_str());
            let receipt = self
                .sink
                .stage(
                    StageRequest {
                        run_id,
                        chunk_id: &chunk,
                        attempt: 1,
                        lineage: ctx.lineage(),
                    },
                    stream::iter([Ok(part)]).boxed(),
                )
                .await
                .unwrap();
            out.push(ChunkArtifact {
                chunk_id: chunk,
                attempt: 1,
                rows: receipt.rows,
                artifact: receipt.artifact,
            });
        }
        out
    }

    /// Publishes staged artifacts.
    pub async fn publish_staged(
        &self,
        m: &RunManifest,
        artifacts: &[ChunkArtifact],
        digests: &PartitionDigests,
        previous: Option<&RunId>,
    ) -> Result<PublishReceipt, Error> {
        self.publisher
            .publish(PublishRequest {
                run_id: &m.run_id,
                manifest: m,
                digests,
                artifacts,
                previous,
                at: at(),
            })
            .await
    }

    /// Stages and publishes.
    pub async fn stage_and_publish(
        &self,
        m: &RunManifest,
        rows: Vec<R>,
        previous: Option<&RunId>,
    ) -> PublishReceipt {
        let digests = PartitionDigests::of_rows(&rows);
        let artifacts = self.stage(&m.run_id, rows).await;
        self.publish_staged(m, &artifacts, &digests, previous)
            .await
            .unwrap()
    }

    pub async fn rollback(&self, from: &RunManifest, to: &RunId) -> Result<PublishReceipt, Error> {
        self.publisher
            .rollback(RollbackRequest {
                from: &from.run_id,
                to,
                manifest: from,
                at: at(),
            })
            .await
    }

    /// The run the target's own pointer names.
    pub async fn pointer(&self) -> Option<String> {
        pointer(&self.pool, &self.publisher.target().to_string()).await
    }
}

/// The run `bf_target_pointers` names for a target.
pub async fn pointer(pool: &SqlPool, target: &str) -> Option<String> {
    let sql = match pool {
        SqlPool::Postgres(_) => "SELECT run_id FROM bf_target_pointers WHERE target = $1",
        _ => "SELECT run_id FROM bf_target_pointers WHERE target = ?",
    };
    match pool {
        SqlPool::Postgres(p) => sqlx::query_scalar(sql).bind(target).fetch_optional(p).await,
        SqlPool::MySql(p) => sqlx::query_scalar(sql).bind(target).fetch_optional(p).await,
        SqlPool::Sqlite(p) => sqlx::query_scalar(sql).bind(target).fetch_optional(p).await,
    }
    .unwrap()
}

/// Runs one statement (test setup and fault simulation).
pub async fn exec(pool: &SqlPool, sql: &str) {
    match pool {
        SqlPool::Postgres(p) => sqlx::query(sql).execute(p).await.map(drop),
        SqlPool::MySql(p) => sqlx::query(sql).execute(p).await.map(drop),
        SqlPool::Sqlite(p) => sqlx::query(sql).execute(p).await.map(drop),
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The SQL of a view readers query, as the engine's catalog keeps it.
pub async fn view_sql(pool: &SqlPool, view: &str) -> Option<String> {
    match pool {
        SqlPool::Postgres(p) => sqlx::query_scalar(
            "SELECT pg_get_viewdef(to_regclass($1))",
        )
        .bind(view)
        .fetch_optional(p)
        .await
        .unwrap()
        .flatten(),
        SqlPool::MySql(p) => sqlx::query_scalar(
            "SELECT VIEW_DEFINITION FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
        )
        .bind(view)
        .fetch_optional(p)
        .await
        .unwrap(),
        SqlPool::Sqlite(p) => sqlx::query_scalar(
            "SELECT sql FROM sqlite_master WHERE type = 'view' AND name = ?",
        )
        .bind(view)
        .fetch_optional(p)
        .await
        .unwrap(),
    }
}

/// Redefines `view` to show the table it showed when `definition` was read: what a crash between
/// the publishing transaction and the view switch leaves behind on MySQL/MariaDB.
pub async fn restore_view(pool: &SqlPool, view: &str, definition: &str) {
    let (q, body) = match pool {
        SqlPool::MySql(_) => (format!("`{view}`"), definition.to_owned()),
        SqlPool::Postgres(_) => (
            format!("\"{view}\""),
            definition.trim_end_matches(';').to_owned(),
        ),
        SqlPool::Sqlite(_) => {
            let body = definition
                .split_once(" AS ")
                .map(|(_, b)| b.to_owned())
                .expect("a CREATE VIEW statement");
            (format!("\"{view}\""), body)
        }
    };
    match pool {
        SqlPool::Sqlite(_) => {
            exec(pool, &format!("DROP VIEW {q}")).await;
            exec(pool, &format!("CREATE VIEW {q} AS {body}")).await;
        }
        _ => exec(pool, &format!("CREATE OR REPLACE VIEW {q} AS {body}")).await,
    }
}

/// The view readers query for a mutation of `target`, if it is a view.
pub fn view_of(target: &str, mutation: &Mutation) -> Option<String> {
    match mutation {
        Mutation::ShadowSwap => Some(target.to_owned()),
        Mutation::VersionedOutput => Some(format!("{target}_current")),
        _ => None,
    }
}
