//! `runs`, `status`, `evidence`, `evidence export`, `diff`.

use std::path::Path;
use std::process::ExitCode;

use backfill_core::control::Control;
use backfill_core::evidence::{Evidence, EvidenceRecord};
use backfill_core::state::RunState;
use backfill_core::store::RunFilter;

use super::{known, CmdResult};
use crate::args::RunsArgs;
use crate::out::emit;
use crate::registry::{ledger_diff, Registry};

pub(super) async fn runs(control: &Control, a: &RunsArgs, json: bool) -> CmdResult {
    let mut f = RunFilter::all().limit(a.limit);
    if let Some(s) = &a.state {
        let state = RunState::parse(s).ok_or_else(|| format!("--state: unknown state `{s}`"))?;
        f = f.state(state);
    }
    if let Some(t) = &a.target {
        f = f.target(t.clone());
    }
    if let Some(r) = &a.requester {
        f = f.requested_by(r.clone());
    }
    if let Some(h) = a.age_hours {
        f = f.created_after(control.clock().now() - chrono::Duration::hours(h));
    }
    let list = control.runs(&f).await?;
    emit(json, &list, |list| {
        // Columns as wide as their longest value, so long run ids and names stay aligned.
        let width = |head: &str, f: &dyn Fn(&backfill_core::store::RunRecord) -> usize| {
            list.iter().map(f).chain([head.len()]).max().unwrap_or(0)
        };
        let (wr, ws, wt, wq) = (
            width("RUN", &|r| r.run_id.as_str().len()),
            width("STATE", &|r| r.state.as_str().len()),
            width("TARGET", &|r| r.target.len()),
            width("REQUESTER", &|r| r.requested_by.len()),
        );
        let mut s = format!(
            "{:<wr$}  {:<ws$}  {:<wt$}  {:<wq$}  {}\n",
            "RUN", "STATE", "TARGET", "REQUESTER", "UPDATED"
        );
        for r in list {
            s.push_str(&format!(
                "{:<wr$}  {:<ws$}  {:<wt$}  {:<wq$}  {}\n",
                r.run_id.as_str(),
                r.state.as_str(),
                r.target,
                r.requested_by,
                r.updated_at.format("%Y-%m-%d %H:%M:%S")
            ));
        }
        s.push_str(&format!("{} runs", list.len()));
        s
    });
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn status(control: &Control, run: &str, json: bool) -> CmdResult {
    let id = known(control, run).await?;
    let r = control.status(&id).await?;
    emit(json, &r, |r| {
        let mut s = format!(
            "{} ({}) target {} requested by {}\nchunks: {}/{} done, {} failed, {} leased\nrows: {} in, {} out",
            r.run_id,
            r.state,
            r.target,
            r.requested_by,
            r.chunks_done,
            r.chunks_total,
            r.chunks_failed,
            r.leased.len(),
            r.input_records,
            r.output_rows
        );
        if let Some(rate) = r.rows_per_second() {
            s.push_str(&format!(", {rate:.0} rows/s"));
        }
        for l in &r.leased {
            s.push_str(&format!(
                "\n  leased: chunk {} attempt {} by {}",
                l.chunk_id, l.attempt, l.worker
            ));
        }
        for v in &r.validations {
            s.push_str(&format!(
                "\n  validation {}: {:?} {}",
                v.validator, v.verdict, v.summary
            ));
        }
        if let Some(rc) = &r.receipt {
            s.push_str(&format!(
                "\n  published: {} rows ({})",
                rc.rows, rc.reference
            ));
        }
        let last = r.transitions.len().saturating_sub(5);
        for t in &r.transitions[last..] {
            s.push_str(&format!(
                "\n  {} {} -> {} by {}: {}",
                t.at.format("%Y-%m-%d %H:%M:%S"),
                t.from,
                t.to,
                t.by,
                t.reason
            ));
        }
        s
    });
    Ok(ExitCode::SUCCESS)
}

/// One line per evidence record.
pub(crate) fn describe(e: &Evidence) -> String {
    let what = match &e.record {
        EvidenceRecord::ManifestStored { digest, .. } => {
            format!("manifest stored, digest {digest}")
        }
        EvidenceRecord::Approved(a) => {
            format!("approved by {} (digest {})", a.approved_by, a.digest)
        }
        EvidenceRecord::PlanResolved {
            snapshot, chunks, ..
        } => format!(
            "plan: {} chunks at snapshot {}",
            chunks.len(),
            snapshot.as_deref().unwrap_or("-")
        ),
        EvidenceRecord::Transition(t) => format!("{} -> {}: {}", t.from, t.to, t.reason),
        EvidenceRecord::ChunkStaged {
            chunk_id,
            attempt,
            input,
            output,
            ..
        } => format!("chunk {chunk_id} (attempt {attempt}): {input} in, {output} out"),
        EvidenceRecord::ChunkFailed {
            chunk_id,
            attempt,
            error,
            ..
        } => format!("chunk {chunk_id} attempt {attempt} failed: {error}"),
        EvidenceRecord::Validation(v) => {
            format!("validation {}: {:?} {}", v.validator, v.verdict, v.summary)
        }
        EvidenceRecord::Review { accept, reason } => {
            format!(
                "review: {} ({reason})",
                if *accept { "accepted" } else { "rejected" }
            )
        }
        EvidenceRecord::Published { receipt, previous } => format!(
            "published {} rows to {} ({}), replacing {}",
            receipt.rows,
            receipt.target,
            receipt.reference,
            previous.as_ref().map_or("nothing", |p| p.as_str())
        ),
        EvidenceRecord::PointerMoved { target, from, to } => format!(
            "accepted pointer of {target}: {} -> {to}",
            from.as_ref().map_or("none", |f| f.as_str())
        ),
        EvidenceRecord::RolledBack {
            target, to, reason, ..
        } => format!("rolled back {target} to {to}: {reason}"),
        EvidenceRecord::CancelRequested { reason } => format!("cancel requested: {reason}"),
        EvidenceRecord::Note { name, detail } => {
            let text = detail
                .get("text")
                .and_then(|t| t.as_str())
                .map_or_else(|| detail.to_string(), str::to_owned);
            format!("note {name}: {text}")
        }
        EvidenceRecord::Estimated(est) => format!(
            "estimated: {} chunks, {} input records, {} bytes, {}, {}",
            est.chunks.len(),
            est.records,
            est.bytes,
            est.seconds
                .map_or_else(|| "duration unknown".to_owned(), |s| format!("~{s:.0} s")),
            est.cost_usd
                .map_or_else(|| "cost unknown".to_owned(), |c| format!("~${c:.2}"))
        ),
        other => other.kind().as_str().to_owned(),
    };
    format!(
        "#{:<3} {} {:<24} {what}",
        e.seq,
        e.at.format("%Y-%m-%d %H:%M:%S"),
        e.by
    )
}

pub(super) async fn evidence(control: &Control, run: &str, json: bool) -> CmdResult {
    let id = known(control, run).await?;
    let trail = control.store().evidence(&id).await?;
    emit(json, &trail, |t| {
        t.iter().map(describe).collect::<Vec<_>>().join("\n")
    });
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn export(control: &Control, run: &str, out: &Path, json: bool) -> CmdResult {
    let id = known(control, run).await?;
    let bundle = control.export(&id).await?;
    let text = bundle.to_json_pretty();
    std::fs::write(out, &text).map_err(|e| format!("writing {}: {e}", out.display()))?;
    emit(
        json,
        &serde_json::json!({"run_id": id, "out": out, "bytes": text.len()}),
        |_| {
            format!(
                "{id}: evidence bundle written to {} ({} bytes)",
                out.display(),
                text.len()
            )
        },
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn diff(
    control: &Control,
    reg: &Registry,
    run: &str,
    out: Option<&Path>,
    json: bool,
) -> CmdResult {
    let id = known(control, run).await?;
    let record = control.run(&id).await?;
    let (approved, _) = control.load(&id).await?;
    let declared = approved.manifest().target.partitions.clone();
    if let Ok(target) = reg.target_named(&record.target) {
        let diffs = target.diff(&id, &declared).await?;
        if let Some(path) = out {
            let mut w = csv::Writer::from_path(path)
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            w.write_record(["partition", "key"])?;
            for d in &diffs {
                for k in &d.changed_keys {
                    w.write_record([d.partition.as_str(), k.as_str()])?;
                }
            }
            w.flush()?;
        }
        emit(json, &diffs, |diffs| {
            let mut s = format!(
                "{id} against what readers of {} see now\n{:<24} {:>10} {:>10} {:>10}\n",
                record.target, "PARTITION", "BEFORE", "AFTER", "CHANGED"
            );
            for d in diffs {
                s.push_str(&format!(
                    "{:<24} {:>10} {:>10} {:>10}",
                    d.partition.as_str(),
                    d.rows_before,
                    d.rows_after,
                    d.changed_keys.len()
                ));
                for m in &d.measures {
                    s.push_str(&format!(
                        "  {} {} -> {} ({:+})",
                        m.name,
                        m.before,
                        m.after,
                        m.delta()
                    ));
                }
                s.push('\n');
            }
            let changed: usize = diffs.iter().map(|d| d.changed_keys.len()).sum();
            s.push_str(&format!("{changed} changed keys"));
            if let Some(p) = out {
                s.push_str(&format!(", written to {}", p.display()));
            }
            for (i, name) in diffs
                .first()
                .map(|d| d.measures.iter().map(|m| &m.name).collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .enumerate()
            {
                let (b, a) = diffs
                    .iter()
                    .filter_map(|d| d.measures.get(i))
                    .fold((0i128, 0i128), |(b, a), m| (b + m.before, a + m.after));
                s.push_str(&format!("; {name} {b} -> {a} ({:+})", a - b));
            }
            s
        });
        return Ok(ExitCode::SUCCESS);
    }
    // No target registered: compare ledgers with the accepted run's.
    let (_, after) = control.ledger(&id).await?;
    let accepted = control.store().accepted(&record.target).await?;
    let before = match &accepted {
        Some(a) if a.run_id != id => control.ledger(&a.run_id).await?.1,
        _ => Default::default(),
    };
    let rows = ledger_diff(&before, &after);
    emit(json, &rows, |rows| {
        let mut s = format!(
            "{id} against the accepted run {} (ledger digests; register the target for row-level diffs)\n",
            accepted.as_ref().map_or("none", |a| a.run_id.as_str())
        );
        for (p, a, b) in rows {
            s.push_str(&format!(
                "{:<24} {} -> {}\n",
                p.as_str(),
                a.as_deref().unwrap_or("none"),
                b.as_deref().unwrap_or("none")
            ));
        }
        s.push_str(&format!("{} partitions differ", rows.len()));
        s
    });
    Ok(ExitCode::SUCCESS)
}
