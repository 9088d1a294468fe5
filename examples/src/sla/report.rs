//! Output a data owner can review: the manifest, validations, the diff table and the evidence summary.

use std::path::Path;

use backfill_core::evidence::bundle::Verification;
use backfill_core::evidence::EvidenceRecord;
use backfill_core::prelude::*;

use super::diff::{DiffAgainstAccepted, SlaDiff};

/// How instants are shown.
pub const TIME: &str = "%Y-%m-%d %H:%M:%S UTC";

/// Prints the parts of a manifest an approver reads.
pub fn manifest(m: &RunManifest) {
    let show = |r: &Option<InputRange>| r.as_ref().map_or("-".to_owned(), ToString::to_string);
    say!("   reason      {}", m.reason);
    say!("   requested   {}", m.requested_by);
    say!(
        "   input       {} snapshot {} range {}",
        m.source.name,
        m.source.snapshot.as_deref().unwrap_or("-"),
        show(&m.source.range)
    );
    say!("   publish     {}", show(&m.publish_range));
    say!(
        "   transform   {}/{} @ {}",
        m.transform.name,
        m.transform.version,
        m.transform.git_commit.as_deref().unwrap_or("-")
    );
    for r in &m.transform.reference_data {
        say!(
            "   reference   {}/{} ({:?})",
            r.name,
            r.version,
            r.semantics
        );
    }
    say!(
        "   target      {} ({}, {} partitions {}..{})",
        m.target.name,
        m.target.mutation.as_ref().map_or("-", Mutation::name),
        m.target.partitions.len(),
        m.target.partitions.first().map_or("-", |p| p.as_str()),
        m.target.partitions.last().map_or("-", |p| p.as_str()),
    );
    let side = m.safety.side_effects.as_ref().map_or("unanswered", |s| {
        if s.allowed {
            "allowed"
        } else {
            "forbidden"
        }
    });
    say!("   side effects {side}");
}

/// Prints every validator's latest outcome.
pub fn validations(r: &RunReport) {
    if r.validations.is_empty() {
        return;
    }
    say!("   validation:");
    for v in &r.validations {
        let mark = match v.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::NeedsReview => "REVIEW",
        };
        say!("     {mark:<6} {:<42} {}", v.validator, v.summary);
    }
}

/// The diff computed during validation, if the run has one.
pub fn diff_of(r: &RunReport) -> Option<SlaDiff> {
    r.validations
        .iter()
        .find(|v| v.validator == DiffAgainstAccepted::NAME)
        .and_then(|v| serde_json::from_value(v.details.clone()).ok())
}

fn signed(old: u64, new: u64) -> String {
    let d = i128::from(new) - i128::from(old);
    if d == 0 {
        "0".into()
    } else {
        format!("{d:+}")
    }
}

/// Prints old against new per month, then breaches per jurisdiction for the year.
pub fn diff_table(d: &SlaDiff) {
    say!("\n   old (accepted) against new (staged), per partition:");
    say!(
        "   {:<8} {:>9} {:>9} {:>12} {:>12} {:>7} {:>8}",
        "month",
        "old rows",
        "new rows",
        "old breaches",
        "new breaches",
        "delta",
        "changed"
    );
    let (mut o, mut n, mut ob, mut nb, mut ch) = (0, 0, 0, 0, 0);
    for m in &d.months {
        say!(
            "   {:<8} {:>9} {:>9} {:>12} {:>12} {:>7} {:>8}",
            m.month,
            m.old_rows,
            m.new_rows,
            m.old_breaches,
            m.new_breaches,
            signed(m.old_breaches, m.new_breaches),
            m.changed_rows
        );
        o += m.old_rows;
        n += m.new_rows;
        ob += m.old_breaches;
        nb += m.new_breaches;
        ch += m.changed_rows;
    }
    say!(
        "   {:<8} {:>9} {:>9} {:>12} {:>12} {:>7} {:>8}",
        "2025",
        o,
        n,
        ob,
        nb,
        signed(ob, nb),
        ch
    );
    let mut per_j = std::collections::BTreeMap::<&str, (u64, u64)>::new();
    for j in &d.by_jurisdiction {
        let e = per_j.entry(&j.jurisdiction).or_default();
        e.0 += j.old_breaches;
        e.1 += j.new_breaches;
    }
    say!("\n   breaches in 2025 by jurisdiction:");
    for (j, (old, new)) in per_j {
        say!("   {j:<8} {old:>6} -> {new:<6} ({})", signed(old, new));
    }
    if let Some(csv) = &d.csv {
        say!("\n   every changed case-month: {csv}");
    }
    if !d.samples.is_empty() {
        say!("\n   sample of changed case-months:");
        for s in &d.samples {
            say!("   {s}");
        }
    }
}

