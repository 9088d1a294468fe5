//! The rollback checks of the publisher suite (contract clause 5).

use backfill_core::manifest::Mutation;
use backfill_core::publish::PublishReceipt;

use super::model::{self, stage_and_publish, unchanged, Pair, Staged, View, ALL};
use super::{compare, listed, read, readable, rolls_back};
use crate::conformance::{ensure, fail, op, CheckResult};
use crate::sink::rows;
use crate::ConformanceFailure;

/// Publishes run A, then run B over every partition; returns A, its view and B.
async fn two_runs(
    check: &'static str,
    p: &Pair,
    mode: &Mutation,
    tag: &str,
) -> Result<(Staged, PublishReceipt, Option<View>, Staged), ConformanceFailure> {
    let (a, receipt) =
        stage_and_publish(p, mode, &format!("bf-{tag}a"), &ALL, &rows(60, 8), None).await?;
    let seen = if readable(check, p) {
        Some(read(check, p).await?)
    } else {
        None
    };
    let (b, _) = stage_and_publish(
        p,
        mode,
        &format!("bf-{tag}b"),
        &ALL,
        &rows(40, 9),
        Some(a.run_id()),
    )
    .await?;
    Ok((a, receipt, seen, b))
}

/// Clause 5: rolling back makes the earlier run's output visible again (readers see what they saw
/// before the later run), and `inspect` of the earlier run still answers.
pub async fn rollback_restores_the_previous_run(p: &Pair, mode: &Mutation) -> CheckResult {
    const C: &str = "rollback_restores_the_previous_run";
    const CLAUSE: &str = "rollback makes the earlier run's output visible again";
    if !listed(C, p, mode) || !rolls_back(C, p) {
        return Ok(());
    }
    let (a, first, seen, b) = two_runs(C, p, mode, "p7").await?;
    let receipt = op(C, "rollback", model::rollback(p, &b, a.run_id()).await)?;
    ensure(receipt.run_id == *a.run_id(), C, CLAUSE, || {
        format!(
            "the rollback receipt names {}, not the restored run",
            receipt.run_id
        )
    })?;
    if let Some(seen) = &seen {
        compare(
            C,
            CLAUSE,
            "after the rollback",
            &unchanged(seen),
            &read(C, p).await?,
        )?;
    }
    let still = op(C, "inspect", p.1.inspect(a.run_id()).await)?;
    ensure(
        still.as_ref() == Some(&first),
        C,
        "inspect(to) still answers after a rollback",
        || format!("{still:?}"),
    )
}

/// Clause 5: `inspect_rollback` answers `None` before and the receipt after; rolling back again
/// returns the same receipt and changes nothing.
pub async fn rollback_is_idempotent_and_inspectable(p: &Pair, mode: &Mutation) -> CheckResult {
    const C: &str = "rollback_is_idempotent_and_inspectable";
    const CLAUSE: &str = "rollback is idempotent and inspect_rollback answers whether it happened";
    if !listed(C, p, mode) || !rolls_back(C, p) {
        return Ok(());
    }
    let (a, _, seen, b) = two_runs(C, p, mode, "p8").await?;
    let none = op(
        C,
        "inspect_rollback",
        p.1.inspect_rollback(b.run_id(), a.run_id()).await,
    )?;
    ensure(none.is_none(), C, CLAUSE, || {
        format!("{none:?} before rolling back")
    })?;
    let first = op(C, "rollback", model::rollback(p, &b, a.run_id()).await)?;
    let found = op(
        C,
        "inspect_rollback",
        p.1.inspect_rollback(b.run_id(), a.run_id()).await,
    )?;
    ensure(found.as_ref() == Some(&first), C, CLAUSE, || {
        format!("inspect_rollback answered {found:?} after the rollback {first:?}")
    })?;
    let again = op(
        C,
        "rollback again",
        model::rollback(p, &b, a.run_id()).await,
    )?;
    ensure(again == first, C, CLAUSE, || {
        format!("rolling back again returned {again:?}, the first time {first:?}")
    })?;
    if let Some(seen) = &seen {
        compare(
            C,
            CLAUSE,
            "after rolling back twice",
            &unchanged(seen),
            &read(C, p).await?,
        )?;
    }
    let reverse = op(
        C,
        "inspect_rollback",
        p.1.inspect_rollback(a.run_id(), b.run_id()).await,
    )?;
    ensure(reverse.is_none(), C, CLAUSE, || {
        format!("inspect_rollback of the opposite direction answered {reverse:?}")
    })
}

/// Clause 5 and sink clause 5: rollback never reads staging, so it works after both runs' staging
/// was discarded.
pub async fn rollback_works_after_staging_is_discarded(p: &Pair, mode: &Mutation) -> CheckResult {
    const C: &str = "rollback_works_after_staging_is_discarded";
    const CLAUSE: &str = "rollback never reads the staging of either run";
    if !listed(C, p, mode) || !rolls_back(C, p) {
        return Ok(());
    }
    let (a, _, seen, b) = two_runs(C, p, mode, "p9").await?;
    for run in [a.run_id(), b.run_id()] {
        op(C, "discard", p.0.discard(run).await)?;
    }
    let rolled = model::rollback(p, &b, a.run_id()).await;
    let receipt = rolled.map_err(|e| fail(C, CLAUSE, format!("rollback after discard: {e}")))?;
    ensure(receipt.run_id == *a.run_id(), C, CLAUSE, || {
        format!("{receipt:?}")
    })?;
    match &seen {
        Some(seen) => compare(
            C,
            CLAUSE,
            "after a rollback with staging discarded",
            &unchanged(seen),
            &read(C, p).await?,
        ),
        None => Ok(()),
    }
}
