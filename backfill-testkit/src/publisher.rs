//! Checks of the [`Publisher`] contract (backfill-core `publish.rs`, clauses 1–6).

use std::sync::Arc;

use backfill_core::context::ExecutionMode;
use backfill_core::digest::PartitionDigests;
use backfill_core::ids::{PartitionKey, RunId};
use backfill_core::manifest::{Mutation, RunKind, RunManifest};
use backfill_core::publish::{PublishReceipt, PublishRequest, Publisher, RollbackRequest};
use backfill_core::sink::StagingSink;
use chrono::{TimeZone, Utc};
use futures::stream::TryStreamExt;

use crate::conformance::{
    ensure, finish, op, suite, unknown, CheckResult, PublisherHarness, TestRow,
};
use crate::sink::{rows, stage};

type Pair = (Arc<dyn StagingSink<TestRow>>, Arc<dyn Publisher<TestRow>>);

suite!(PublisherHarness, Pair, &Pair, |h, ns| build(h, ns), |b| b;
    publish_makes_staged_rows_visible,
    publish_is_idempotent,
    replace_leaves_other_partitions_untouched,
    inspect_answers_after_publish,
    staged_rows_are_invisible_before_publish,
    rollback_restores_the_previous_run,
);

/// The suite publishes with replace-partitions; a publisher without it cannot pass.
async fn build<H: PublisherHarness + ?Sized>(h: &H, ns: &str) -> backfill_core::Result<Pair> {
    if !h.mutations().contains(&Mutation::ReplacePartitions) {
        return Err(backfill_core::Error::NotSupported {
            adapter: "testkit",
            operation: "replace_partitions (the publisher suite publishes with it)",
        });
    }
    h.build(ns).await
}

fn manifest(run: &str, partitions: &[&str]) -> RunManifest {
    let mut m = RunManifest::new(run, RunKind::Restatement, ExecutionMode::Backfill);
    m.target.name = "testkit_target".into();
    m.target.mutation = Some(Mutation::ReplacePartitions);
    m.target.partitions = partitions.iter().map(|p| PartitionKey::from(*p)).collect();
    m
}

const ALL: [&str; 3] = ["2025-01", "2025-02", "2025-03"];

async fn publish(
    p: &Pair,
    m: &RunManifest,
    previous: Option<&RunId>,
) -> backfill_core::Result<PublishReceipt> {
    let digests = PartitionDigests::default();
    let at = Utc
        .with_ymd_and_hms(2026, 7, 4, 9, 0, 0)
        .single()
        .unwrap_or_default();
    let req = PublishRequest {
        run_id: &m.run_id,
        manifest: m,
        digests: &digests,
        previous,
        at,
    };
    p.1.publish(req, p.0.as_ref()).await
}

async fn visible(p: &Pair, partition: &str) -> backfill_core::Result<Vec<TestRow>> {
    let key = PartitionKey::from(partition);
    let mut v: Vec<TestRow> = p.1.read_current(&key).try_concat().await?;
    v.sort();
    Ok(v)
}

fn of(rows: &[TestRow], partition: &str) -> Vec<TestRow> {
    let mut v: Vec<TestRow> = rows
        .iter()
        .filter(|r| r.partition == partition)
        .cloned()
        .collect();
    v.sort();
    v
}

async fn stage_and_publish(
    p: &Pair,
    run: &str,
    partitions: &[&str],
    data: &[TestRow],
    previous: Option<&RunId>,
) -> Result<PublishReceipt, crate::ConformanceFailure> {
    const C: &str = "publish (setup)";
    let m = manifest(run, partitions);
    let data: Vec<TestRow> = data
        .iter()
        .filter(|r| partitions.contains(&r.partition.as_str()))
        .cloned()
        .collect();
    op(
        C,
        "stage",
        stage(p.0.as_ref(), &m.run_id, "c0", 1, data, 50).await,
    )?;
    op(C, "publish", publish(p, &m, previous).await)
}

/// Clauses 1 and 6: after publish, each partition shows exactly the staged rows.
pub async fn publish_makes_staged_rows_visible(p: &Pair) -> CheckResult {
    const C: &str = "publish_makes_staged_rows_visible";
    let data = rows(90, 1);
    let receipt = stage_and_publish(p, "bf-p1", &ALL, &data, None).await?;
    ensure(
        receipt.rows == 90,
        C,
        "the receipt counts the rows made visible",
        || format!("{receipt:?}"),
    )?;
    for part in ALL {
        let got = op(C, "read_current", visible(p, part).await)?;
        ensure(
            got == of(&data, part),
            C,
            "publish makes all of the staged rows visible",
            || {
                format!(
                    "{part}: {} rows visible, {} staged",
                    got.len(),
                    of(&data, part).len()
                )
            },
        )?;
    }
    Ok(())
}