/// Prints the evidence summary of a run, read from its typed records: what changed, why, by whom,
/// from which input and code.
pub async fn evidence(control: &Control, run_id: &RunId) -> backfill_core::Result<()> {
    let store = control.store();
    let Some(stored) = store.manifest(run_id).await? else {
        return Ok(());
    };
    let m = stored.manifest()?;
    let trail = store.evidence(run_id).await?;
    say!(
        "\nevidence of {run_id} ({} entries in the trail):",
        trail.len()
    );
    say!("   why        {}", m.reason);
    if let Some(t) = m.labels.get("ticket") {
        say!("   ticket     {t}");
    }
    say!("   requested  {}", m.requested_by);
    let (mut plan, mut review, mut published, mut rolled_back, mut pointer) =
        (None, None, None, None, None);
    let (mut pass, mut flagged, mut failed) = (0, 0, 0);
    for e in &trail {
        match &e.record {
            EvidenceRecord::Approved(a) => say!(
                "   approved   {} at {} (digest {})",
                a.approved_by,
                a.approved_at.format(TIME),
                a.digest
            ),
            EvidenceRecord::PlanResolved {
                snapshot, chunks, ..
            } => plan = Some((snapshot.clone(), chunks.len())),
            EvidenceRecord::Validation(v) => match v.verdict {
                Verdict::Pass => pass += 1,
                Verdict::NeedsReview => flagged += 1,
                Verdict::Fail => failed += 1,
            },
            EvidenceRecord::Review { accept, reason } => review = Some((e, *accept, reason)),
            EvidenceRecord::Published { receipt, .. } => published = Some((e, receipt)),
            EvidenceRecord::RolledBack {
                from, to, reason, ..
            } => rolled_back = Some((e, from, to, reason)),
            EvidenceRecord::PointerMoved { target, from, to } => pointer = Some((target, from, to)),
            _ => {}
        }
    }
    if let Some((e, accept, reason)) = review {
        let verdict = if accept { "accepted" } else { "rejected" };
        say!(
            "   reviewed   {} at {}: {verdict}: {reason}",
            e.by,
            e.at.format(TIME)
        );
    }
    say!(
        "   input      {} snapshot {} range {}",
        m.source.name,
        m.source.snapshot.as_deref().unwrap_or("-"),
        m.source
            .range
            .as_ref()
            .map_or("-".into(), ToString::to_string)
    );
    if let Some((snapshot, chunks)) = plan {
        say!(
            "   planned    {chunks} chunks at snapshot {}",
            snapshot.as_deref().unwrap_or("-")
        );
    }
    say!(
        "   code       {}/{} @ {}; reference {}",
        m.transform.name,
        m.transform.version,
        m.transform.git_commit.as_deref().unwrap_or("-"),
        m.transform
            .reference_data
            .iter()
            .map(|r| format!("{}/{}", r.name, r.version))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if pass + flagged + failed > 0 {
        say!("   validated  {pass} passed, {flagged} for review, {failed} failed");
    }
    if let Some((e, r)) = published {
        say!(
            "   published  {} rows, {} partitions of {} ({}) by {} at {}",
            r.rows,
            r.partitions.len(),
            r.target,
            r.mutation,
            e.by,
            e.at.format(TIME)
        );
    }
    if let Some((target, from, to)) = pointer {
        say!(
            "   supersedes {} (accepted pointer of {target} moved to {to})",
            from.as_ref().map_or("nothing", RunId::as_str)
        );
    }
    if let Some((e, from, to, reason)) = rolled_back {
        say!(
            "   rollback   {from} -> {to} by {} at {}: {reason}",
            e.by,
            e.at.format(TIME)
        );
    }
    Ok(())
}

/// Prints the one-line result of verifying an exported evidence bundle.
pub fn verification(path: &Path, v: &Verification) {
    if v.passed() {
        say!(
            "\nevidence bundle {}: verified ({} checks: {})",
            path.display(),
            v.checks.len(),
            v.checks
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        say!(
            "\nevidence bundle {}: VERIFICATION FAILED: {}",
            path.display(),
            v.failures()
                .iter()
                .map(|c| format!("{} ({})", c.name, c.detail))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
}
