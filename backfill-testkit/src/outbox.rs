//! Conformance checks for [`CorrectionOutbox`] implementations, one per contract clause that can be
//! observed through the trait alone.
//!
//! Every check takes an outbox and uses run ids of its own (`<prefix>-<check>-…`), so one outbox
//! (one table, one topic) can run all of them; pass a `prefix` unique to the outbox when it is
//! reused across test runs. What a check cannot see through the trait (rows or messages actually
//! stored) the adapter's own tests read back with an independent reader.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use backfill_core::memory::MemoryOutbox;
//! let failures = backfill_testkit::outbox::run_all(&MemoryOutbox::new("corrections"), "doc").await;
//! assert!(failures.is_empty(), "{failures:?}");
//! # });
//! ```

use backfill_core::correction::{Correction, CorrectionEvent, CorrectionOutbox, EventOrigin};
use backfill_core::digest::PartitionDigests;
use backfill_core::ids::{PartitionKey, RunId};
use backfill_core::publish::PublishReceipt;
use chrono::{DateTime, TimeZone, Utc};

use crate::conformance::fail;
use crate::{CheckResult, ConformanceFailure, TestRow};

/// The names of the checks, in the order [`run_all`] runs them.
pub const CHECKS: [&str; 3] = [
    "inspect_answers_after_write",
    "write_is_idempotent_per_run",
    "a_repeated_event_id_writes_nothing",
];

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 4, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

fn io(check: &'static str, clause: &'static str, e: backfill_core::Error) -> ConformanceFailure {
    fail(check, clause, format!("unexpected error: {e}"))
}

/// `n` added keys in partition `2025-01`, as run `run` corrects them.
fn events(run: &RunId, n: usize) -> Vec<CorrectionEvent> {
    let c = Correction::new(
        "TestCorrected",
        |r: &TestRow| r.key.clone(),
        |r: &TestRow| r.id.clone(),
        |r: &TestRow| serde_json::json!({ "value": r.value }),
    );
    let rows: Vec<TestRow> = (0..n)
        .map(|i| TestRow {
            id: format!("{run}-{i}"),
            partition: "2025-01".into(),
            key: format!("k-{i:03}"),
            value: i64::try_from(i).unwrap_or_default(),
            note: None,
        })
        .collect();
    let origin = EventOrigin::new(run, "conformance", at());
    c.diff_partition(&origin, &PartitionKey::new("2025-01"), &[], &rows)
        .unwrap_or_default()
}

fn receipt(run: &RunId, outbox: &dyn CorrectionOutbox, events: usize) -> PublishReceipt {
    PublishReceipt {
        run_id: run.clone(),
        target: outbox.descriptor().name,
        mutation: "correction_events".into(),
        partitions: vec![PartitionKey::new("2025-01")],
        rows: events as u64,
        published_at: at(),
        reference: "conformance".into(),
        digests: PartitionDigests::default(),
    }
}

/// Clause 4: nothing before a write; after it, `inspect` returns the receipt `write` returned.
pub async fn inspect_answers_after_write(o: &dyn CorrectionOutbox, prefix: &str) -> CheckResult {
    const CHECK: &str = "inspect_answers_after_write";
    const CLAUSE: &str = "4. inspect answers from the outbox whether the run was written";
    let run = RunId::new(format!("{prefix}-{CHECK}"));
    let before = o.inspect(&run).await.map_err(|e| io(CHECK, CLAUSE, e))?;
    if before.is_some() {
        return Err(fail(
            CHECK,
            CLAUSE,
            format!("run {run} found before any write"),
        ));
    }
    let ev = events(&run, 3);
    let written = o
        .write(&run, &ev, &receipt(&run, o, ev.len()))
        .await
        .map_err(|e| io(CHECK, CLAUSE, e))?;
    match o.inspect(&run).await.map_err(|e| io(CHECK, CLAUSE, e))? {
        Some(found) if found == written => Ok(()),
        other => Err(fail(
            CHECK,
            CLAUSE,
            format!("after writing run {run}, inspect returned {other:?}, not {written:?}"),
        )),
    }
}

/// Clause 2: a second write of a run, even with other events and receipt, returns the first receipt.
pub async fn write_is_idempotent_per_run(o: &dyn CorrectionOutbox, prefix: &str) -> CheckResult {
    const CHECK: &str = "write_is_idempotent_per_run";
    const CLAUSE: &str =
        "2. a second write for the same run writes nothing and returns the stored receipt";
    let run = RunId::new(format!("{prefix}-{CHECK}"));
    let ev = events(&run, 4);
    let first = o
        .write(&run, &ev, &receipt(&run, o, ev.len()))
        .await
        .map_err(|e| io(CHECK, CLAUSE, e))?;
    let fewer = &ev[..1];
    let second = o
        .write(&run, fewer, &receipt(&run, o, fewer.len()))
        .await
        .map_err(|e| io(CHECK, CLAUSE, e))?;
    if second != first {
        return Err(fail(
            CHECK,
            CLAUSE,
            format!("the second write of run {run} returned {second:?}, the first {first:?}"),
        ));
    }
    Ok(())
}

/// Clauses 1 and 3: a write that repeats a stored event id fails and leaves nothing of itself: no
/// receipt, and its other events can then be written by the same run.
pub async fn a_repeated_event_id_writes_nothing(
    o: &dyn CorrectionOutbox,
    prefix: &str,
) -> CheckResult {
    const CHECK: &str = "a_repeated_event_id_writes_nothing";
    const CLAUSE: &str = "1./3. a write is all or nothing and stores an event id at most once";
    let first = RunId::new(format!("{prefix}-{CHECK}-1"));
    let stored = events(&first, 2);
    o.write(&first, &stored, &receipt(&first, o, stored.len()))
        .await
        .map_err(|e| io(CHECK, CLAUSE, e))?;
    let second = RunId::new(format!("{prefix}-{CHECK}-2"));
    let own = events(&second, 3);
    let mut bad = own.clone();
    bad.push(stored[0].clone());
    if o.write(&second, &bad, &receipt(&second, o, bad.len()))
        .await
        .is_ok()
    {
        return Err(fail(
            CHECK,
            CLAUSE,
            format!(
                "run {second} stored event {} of run {first} again",
                stored[0].event_id
            ),
        ));
    }
    if let Some(r) = o.inspect(&second).await.map_err(|e| io(CHECK, CLAUSE, e))? {
        return Err(fail(
            CHECK,
            CLAUSE,
            format!("the failed write left a receipt: {r:?}"),
        ));
    }
    o.write(&second, &own, &receipt(&second, o, own.len()))
        .await
        .map(drop)
        .map_err(|e| {
            fail(
                CHECK,
                CLAUSE,
                format!("the failed write of run {second} left some of its events: {e}"),
            )
        })
}

/// Runs every check on `o`; the failures, empty when it conforms.
pub async fn run_all(o: &dyn CorrectionOutbox, prefix: &str) -> Vec<ConformanceFailure> {
    let mut out = Vec::new();
    for r in [
        inspect_answers_after_write(o, prefix).await,
        write_is_idempotent_per_run(o, prefix).await,
        a_repeated_event_id_writes_nothing(o, prefix).await,
    ] {
        if let Err(f) = r {
            out.push(f);
        }
    }
    out
}
