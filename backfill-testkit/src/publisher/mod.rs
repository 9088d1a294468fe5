//! Checks of the [`Publisher`](backfill_core::publish::Publisher) contract (backfill-core
//! `publish.rs`, clauses 1–7), gated on the publisher's
//! [`capabilities`](backfill_core::publish::Publisher::capabilities).
//!
//! - Per-mode checks run once for every mutation mode the publisher lists in
//!   `capabilities().mutations`, each time in a fresh namespace, with the mode named in a failure.
//!   Modes the publisher does not list are skipped with a note on stderr, never failed.
//! - Rollback checks run only when `capabilities().rollback`; rows are read back and compared only
//!   when `capabilities().read_back` (otherwise receipts, `inspect` and idempotence are still checked).
//! - What readers should see after a publication is modelled per mode: replace-partitions replaces
//!   exactly the declared partitions, shadow swap and versioned output replace the whole table,
//!   append and correction events add the run's rows (and may hide earlier runs', as an
//!   accepted-run view does), merge-by-key replaces rows with the run's keys (column `key`, version
//!   column `value`). After a rollback, readers see exactly what they saw before the rolled-back run
//!   was published.
//!
//! The harness returns a staging sink and its paired [`PublishTarget`](crate::PublishTarget): the
//! publisher publishes from the artifacts of the sink's receipts, never from the sink itself.

mod model;
mod rollback;

use backfill_core::manifest::Mutation;
use backfill_core::publish::PublisherCapabilities;

pub use model::{known_modes, Pair};

use crate::conformance::{ensure, finish, note, op, unknown, CheckResult, PublisherHarness};
use crate::namespace_for;
use crate::sink::rows;
use model::{after, compare, stage_and_publish, stage_run, unchanged, view, View, ALL};
pub use rollback::{
    rollback_is_idempotent_and_inspectable, rollback_restores_the_previous_run,
    rollback_works_after_staging_is_discarded,
};

/// The checks of this suite, by name.
pub const CHECKS: &[&str] = &[
    "capabilities_are_stable",
    "publish_makes_staged_rows_visible",
    "publish_is_idempotent",
    "publish_is_all_or_nothing",
    "inspect_answers_after_publish",
    "staged_rows_are_invisible_before_publish",
    "replace_changes_only_declared_partitions",
    "rollback_restores_the_previous_run",
    "rollback_is_idempotent_and_inspectable",
    "rollback_works_after_staging_is_discarded",
];

/// Checks that run once per listed mutation mode.
const PER_MODE: &[&str] = &[
    "publish_makes_staged_rows_visible",
    "publish_is_idempotent",
    "publish_is_all_or_nothing",
    "inspect_answers_after_publish",
    "rollback_restores_the_previous_run",
    "rollback_is_idempotent_and_inspectable",
    "rollback_works_after_staging_is_discarded",
];

/// The modes of [`known_modes`] the publisher lists, noting the ones it does not (and any it lists
/// that this testkit does not know).
fn listed_modes(check: &str, caps: &PublisherCapabilities) -> Vec<Mutation> {
    let known = known_modes();
    for name in &caps.mutations {
        if !known.iter().any(|m| m.name() == *name) {
            note(
                check,
                format!("mode {name}: this version of the testkit cannot exercise it"),
            );
        }
    }
    known
        .into_iter()
        .filter(|m| {
            let listed = caps.supports(m.name());
            if !listed {
                note(
                    check,
                    format!("mode {}: not in the publisher's capabilities", m.name()),
                );
            }
            listed
        })
        .collect()
}

/// Runs one check with a fresh namespace from `harness` (one per mutation mode for per-mode checks);
/// each namespace is torn down only when its check passes.
pub async fn run_check<H: PublisherHarness + ?Sized>(harness: &H, check: &str) -> CheckResult {
    let name = CHECKS
        .iter()
        .find(|c| **c == check)
        .copied()
        .ok_or_else(|| unknown(check))?;
    let ns = namespace_for(name);
    let pair = op(name, "building the harness", harness.build(&ns).await)?;
    if !PER_MODE.contains(&name) {
        let result = dispatch_once(name, &pair).await;
        return finish(name, &ns, result, harness.teardown(&ns)).await;
    }
    let modes = listed_modes(name, &pair.1.capabilities());
    let mut first = Some((ns, pair));
    if modes.is_empty() {
        if let Some((ns, _)) = first.take() {
            note(
                name,
                "every mode: the publisher lists none the testkit knows",
            );
            return finish(name, &ns, Ok(()), harness.teardown(&ns)).await;
        }
    }
    for mode in modes {
        let (ns, pair) = match first.take() {
            Some(built) => built,
            None => {
                let ns = namespace_for(&format!("{name}_{}", mode.name()));
                let pair = op(name, "building the harness", harness.build(&ns).await)?;
                (ns, pair)
            }
        };
        let result = dispatch_mode(name, &pair, &mode).await.map_err(|mut f| {
            f.details = format!("with {}: {}", mode.name(), f.details);
            f
        });
        finish(name, &ns, result, harness.teardown(&ns)).await?;
    }
    Ok(())
}

