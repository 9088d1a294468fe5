//! Checks of the [`StagingSink`] contract (backfill-core `sink.rs`, clauses 1–6; clause 7, the
//! artifact, is checked by the [publisher suite](crate::publisher), which publishes from it).

use backfill_core::context::{ExecutionMode, TransformContext};
use backfill_core::digest::PartitionDigests;
use backfill_core::ids::{ChunkId, RunId};
use backfill_core::sink::{StageReceipt, StageRequest, StagingSink};
use backfill_core::ErrorKind;
use chrono::{TimeZone, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::conformance::{ensure, finish, op, suite, unknown, CheckResult, SinkHarness, TestRow};

suite!(SinkHarness, std::sync::Arc<dyn StagingSink<TestRow>>, &dyn StagingSink<TestRow>, |h, ns| h.build(ns), |b| b.as_ref();
    restage_replaces_the_chunk,
    failed_attempt_keeps_previous,
    dropped_attempt_leaves_nothing,
    read_back_is_exact,
    runs_are_isolated,
    discard_is_idempotent,
    stale_attempt_is_fenced,
);

/// `n` rows over three partitions; `salt` changes their values.
pub fn rows(n: usize, salt: i64) -> Vec<TestRow> {
    (0..n)
        .map(|i| TestRow {
            id: format!("r{i:05}-{salt}"),
            partition: format!("2025-0{}", 1 + i % 3),
            key: format!("k{i:05}"),
            value: i as i64 * 7 + salt,
            note: (i % 2 == 0).then(|| format!("note {i} 'quoted' \"double\" ünï")),
        })
        .collect()
}

pub(crate) fn ctx(run: &RunId) -> TransformContext {
    TransformContext::fixed(
        run.clone(),
        ExecutionMode::Backfill,
        Utc.with_ymd_and_hms(2026, 7, 4, 9, 0, 0)
            .single()
            .unwrap_or_default(),
    )
}

/// Stages `rows` in batches of `batch` as attempt `attempt` of `chunk`; returns the receipt.
pub(crate) async fn stage(
    s: &dyn StagingSink<TestRow>,
    run: &RunId,
    chunk: &str,
    attempt: u32,
    rows: Vec<TestRow>,
    batch: usize,
) -> backfill_core::Result<StageReceipt> {
    let ctx = ctx(run);
    let chunk = ChunkId::from(chunk);
    let batches: Vec<_> = rows.chunks(batch.max(1)).map(|b| Ok(b.to_vec())).collect();
    let req = StageRequest {
        run_id: run,
        chunk_id: &chunk,
        attempt,
        lineage: ctx.lineage(),
    };
    s.stage(req, stream::iter(batches).boxed()).await
}

pub(crate) async fn staged(
    s: &dyn StagingSink<TestRow>,
    run: &RunId,
) -> backfill_core::Result<PartitionDigests> {
    let rows: Vec<TestRow> = s.read_staged(run).try_concat().await?;
    Ok(PartitionDigests::of_rows(&rows))
}

/// Clause 1: staging a chunk again replaces it; counts never double.
pub async fn restage_replaces_the_chunk(s: &dyn StagingSink<TestRow>) -> CheckResult {
    const C: &str = "restage_replaces_the_chunk";
    let run = RunId::from("bf-s1");
    op(C, "stage", stage(s, &run, "c0", 1, rows(30, 0), 7).await)?;
    op(C, "stage", stage(s, &run, "c1", 1, rows(5, 9), 7).await)?;
    op(C, "restage", stage(s, &run, "c0", 2, rows(30, 0), 7).await)?;
    let got = op(C, "read", staged(s, &run).await)?;
    let want = PartitionDigests::of_rows(&[rows(30, 0), rows(5, 9)].concat());
    ensure(
        got == want,
        C,
        "stage replaces an earlier attempt of the same chunk, never adds to it",
        || {
            format!(
                "staged {} rows, expected {}",
                got.total_rows(),
                want.total_rows()
            )
        },
    )
}

/// Clause 2: an attempt whose stream fails leaves the previous complete attempt.
pub async fn failed_attempt_keeps_previous(s: &dyn StagingSink<TestRow>) -> CheckResult {
    const C: &str = "failed_attempt_keeps_previous";
    let run = RunId::from("bf-s2");
    op(C, "stage", stage(s, &run, "c0", 1, rows(20, 0), 20).await)?;
    let ctx = ctx(&run);
    let chunk = ChunkId::from("c0");
    let failing = stream::iter([
        Ok(rows(10, 1)),
        Err(backfill_core::Error::transient("testkit", "injected")),
    ])
    .boxed();
    let r = s
        .stage(
            StageRequest {
                run_id: &run,
                chunk_id: &chunk,
                attempt: 2,
                lineage: ctx.lineage(),
            },
            failing,
        )
        .await;
    ensure(
        r.is_err(),
        C,
        "a failed stream fails the stage call",
        || "stage returned Ok".into(),
    )?;
    let other = ChunkId::from("c1");
    let failing = stream::iter([
        Ok(rows(10, 2)),
        Err(backfill_core::Error::transient("testkit", "injected")),
    ])
    .boxed();
    let _ = s
        .stage(
            StageRequest {
                run_id: &run,
                chunk_id: &other,
                attempt: 1,
                lineage: ctx.lineage(),
            },
            failing,
        )
        .await;
    let got = op(C, "read", staged(s, &run).await)?;
    ensure(
        got == PartitionDigests::of_rows(&rows(20, 0)),
        C,
        "a failed attempt leaves nothing of itself visible",
        || {
            format!(
                "{} rows staged after the failed attempts, expected 20",
                got.total_rows()
            )
        },
    )
}

/// Clause 2: a stage future dropped half way leaves nothing partial.
pub async fn dropped_attempt_leaves_nothing(s: &dyn StagingSink<TestRow>) -> CheckResult {
    const C: &str = "dropped_attempt_leaves_nothing";
    let run = RunId::from("bf-s3");
    let ctx = ctx(&run);
    let chunk = ChunkId::from("c0");
    let hanging = stream::iter([Ok(rows(10, 0))])
        .chain(stream::pending())
        .boxed();
    let fut = s.stage(
        StageRequest {
            run_id: &run,
            chunk_id: &chunk,
            attempt: 1,
            lineage: ctx.lineage(),
        },
        hanging,
    );
    let timed_out = tokio::time::timeout(std::time::Duration::from_millis(300), fut)
        .await
        .is_err();
    ensure(
        timed_out,
        C,
        "(setup) the stage call waits for its stream",
        || "stage returned early".into(),
    )?;
    let got = op(C, "read", staged(s, &run).await)?;
    ensure(
        got.total_rows() == 0,
        C,
        "a dropped attempt leaves nothing of itself visible",
        || format!("{} rows visible", got.total_rows()),
    )
}

/// Clause 3: what is read back is exactly what was staged, across several batches and chunks.
pub async fn read_back_is_exact(s: &dyn StagingSink<TestRow>) -> CheckResult {
    const C: &str = "read_back_is_exact";
    let run = RunId::from("bf-s4");
    let (a, b) = (rows(1_000, 3), rows(333, 4));
    let n = op(C, "stage", stage(s, &run, "c0", 1, a.clone(), 97).await)?.rows;
    ensure(n == 1_000, C, "the receipt counts the rows staged", || {
        format!("receipt says {n}")
    })?;
    op(C, "stage", stage(s, &run, "c1", 1, b.clone(), 1_000).await)?;
    let mut got: Vec<TestRow> = op(C, "read", s.read_staged(&run).try_concat().await)?;
    got.sort();
    let mut want = [a, b].concat();
    want.sort();
    ensure(
        got == want,
        C,
        "read_staged returns exactly the rows of each chunk's latest attempt",
        || {
            format!(
                "{} rows read, {} staged; first difference {:?}",
                got.len(),
                want.len(),
                got.iter().zip(&want).find(|(x, y)| x != y)
            )
        },
    )
}

/// Clauses 3 and 5: runs do not see each other's rows.
pub async fn runs_are_isolated(s: &dyn StagingSink<TestRow>) -> CheckResult {
    const C: &str = "runs_are_isolated";
    let (r1, r2) = (RunId::from("bf-s5a"), RunId::from("bf-s5b"));
    op(C, "stage", stage(s, &r1, "c0", 1, rows(10, 0), 10).await)?;
    op(C, "stage", stage(s, &r2, "c0", 1, rows(4, 1), 10).await)?;
    let a = op(C, "read", staged(s, &r1).await)?;
    let b = op(C, "read", staged(s, &r2).await)?;
    ensure(
        a.total_rows() == 10 && b.total_rows() == 4,
        C,
        "staging is scoped by run",
        || format!("{} and {} rows", a.total_rows(), b.total_rows()),
    )
}

/// Clause 5: discard removes a run's rows and is idempotent.
pub async fn discard_is_idempotent(s: &dyn StagingSink<TestRow>) -> CheckResult {
    const C: &str = "discard_is_idempotent";
    let (r1, r2) = (RunId::from("bf-s6a"), RunId::from("bf-s6b"));
    op(C, "stage", stage(s, &r1, "c0", 1, rows(10, 0), 10).await)?;
    op(C, "stage", stage(s, &r2, "c0", 1, rows(3, 0), 10).await)?;
    op(C, "discard", s.discard(&r1).await)?;
    op(C, "discard again", s.discard(&r1).await)?;
    op(C, "discard unknown", s.discard(&"bf-never".into()).await)?;
    let a = op(C, "read", staged(s, &r1).await)?;
    let b = op(C, "read", staged(s, &r2).await)?;
    ensure(
        a.total_rows() == 0 && b.total_rows() == 3,
        C,
        "discard removes exactly one run's rows",
        || format!("{} and {} rows left", a.total_rows(), b.total_rows()),
    )
}

/// Clause 6 (fencing): after attempt 2 staged a chunk, a write by the stale attempt 1 (a worker whose
/// lease expired) fails with [`ErrorKind::Conflict`] and leaves attempt 2's rows; attempt 3 still
/// replaces them.
pub async fn stale_attempt_is_fenced(s: &dyn StagingSink<TestRow>) -> CheckResult {
    const C: &str = "stale_attempt_is_fenced";
    const CLAUSE: &str =
        "stage by an attempt older than one the sink has seen fails with Conflict and changes nothing";
    let run = RunId::from("bf-s7");
    let newer = rows(20, 2);
    op(
        C,
        "stage attempt 2",
        stage(s, &run, "c0", 2, newer.clone(), 6).await,
    )?;
    let stale = stage(s, &run, "c0", 1, rows(25, 1), 6).await;
    ensure(
        matches!(&stale, Err(e) if e.kind() == ErrorKind::Conflict),
        C,
        CLAUSE,
        || match &stale {
            Ok(r) => format!("the stale attempt staged {} rows", r.rows),
            Err(e) => format!(
                "the stale attempt failed with {:?}, not Conflict: {e}",
                e.kind()
            ),
        },
    )?;
    let got = op(C, "read", staged(s, &run).await)?;
    ensure(got == PartitionDigests::of_rows(&newer), C, CLAUSE, || {
        format!(
            "{} rows staged after the stale write, expected attempt 2's {}",
            got.total_rows(),
            newer.len()
        )
    })?;
    let newest = rows(7, 3);
    op(
        C,
        "stage attempt 3",
        stage(s, &run, "c0", 3, newest.clone(), 6).await,
    )?;
    let got = op(C, "read", staged(s, &run).await)?;
    ensure(
        got == PartitionDigests::of_rows(&newest),
        C,
        "a newer attempt replaces the chunk",
        || {
            format!(
                "{} rows staged after attempt 3, expected 7",
                got.total_rows()
            )
        },
    )
}
