//! The idempotent staging check for any row type: staging the same chunk twice, or again after a
//! failed attempt, never doubles counts or changes the partition digests.
//!
//! The sink suite ([`crate::sink`]) proves the same clauses with [`TestRow`](crate::TestRow); this check
//! takes your own rows, so a sink that stores a specific row type (typed columns, a schema) can be
//! checked with data it accepts.

use backfill_core::context::{ExecutionMode, TransformContext};
use backfill_core::digest::{OutputRow, PartitionDigests};
use backfill_core::ids::{ChunkId, RunId};
use backfill_core::sink::{StageRequest, StagingSink};
use chrono::{TimeZone, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::conformance::{ensure, op, CheckResult};

const C: &str = "idempotent_staging";

async fn stage<R: OutputRow>(
    sink: &dyn StagingSink<R>,
    ctx: &TransformContext,
    chunk: &ChunkId,
    attempt: u32,
    batches: Vec<backfill_core::Result<Vec<R>>>,
) -> backfill_core::Result<u64> {
    let req = StageRequest {
        run_id: ctx.run_id(),
        chunk_id: chunk,
        attempt,
        lineage: ctx.lineage(),
    };
    sink.stage(req, stream::iter(batches).boxed())
        .await
        .map(|r| r.rows)
}

fn batches<R: Clone>(rows: &[R], size: usize) -> Vec<backfill_core::Result<Vec<R>>> {
    rows.chunks(size.max(1)).map(|b| Ok(b.to_vec())).collect()
}

/// Stages `rows` as one chunk of `run_id` in `sink` four times: once, again in other batches, as a
/// failed attempt (half the rows, then a stream error), and once more. After each step the staged
/// rows of the run must digest to exactly `rows` (counts never double, digests never change).
///
/// # Contract
/// `sink` must hold nothing for `run_id` before the check; the check leaves `rows` staged.
pub async fn check_idempotent_staging<R: OutputRow>(
    sink: &dyn StagingSink<R>,
    run_id: &RunId,
    rows: &[R],
) -> CheckResult {
    let at = Utc
        .with_ymd_and_hms(2026, 7, 4, 9, 0, 0)
        .single()
        .unwrap_or_default();
    let ctx = TransformContext::fixed(run_id.clone(), ExecutionMode::Backfill, at);
    let chunk = ChunkId::from("testkit-idempotent-0");
    let want = PartitionDigests::of_rows(rows);
    let read = || async {
        let staged: Vec<R> = sink.read_staged(run_id).try_concat().await?;
        Ok::<_, backfill_core::Error>(PartitionDigests::of_rows(&staged))
    };
    let same = |step: &str, got: &PartitionDigests| {
        ensure(
            *got == want,
            C,
            "stage replaces an earlier attempt of the same chunk, never adds to it",
            || {
                format!(
                    "after {step}: {} rows staged over {} partitions, expected {} over {}",
                    got.total_rows(),
                    got.0.len(),
                    want.total_rows(),
                    want.0.len()
                )
            },
        )
    };
    let n = op(
        C,
        "stage",
        stage(sink, &ctx, &chunk, 1, batches(rows, 7)).await,
    )?;
    ensure(
        n == rows.len() as u64,
        C,
        "the receipt counts the rows staged",
        || format!("receipt says {n}, staged {}", rows.len()),
    )?;
    same("the first attempt", &op(C, "read", read().await)?)?;
    op(
        C,
        "restage",
        stage(sink, &ctx, &chunk, 2, batches(rows, 3)).await,
    )?;
    same("staging the chunk again", &op(C, "read", read().await)?)?;
    let mut failing = batches(&rows[..rows.len() / 2], 5);
    failing.push(Err(backfill_core::Error::transient(
        "testkit",
        "injected stream failure",
    )));
    let failed = stage(sink, &ctx, &chunk, 3, failing).await;
    ensure(
        failed.is_err(),
        C,
        "a failed stream fails the stage call",
        || "stage returned Ok".into(),
    )?;
    same("a failed attempt", &op(C, "read", read().await)?)?;
    op(
        C,
        "stage after a failed attempt",
        stage(sink, &ctx, &chunk, 4, batches(rows, 11)).await,
    )?;
    same(
        "staging after a failed attempt",
        &op(C, "read", read().await)?,
    )
}