/// Runs every check of the suite.
pub async fn run_all<H: PublisherHarness + ?Sized>(
    harness: &H,
) -> Vec<(&'static str, CheckResult)> {
    let mut out = Vec::new();
    for c in CHECKS {
        out.push((*c, run_check(harness, c).await));
    }
    out
}

async fn dispatch_once(name: &'static str, p: &Pair) -> CheckResult {
    match name {
        "capabilities_are_stable" => capabilities_are_stable(p).await,
        "staged_rows_are_invisible_before_publish" => {
            staged_rows_are_invisible_before_publish(p).await
        }
        "replace_changes_only_declared_partitions" => {
            replace_changes_only_declared_partitions(p).await
        }
        other => Err(unknown(other)),
    }
}

async fn dispatch_mode(name: &'static str, p: &Pair, mode: &Mutation) -> CheckResult {
    match name {
        "publish_makes_staged_rows_visible" => publish_makes_staged_rows_visible(p, mode).await,
        "publish_is_idempotent" => publish_is_idempotent(p, mode).await,
        "publish_is_all_or_nothing" => publish_is_all_or_nothing(p, mode).await,
        "inspect_answers_after_publish" => inspect_answers_after_publish(p, mode).await,
        "rollback_restores_the_previous_run" => rollback_restores_the_previous_run(p, mode).await,
        "rollback_is_idempotent_and_inspectable" => {
            rollback_is_idempotent_and_inspectable(p, mode).await
        }
        "rollback_works_after_staging_is_discarded" => {
            rollback_works_after_staging_is_discarded(p, mode).await
        }
        other => Err(unknown(other)),
    }
}

/// Whether `mode` is listed; notes the skip when it is not.
fn listed(check: &'static str, p: &Pair, mode: &Mutation) -> bool {
    let yes = p.1.capabilities().supports(mode.name());
    if !yes {
        note(
            check,
            format!("mode {}: not in the publisher's capabilities", mode.name()),
        );
    }
    yes
}

/// Whether the target can be read back; notes what is skipped when it cannot.
fn readable(check: &'static str, p: &Pair) -> bool {
    let yes = p.1.capabilities().read_back;
    if !yes {
        note(
            check,
            "row comparisons: the publisher does not declare read_back",
        );
    }
    yes
}

/// Whether rollback is declared; notes the skip when it is not.
fn rolls_back(check: &'static str, p: &Pair) -> bool {
    let yes = p.1.capabilities().rollback;
    if !yes {
        note(check, "rollback: the publisher does not declare it");
    }
    yes
}

async fn read(check: &'static str, p: &Pair) -> Result<View, crate::ConformanceFailure> {
    op(check, "read_current", view(p).await)
}

/// Clauses 6 and 7: capabilities and the target name are constant for the publisher's lifetime.
pub async fn capabilities_are_stable(p: &Pair) -> CheckResult {
    const C: &str = "capabilities_are_stable";
    let (first, name) = (p.1.capabilities(), p.1.descriptor().name);
    ensure(
        !name.trim().is_empty(),
        C,
        "descriptor().name is the target name manifests use",
        || "the descriptor has an empty name".into(),
    )?;
    let again = p.1.capabilities();
    ensure(
        again == first && p.1.descriptor().name == name,
        C,
        "capabilities are constant for the publisher's lifetime",
        || format!("{first:?} then {again:?}"),
    )
}

/// Clauses 1, 3 and 6: a publication makes the run's rows visible as its mode says (into an empty
/// target, then over an earlier run with fewer partitions declared).
pub async fn publish_makes_staged_rows_visible(p: &Pair, mode: &Mutation) -> CheckResult {
    const C: &str = "publish_makes_staged_rows_visible";
    const CLAUSE: &str = "publish makes the run's staged rows visible as its mutation mode says";
    if !listed(C, p, mode) {
        return Ok(());
    }
    let check_rows = readable(C, p);
    let before = if check_rows {
        read(C, p).await?
    } else {
        View::new()
    };
    let (a, receipt) = stage_and_publish(p, mode, "bf-p1a", &ALL, &rows(90, 1), None).await?;
    ensure(
        receipt.rows == 90,
        C,
        "the receipt counts the rows made visible",
        || format!("{receipt:?}"),
    )?;
    ensure(
        receipt.run_id == *a.run_id() && receipt.mutation == mode.name(),
        C,
        "the receipt names the run and the mutation applied",
        || format!("{receipt:?}"),
    )?;
    if !check_rows {
        return Ok(());
    }
    let after_a = read(C, p).await?;
    compare(
        C,
        CLAUSE,
        "after the first run",
        &after(mode, &before, &a.rows, &ALL),
        &after_a,
    )?;
    let declared = ["2025-01", "2025-02"];
    let (b, _) =
        stage_and_publish(p, mode, "bf-p1b", &declared, &rows(45, 4), Some(a.run_id())).await?;
    let after_b = read(C, p).await?;
    compare(
        C,
        CLAUSE,
        "after a second run declaring 2025-01 and 2025-02",
        &after(mode, &after_a, &b.rows, &declared),
        &after_b,
    )
}