/// Clause 2: publishing the same run again returns the original receipt and changes nothing.
pub async fn publish_is_idempotent(p: &Pair) -> CheckResult {
    const C: &str = "publish_is_idempotent";
    const CLAUSE: &str = "publish is idempotent per run";
    let data = rows(60, 2);
    let first = stage_and_publish(p, "bf-p2", &ALL, &data, None).await?;
    let m = manifest("bf-p2", &ALL);
    let second = op(C, "publish again", publish(p, &m, None).await)?;
    ensure(second == first, C, CLAUSE, || {
        format!("second receipt {second:?} differs from {first:?}")
    })?;
    for part in ALL {
        let got = op(C, "read_current", visible(p, part).await)?;
        ensure(got == of(&data, part), C, CLAUSE, || {
            format!("{part}: {} rows after the second publish", got.len())
        })?;
    }
    Ok(())
}

/// Clause 3: replacing two partitions leaves the third exactly as it was.
pub async fn replace_leaves_other_partitions_untouched(p: &Pair) -> CheckResult {
    const C: &str = "replace_leaves_other_partitions_untouched";
    let v1 = rows(90, 3);
    stage_and_publish(p, "bf-p3a", &ALL, &v1, None).await?;
    let before = op(C, "read_current", visible(p, "2025-03").await)?;
    let v2 = rows(45, 4);
    stage_and_publish(
        p,
        "bf-p3b",
        &["2025-01", "2025-02"],
        &v2,
        Some(&"bf-p3a".into()),
    )
    .await?;
    let after = op(C, "read_current", visible(p, "2025-03").await)?;
    ensure(
        after == before,
        C,
        "publish changes only the run's partitions",
        || "a partition outside the manifest changed".into(),
    )?;
    let jan = op(C, "read_current", visible(p, "2025-01").await)?;
    ensure(
        jan == of(&v2, "2025-01"),
        C,
        "replaced partitions hold exactly the new rows",
        || format!("{} rows in 2025-01", jan.len()),
    )
}

/// Clause 4: inspect answers None before and the receipt after.
pub async fn inspect_answers_after_publish(p: &Pair) -> CheckResult {
    const C: &str = "inspect_answers_after_publish";
    const CLAUSE: &str = "inspect answers whether a run published";
    let before = op(C, "inspect", p.1.inspect(&"bf-p4".into()).await)?;
    ensure(before.is_none(), C, CLAUSE, || {
        format!("{before:?} before publishing")
    })?;
    let receipt = stage_and_publish(p, "bf-p4", &ALL, &rows(9, 5), None).await?;
    let after = op(C, "inspect", p.1.inspect(&"bf-p4".into()).await)?;
    ensure(after.as_ref() == Some(&receipt), C, CLAUSE, || {
        format!("{after:?}")
    })
}

/// Staged rows are not visible to readers before publication.
pub async fn staged_rows_are_invisible_before_publish(p: &Pair) -> CheckResult {
    const C: &str = "staged_rows_are_invisible_before_publish";
    let v1 = rows(30, 6);
    stage_and_publish(p, "bf-p5a", &ALL, &v1, None).await?;
    op(
        C,
        "stage",
        stage(p.0.as_ref(), &"bf-p5b".into(), "c0", 1, rows(30, 7), 10).await,
    )?;
    for part in ALL {
        let got = op(C, "read_current", visible(p, part).await)?;
        ensure(
            got == of(&v1, part),
            C,
            "staged rows are never visible before publish",
            || format!("{part} changed before publish"),
        )?;
    }
    Ok(())
}

/// Clause 5: rolling back restores the earlier run's rows and keeps its receipt.
pub async fn rollback_restores_the_previous_run(p: &Pair) -> CheckResult {
    const C: &str = "rollback_restores_the_previous_run";
    const CLAUSE: &str = "rollback makes the earlier run's output visible again";
    let v1 = rows(60, 8);
    let r1 = stage_and_publish(p, "bf-p6a", &ALL, &v1, None).await?;
    let v2 = rows(40, 9);
    stage_and_publish(
        p,
        "bf-p6b",
        &["2025-01", "2025-02"],
        &v2,
        Some(&"bf-p6a".into()),
    )
    .await?;
    let m2 = manifest("bf-p6b", &["2025-01", "2025-02"]);
    let at = Utc
        .with_ymd_and_hms(2026, 7, 5, 9, 0, 0)
        .single()
        .unwrap_or_default();
    op(
        C,
        "rollback",
        p.1.rollback(RollbackRequest {
            from: &"bf-p6b".into(),
            to: &"bf-p6a".into(),
            manifest: &m2,
            at,
        })
        .await,
    )?;
    for part in ALL {
        let got = op(C, "read_current", visible(p, part).await)?;
        ensure(got == of(&v1, part), C, CLAUSE, || {
            format!(
                "{part}: {} rows after rollback, expected {}",
                got.len(),
                of(&v1, part).len()
            )
        })?;
    }
    let still = op(C, "inspect", p.1.inspect(&"bf-p6a".into()).await)?;
    ensure(
        still.as_ref() == Some(&r1),
        C,
        "inspect(to) still answers after a rollback",
        || format!("{still:?}"),
    )
}
