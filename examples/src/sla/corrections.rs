//! `--correction-events`: the restatement told to event-sourced consumers as one
//! `CaseSlaBreachCorrected` event per changed case-month, in the outbox table [`OUTBOX`], besides
//! replacing the rows of [`TARGET`].
//!
//! The events are published after the owner accepted the run and **before** its rows replace the
//! accepted ones: the events compare what consumers saw (v2.4.1's rows, the accepted output) with the
//! staged restatement, and once the rows are replaced there is nothing left to compare. A crash
//! between the two converges: the next invocation finds the outbox's receipt (nothing is written
//! again) and publishes the rows. A run whose rows were published without the flag gets no events
//! afterwards; the job says so.
//!
//! The outbox is on the warehouse database, next to the target; its receipt is in the warehouse's
//! `bf_publications`, and a `Note` named [`NOTE`] in the run's evidence trail records it.

use std::sync::Arc;

use backfill_core::evidence::EvidenceRecord;
use backfill_core::prelude::*;
use backfill_core::publish::PublishRequest;
use backfill_sql::SqlOutbox;

use super::job::{Parts, OWNER, TARGET};
use super::transform::CaseSlaMonth;

/// The outbox table (on SQLite, `silver__case_sla_corrections`).
pub const OUTBOX: &str = "silver.case_sla_corrections";

/// The event type.
pub const EVENT_TYPE: &str = "CaseSlaBreachCorrected";

/// The evidence note recording the publication of the events.
pub const NOTE: &str = "correction_events";

/// Case-months as events: keyed by case within the month's partition, correcting the accepted row
/// (its deterministic id), comparing exactly the facts the owner's diff compares (due date, status,
/// breached, breached in the month), so the events are the diff's changed case-months.
pub fn correction() -> Correction<CaseSlaMonth> {
    Correction::new(
        EVENT_TYPE,
        |r: &CaseSlaMonth| r.case_id.clone(),
        |r: &CaseSlaMonth| r.id.clone(),
        |r: &CaseSlaMonth| {
            serde_json::json!({
                "caseId": r.case_id,
                "jurisdiction": r.jurisdiction,
                "month": r.month,
                "dueOn": r.due_on,
                "status": r.status,
                "breached": r.breached,
                "breachedInMonth": r.breached_in_month,
            })
        },
    )
}

/// What [`publish`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Published now.
    Published(PublishReceipt),
    /// Published by an earlier invocation; nothing written.
    AlreadyPublished(PublishReceipt),
    /// The run's rows are the accepted output already and no events were published before them.
    RowsAlreadyAccepted,
}

/// Publishes the changed case-months of `run_id` as correction events into [`OUTBOX`], once.
pub async fn publish(parts: &Parts, run_id: &RunId) -> backfill_core::Result<Outcome> {
    let outbox = Arc::new(SqlOutbox::new(parts.pool.clone(), OUTBOX).await?);
    if let Some(done) = outbox.inspect(run_id).await? {
        say!(
            "   correction events: {} {EVENT_TYPE} events of {run_id} are in {OUTBOX} already (published {}): nothing new",
            done.rows,
            done.published_at.format(super::report::TIME)
        );
        note(parts, run_id, &done).await?;
        return Ok(Outcome::AlreadyPublished(done));
    }
    let control = &parts.control;
    let accepted = control.store().accepted(TARGET).await?.map(|p| p.run_id);
    if accepted.as_ref() == Some(run_id) {
        say!(
            "   correction events: {run_id}'s rows are the accepted output already; there is nothing left to compare, none published"
        );
        return Ok(Outcome::RowsAlreadyAccepted);
    }
    let (approved, _) = control.load(run_id).await?;
    let (artifacts, digests) = control.ledger(run_id).await?;
    let publisher = CorrectionPublisher::new(
        Arc::<SqlOutbox>::clone(&outbox),
        Arc::<backfill_sql::SqlPublisher<CaseSlaMonth>>::clone(&parts.publisher),
        Arc::<backfill_sql::SqlSink<CaseSlaMonth>>::clone(&parts.sink),
        correction(),
    );
    let receipt = publisher
        .publish_corrections(PublishRequest {
            run_id,
            manifest: approved.manifest(),
            digests: &digests,
            artifacts: &artifacts,
            previous: accepted.as_ref(),
            at: control.clock().now(),
        })
        .await?;
    note(parts, run_id, &receipt).await?;
    say!(
        "   published {} correction events to {OUTBOX}",
        receipt.rows
    );
    Ok(Outcome::Published(receipt))
}

/// Records the events' receipt in the run's evidence trail, once (also after a crash right after
/// the outbox committed).
async fn note(
    parts: &Parts,
    run_id: &RunId,
    receipt: &PublishReceipt,
) -> backfill_core::Result<()> {
    let store = parts.control.store();
    let noted = store
        .evidence(run_id)
        .await?
        .iter()
        .any(|e| matches!(&e.record, EvidenceRecord::Note { name, .. } if name == NOTE));
    if noted {
        return Ok(());
    }
    let detail = serde_json::to_value(receipt)
        .map_err(|e| Error::corrupt(format!("correction receipt of run {run_id}"), e))?;
    let record = EvidenceRecord::Note {
        name: NOTE.into(),
        detail,
    };
    store
        .append_evidence(run_id, receipt.published_at, OWNER, &record)
        .await
        .map(drop)
}