/// Clause 2: publishing the same run again (also later) returns the original receipt and changes
/// nothing.
pub async fn publish_is_idempotent(p: &Pair, mode: &Mutation) -> CheckResult {
    const C: &str = "publish_is_idempotent";
    const CLAUSE: &str = "publish is idempotent per run";
    if !listed(C, p, mode) {
        return Ok(());
    }
    let (a, first) = stage_and_publish(p, mode, "bf-p2", &ALL, &rows(60, 2), None).await?;
    let seen = if readable(C, p) {
        Some(read(C, p).await?)
    } else {
        None
    };
    for (when, day) in [("again", 0), ("a day later", 1)] {
        let again = op(
            C,
            "publish again",
            model::publish(p, &a, None, model::at(day)).await,
        )?;
        ensure(again == first, C, CLAUSE, || {
            format!("publishing {when} returned {again:?}, the first publication {first:?}")
        })?;
        if let Some(seen) = &seen {
            let now = read(C, p).await?;
            compare(
                C,
                CLAUSE,
                &format!("after publishing {when}"),
                &unchanged(seen),
                &now,
            )?;
        }
    }
    Ok(())
}

/// Clause 1: readers see all of a publication or none of it: a reader polling during a large
/// publication sees each partition before or after it, never in between; and a request naming an
/// artifact that is no longer staged either publishes all of the run or changes nothing (and
/// `inspect` agrees).
pub async fn publish_is_all_or_nothing(p: &Pair, mode: &Mutation) -> CheckResult {
    const C: &str = "publish_is_all_or_nothing";
    const CLAUSE: &str = "publish is atomic: readers see all of the run's staged output or none";
    if !listed(C, p, mode) {
        return Ok(());
    }
    let check_rows = readable(C, p);
    let (a, _) = stage_and_publish(p, mode, "bf-p3a", &ALL, &rows(60, 3), None).await?;
    let before = if check_rows {
        read(C, p).await?
    } else {
        View::new()
    };
    // A large publication, watched by a reader of one partition.
    let big = stage_run(p, mode, "bf-p3b", &ALL, &rows(1_500, 4)).await?;
    let want = after(mode, &before, &big.rows, &ALL);
    let done = std::sync::atomic::AtomicBool::new(false);
    let publication = async {
        let r = model::publish(p, &big, Some(a.run_id()), model::at(0)).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        r
    };
    let watcher = async {
        let mut seen = Vec::new();
        while check_rows && !done.load(std::sync::atomic::Ordering::SeqCst) {
            seen.push(model::visible(p, ALL[0]).await);
            tokio::task::yield_now().await;
        }
        seen
    };
    let (published, seen) = tokio::join!(publication, watcher);
    op(C, "publish", published)?;
    let old = before.get(ALL[0]).cloned().unwrap_or_default();
    for got in seen {
        let got = op(C, "read_current during publish", got)?;
        let admitted = want.get(ALL[0]).is_some_and(|w| w.admits(&got));
        ensure(got == old || admitted, C, CLAUSE, || {
            format!(
                "a reader saw {} rows in {} during the publication, neither the {} before nor what follows it ({})",
                got.len(),
                ALL[0],
                old.len(),
                want.get(ALL[0]).map(|w| w.explain(ALL[0], &got)).unwrap_or_default()
            )
        })?;
    }
    let before = if check_rows {
        read(C, p).await?
    } else {
        View::new()
    };
    // A request whose second artifact names a chunk whose staging is gone: the run staged one
    // chunk, the other artifact is a discarded run's.
    let mut broken = model::stage_chunks(p, mode, "bf-p3c", &ALL, &rows(30, 5), 1).await?;
    let gone = stage_run(p, mode, "bf-p3d", &ALL, &rows(30, 6)).await?;
    op(C, "discard", p.0.discard(gone.run_id()).await)?;
    broken.artifacts.push(gone.artifacts[1].clone());
    let result = model::publish(p, &broken, Some(big.run_id()), model::at(0)).await;
    let inspected = op(C, "inspect", p.1.inspect(broken.run_id()).await)?;
    ensure(
        result.is_ok() == inspected.is_some(),
        C,
        "inspect answers whether a run published",
        || format!("publish returned {result:?}, inspect {inspected:?}"),
    )?;
    if !check_rows {
        return Ok(());
    }
    let now = read(C, p).await?;
    match result {
        Ok(_) => compare(
            C,
            CLAUSE,
            "after a publication naming an artifact that is no longer staged succeeded",
            &after(mode, &before, &broken.rows, &ALL),
            &now,
        ),
        Err(_) => compare(
            C,
            CLAUSE,
            "after a publication naming an artifact that is no longer staged failed",
            &unchanged(&before),
            &now,
        ),
    }
}

