//! `submit`, `approve`, `review`, `cancel`, `publish`, `rollback`, `note`.

use std::path::Path;
use std::process::ExitCode;

use backfill_core::control::Control;
use backfill_core::evidence::EvidenceRecord;

use super::{known, CmdResult};
use crate::args::Decision;
use crate::out::emit;
use crate::registry::Registry;

pub(super) async fn submit(control: &Control, file: &Path, json: bool) -> CmdResult {
    let m = super::manifest::load(file)?;
    let r = control.submit_draft(&m).await?;
    let blocking = m.check().blocking().len();
    emit(json, &r, |r| {
        let mut s = format!(
            "{} submitted by {} as {} (digest {})",
            r.run_id, r.requested_by, r.state, r.manifest_digest
        );
        if blocking > 0 {
            s.push_str(&format!(
                "\n{blocking} blocking findings: it cannot be approved until they are fixed (manifest check)"
            ));
        }
        s
    });
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn approve(control: &Control, run: &str, who: &str, json: bool) -> CmdResult {
    let id = known(control, run).await?;
    let r = control.approve(&id, who).await?;
    emit(json, &r, |r| {
        format!("{} approved by {who}: {}", r.run_id, r.state)
    });
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn review(
    control: &Control,
    run: &str,
    decision: Decision,
    who: &str,
    note: &str,
    json: bool,
) -> CmdResult {
    let id = known(control, run).await?;
    let accept = matches!(decision, Decision::Accept);
    let state = control.review(&id, accept, who, note).await?;
    emit(
        json,
        &serde_json::json!({"run_id": id, "accepted": accept, "state": state}),
        |_| {
            format!(
                "{id}: {} by {who} -> {state}",
                if accept { "accepted" } else { "rejected" }
            )
        },
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn cancel(
    control: &Control,
    run: &str,
    who: &str,
    reason: &str,
    json: bool,
) -> CmdResult {
    let id = known(control, run).await?;
    let state = control.cancel(&id, who, reason).await?;
    emit(
        json,
        &serde_json::json!({"run_id": id, "state": state}),
        |_| format!("{id} -> {state}"),
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn publish(
    control: &Control,
    reg: &Registry,
    run: &str,
    who: &str,
    json: bool,
) -> CmdResult {
    let id = known(control, run).await?;
    let record = control.run(&id).await?;
    reg.target_named(&record.target)?;
    let receipt = control.publish(&id, who).await?;
    emit(json, &receipt, |r| {
        format!(
            "{} published to {}: {} rows in {} partitions ({})",
            r.run_id,
            r.target,
            r.rows,
            r.partitions.len(),
            r.reference
        )
    });
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn rollback(
    control: &Control,
    reg: &Registry,
    run: &str,
    reason: &str,
    who: &str,
    json: bool,
) -> CmdResult {
    let id = known(control, run).await?;
    let record = control.run(&id).await?;
    reg.target_named(&record.target)?;
    let receipt = control.rollback_run(&id, who, reason).await?;
    emit(json, &receipt, |r| {
        format!(
            "{id} rolled back: {} is visible again in {} ({})",
            r.run_id, r.target, r.reference
        )
    });
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn note(
    control: &Control,
    run: &str,
    name: &str,
    text: &str,
    who: &str,
    json: bool,
) -> CmdResult {
    let id = known(control, run).await?;
    let record = EvidenceRecord::Note {
        name: name.to_owned(),
        detail: serde_json::json!({ "text": text }),
    };
    let e = control
        .store()
        .append_evidence(&id, control.clock().now(), who, &record)
        .await?;
    emit(json, &serde_json::json!({"run_id": id, "seq": e}), |_| {
        format!("{id}: note `{name}` recorded")
    });
    Ok(ExitCode::SUCCESS)
}