/// Clause 4: `inspect` answers `None` before a run publishes and its receipt after, from the target.
pub async fn inspect_answers_after_publish(p: &Pair, mode: &Mutation) -> CheckResult {
    const C: &str = "inspect_answers_after_publish";
    const CLAUSE: &str = "inspect answers whether a run published";
    if !listed(C, p, mode) {
        return Ok(());
    }
    let before = op(C, "inspect", p.1.inspect(&"bf-p4".into()).await)?;
    ensure(before.is_none(), C, CLAUSE, || {
        format!("{before:?} before publishing")
    })?;
    let (_, receipt) = stage_and_publish(p, mode, "bf-p4", &ALL, &rows(9, 5), None).await?;
    let after_publish = op(C, "inspect", p.1.inspect(&"bf-p4".into()).await)?;
    ensure(after_publish.as_ref() == Some(&receipt), C, CLAUSE, || {
        format!("{after_publish:?}, published {receipt:?}")
    })?;
    let other = op(C, "inspect", p.1.inspect(&"bf-p4-never".into()).await)?;
    ensure(other.is_none(), C, CLAUSE, || {
        format!("{other:?} for a run that never published")
    })
}

/// Sink clause 4: staged rows are not visible to readers before publication.
pub async fn staged_rows_are_invisible_before_publish(p: &Pair) -> CheckResult {
    const C: &str = "staged_rows_are_invisible_before_publish";
    let Some(mode) = listed_modes(C, &p.1.capabilities()).into_iter().next() else {
        note(
            C,
            "everything: the publisher lists no mode the testkit knows",
        );
        return Ok(());
    };
    if !readable(C, p) {
        return Ok(());
    }
    stage_and_publish(p, &mode, "bf-p5a", &ALL, &rows(30, 6), None).await?;
    let seen = read(C, p).await?;
    stage_run(p, &mode, "bf-p5b", &ALL, &rows(30, 7)).await?;
    let now = read(C, p).await?;
    compare(
        C,
        "staged rows are never visible before publish",
        "after staging another run",
        &unchanged(&seen),
        &now,
    )
}

/// Clause 3, replace-partitions: exactly the declared partitions change (one declared partition
/// without staged rows is emptied, as the manifest allows); the others keep their rows.
pub async fn replace_changes_only_declared_partitions(p: &Pair) -> CheckResult {
    const C: &str = "replace_changes_only_declared_partitions";
    const CLAUSE: &str = "publish changes only the run's declared partitions";
    let mode = Mutation::ReplacePartitions;
    if !listed(C, p, &mode) {
        return Ok(());
    }
    let (a, _) = stage_and_publish(p, &mode, "bf-p6a", &ALL, &rows(90, 3), None).await?;
    let before = if readable(C, p) {
        Some(read(C, p).await?)
    } else {
        None
    };
    let declared = ["2025-01", "2025-02"];
    let mut b = stage_run(p, &mode, "bf-p6b", &["2025-01"], &rows(45, 4)).await?;
    b.manifest = model::manifest(p, &mode, "bf-p6b", &declared);
    b.manifest.target.allow_empty_partitions = true;
    let receipt = op(
        C,
        "publish",
        model::publish(p, &b, Some(a.run_id()), model::at(0)).await,
    )?;
    let mut changed: Vec<&str> = receipt.partitions.iter().map(|k| k.as_str()).collect();
    changed.sort_unstable();
    changed.dedup();
    ensure(changed == declared, C, CLAUSE, || {
        format!("the receipt lists partitions {changed:?}, the run declared {declared:?}")
    })?;
    let Some(before) = before else { return Ok(()) };
    let now = read(C, p).await?;
    compare(
        C,
        CLAUSE,
        "after replacing 2025-01 and emptying 2025-02",
        &after(&mode, &before, &b.rows, &declared),
        &now,
    )
}
