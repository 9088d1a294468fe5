//! The main job, run as a process on fresh data directories, checked against an independent
//! computation of the 2025 breach counts.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use backfill_core::digest::PartitionDigests;
use backfill_core::evidence::EvidenceRecord;
use backfill_core::prelude::*;
use backfill_core::store::ChunkStatus;
use backfill_examples::sla::calendar::{jurisdiction, BusinessCalendar, CALENDAR_RESTATED};
use backfill_examples::sla::diff::{DiffAgainstAccepted, SlaDiff};
use backfill_examples::sla::events::{generate, CaseHistory, EventKind, GeneratorConfig};
use backfill_examples::sla::job::{HISTORY_RUN, RESTATEMENT_RUN, TARGET};
use chrono::{Datelike, NaiveDate};
use common::{job, published, store, table, text, together, warehouse};
use sqlx::sqlite::SqlitePool;
use sqlx::Row;

/// Breaches per (jurisdiction, month) in 2025, by walking every case day by day: a separate
/// implementation of the SLA rules (local dates, business days, pauses, decision), sharing only the
/// reference data (time zones, SLA lengths, the restated holiday calendar) with the transform.
fn expected_breaches(cases: &[CaseHistory]) -> BTreeMap<(String, String), u64> {
    let cal = BusinessCalendar::version(CALENDAR_RESTATED).unwrap();
    let y2025 = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    let y2026 = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let mut out = BTreeMap::new();
    for c in cases {
        let j = jurisdiction(&c.jurisdiction).unwrap();
        let on = |k: EventKind| -> Vec<NaiveDate> {
            c.events
                .iter()
                .filter(|e| e.kind == k)
                .map(|e| e.at.with_timezone(&j.tz).date_naive())
                .collect()
        };
        let opened = on(EventKind::Opened)[0];
        let (pauses, resumes, decided) = (
            on(EventKind::Paused),
            on(EventKind::Resumed),
            on(EventKind::Decided).first().copied(),
        );
        let mut paused = false;
        let mut used = 0;
        let mut day = opened;
        while day < y2026 {
            day = day.succ_opt().unwrap();
            if pauses.contains(&day) {
                paused = true;
            }
            if resumes.contains(&day) {
                paused = false;
            }
            let weekend = day.weekday().number_from_monday() > 5;
            let holiday = cal.holidays(j.code).any(|h| h == day);
            if !weekend && !holiday && !paused {
                used += 1;
            }
            if used == j.sla_business_days {
                // `day` is the due date: breached tomorrow unless decided by today.
                if decided.is_none_or(|d| d > day) {
                    let breach = day.succ_opt().unwrap();
                    if breach >= y2025 && breach < y2026 {
                        let key = (c.jurisdiction.clone(), breach.format("%Y-%m").to_string());
                        *out.entry(key).or_insert(0) += 1;
                    }
                }
                break;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_job_restates_2025_and_a_second_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let first = job(dir.path(), &[]);
    assert!(first.status.success(), "{}", text(&first));
    let log = text(&first);
    assert!(log.contains("owner review"), "{log}");
    assert!(log.contains(&format!("supersedes {HISTORY_RUN}")), "{log}");

    let db = warehouse(dir.path()).await;
    let q = format!(
        "SELECT month, jurisdiction, produced_by_run_id, transform_version, reference_data_version, \
         restatement_reason, SUM(breached_in_month) AS breaches, COUNT(*) AS n \
         FROM {} GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2",
        table()
    );
    let rows = sqlx::query(&q).fetch_all(&db).await.unwrap();
    let mut breaches_published = BTreeMap::new();
    let mut months = std::collections::BTreeSet::new();
    for r in &rows {
        let month: String = r.get("month");
        // Every published row carries the restatement's lineage.
        assert_eq!(r.get::<String, _>("produced_by_run_id"), RESTATEMENT_RUN);
        assert_eq!(r.get::<String, _>("transform_version"), "3.1.0");
        assert_eq!(
            r.get::<String, _>("reference_data_version"),
            "jurisdiction_calendar/v2026-06-restated"
        );
        assert_eq!(r.get::<String, _>("restatement_reason"), "TIMEZONE_BUG_FIX");
        let breaches: i64 = r.get("breaches");
        breaches_published.insert(
            (r.get::<String, _>("jurisdiction"), month.clone()),
            u64::try_from(breaches).unwrap(),
        );
        months.insert(month);
    }
    // Exactly the twelve 2025 partitions: the December 2024 warm-up produced no rows.
    let want: Vec<String> = (1..=12).map(|m| format!("2025-{m:02}")).collect();
    assert_eq!(months.into_iter().collect::<Vec<_>>(), want);
    // ...but it was read: cases opened in December 2024 are in January's partition.
    let december_cases: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {} WHERE month = '2025-01' AND opened_on < '2025-01-01'",
        table()
    ))
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(december_cases > 100, "{december_cases}");

    // Breach counts by jurisdiction and month match the independent computation.
    let cases = generate(&GeneratorConfig::default());
    let expected = expected_breaches(&cases);
    let breaches_published: BTreeMap<_, _> = breaches_published
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(breaches_published, expected);
    assert!(expected.values().sum::<u64>() > 500);

    // The previously accepted run is superseded; the pointer names the restatement.
    let s = store(dir.path()).await;
    let history = s.run(&HISTORY_RUN.into()).await.unwrap().unwrap();
    assert_eq!(history.state, RunState::Superseded);
    let restated = s.run(&RESTATEMENT_RUN.into()).await.unwrap().unwrap();
    assert_eq!(restated.state, RunState::Published);
    let pointer = s.accepted(TARGET).await.unwrap().unwrap();
    assert_eq!(pointer.run_id.as_str(), RESTATEMENT_RUN);

    // Every changed case-month is in the owner's CSV, whose hash the evidence keeps.
    let trail = s.evidence(&RESTATEMENT_RUN.into()).await.unwrap();
    let diff: SlaDiff = trail
        .iter()
        .rev()
        .find_map(|e| match &e.record {
            EvidenceRecord::Validation(o) if o.validator == DiffAgainstAccepted::NAME => {
                Some(serde_json::from_value(o.details.clone()).unwrap())
            }
            _ => None,
        })
        .expect("the diff is in evidence");
    let changed: u64 = diff.months.iter().map(|m| m.changed_rows).sum();
    let csv_path = dir.path().join(format!("{RESTATEMENT_RUN}-diff.csv"));
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert_eq!(csv.lines().count() as u64, changed + 1);
    assert!(changed > 100);
    let sha = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(csv.as_bytes()))
    );
    let recorded = diff.csv.unwrap();
    assert!(recorded.ends_with(&sha), "{recorded}");

    // Running again finds the published run: no new rows, evidence or publication.
    let total = |db: SqlitePool| async move {
        sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {}", table()))
            .fetch_one(&db)
            .await
            .unwrap()
    };
    let rows_before = total(db.clone()).await;
    let evidence_before = s.evidence(&RESTATEMENT_RUN.into()).await.unwrap().len();
    let second = job(dir.path(), &[]);
    assert!(second.status.success(), "{}", text(&second));
    assert!(
        text(&second).contains("nothing republished"),
        "{}",
        text(&second)
    );
    assert_eq!(total(db.clone()).await, rows_before);
    assert_eq!(
        s.evidence(&RESTATEMENT_RUN.into()).await.unwrap().len(),
        evidence_before
    );
    assert_eq!(
        s.run(&RESTATEMENT_RUN.into()).await.unwrap().unwrap().state,
        RunState::Published
    );
}

async fn ledger(dir: &Path) -> (PartitionDigests, Vec<(u32, u32)>) {
    let s = store(dir).await;
    let chunks = s.chunks(&RESTATEMENT_RUN.into()).await.unwrap();
    let mut d = PartitionDigests::default();
    for c in &chunks {
        assert_eq!(c.status, ChunkStatus::Done);
        d.merge(&c.digests);
    }
    (d, chunks.iter().map(|c| (c.index, c.attempts)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_at_the_unfinished_chunk_with_the_same_digests() {
    let straight = tempfile::tempdir().unwrap();
    let out = job(straight.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));

    let crashed = tempfile::tempdir().unwrap();
    let out = job(crashed.path(), &["--crash-after-chunks", "4"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("injected crash after 4 chunks"));
    let s = store(crashed.path()).await;
    let run = s.run(&RESTATEMENT_RUN.into()).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Running);
    let done = s.chunks(&RESTATEMENT_RUN.into()).await.unwrap();
    assert_eq!(
        done.iter()
            .filter(|c| c.status == ChunkStatus::Done)
            .count(),
        4
    );

    let out = job(crashed.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("4 already done: resuming at chunk 5"),
        "{}",
        text(&out)
    );
    let (want, _) = ledger(straight.path()).await;
    let (got, attempts) = ledger(crashed.path()).await;
    assert_eq!(got, want);
    assert!(want.total_rows() > 10_000);
    // The four chunks finished before the crash were not read again.
    for (index, n) in attempts {
        if index < 4 {
            assert_eq!(n, 1, "chunk {index} was attempted {n} times");
        }
    }
    // And the published tables hold the same business rows.
    let q = format!(
        "SELECT id, case_id, month, due_on, status, breached FROM {} ORDER BY id",
        table()
    );
    let read = |dir: &Path| {
        let dir = dir.to_owned();
        let q = q.clone();
        async move {
            let db = warehouse(&dir).await;
            sqlx::query(&q)
                .fetch_all(&db)
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r.get::<String, _>(0),
                        r.get::<String, _>(2),
                        r.get::<Option<String>, _>(3),
                        r.get::<String, _>(4),
                        r.get::<bool, _>(5),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(read(crashed.path()).await, read(straight.path()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_visible_until_the_owner_accepts_in_a_later_invocation() {
    let dir = tempfile::tempdir().unwrap();
    let waiting = job(dir.path(), &["--owner-decision", "wait"]);
    assert!(waiting.status.success(), "{}", text(&waiting));
    assert!(text(&waiting).contains("waiting for regulatory-reporting-owner"));
    let s = store(dir.path()).await;
    let run = s.run(&RESTATEMENT_RUN.into()).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::AwaitingReview);
    // Staged and validated, but readers still see only the accepted history.
    let db = warehouse(dir.path()).await;
    let producers = |db: SqlitePool| async move {
        sqlx::query_scalar::<_, String>(&format!(
            "SELECT DISTINCT produced_by_run_id FROM {}",
            table()
        ))
        .fetch_all(&db)
        .await
        .unwrap()
    };
    assert_eq!(producers(db.clone()).await, vec![HISTORY_RUN.to_owned()]);

    let accepted = job(dir.path(), &["--owner-decision", "accept"]);
    assert!(accepted.status.success(), "{}", text(&accepted));
    assert!(
        !text(&accepted).contains("chunks planned"),
        "no chunk is staged again after review: {}",
        text(&accepted)
    );
    assert_eq!(producers(db).await, vec![RESTATEMENT_RUN.to_owned()]);
    let trail = s.evidence(&RESTATEMENT_RUN.into()).await.unwrap();
    let review = trail
        .iter()
        .find(|e| matches!(e.record, EvidenceRecord::Review { .. }))
        .unwrap();
    assert_eq!(review.by, "regulatory-reporting-owner");
    assert!(matches!(
        review.record,
        EvidenceRecord::Review { accept: true, .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_restores_the_history_rows_and_is_not_undone_by_a_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let waiting = job(dir.path(), &["--owner-decision", "wait"]);
    assert!(waiting.status.success(), "{}", text(&waiting));
    let db = warehouse(dir.path()).await;
    let history_rows = published(&db).await;
    assert!(history_rows.iter().all(|r| r.4 == HISTORY_RUN));

    let accepted = job(dir.path(), &[]);
    assert!(accepted.status.success(), "{}", text(&accepted));
    assert_ne!(published(&db).await, history_rows);

    let rolled = job(dir.path(), &["--rollback", "dashboard owners not ready"]);
    assert!(rolled.status.success(), "{}", text(&rolled));
    assert!(text(&rolled).contains("rolled back by regulatory-reporting-owner"));
    // Exactly the accepted history again, row for row.
    assert_eq!(published(&db).await, history_rows);
    let s = store(dir.path()).await;
    let state = |id: &'static str| common::state(&s, id);
    assert_eq!(state(RESTATEMENT_RUN).await, RunState::RolledBack);
    assert_eq!(state(HISTORY_RUN).await, RunState::Published);
    assert_eq!(
        s.accepted(TARGET).await.unwrap().unwrap().run_id.as_str(),
        HISTORY_RUN
    );
    let trail = s.evidence(&RESTATEMENT_RUN.into()).await.unwrap();
    let reason = trail
        .iter()
        .find_map(|e| match &e.record {
            EvidenceRecord::RolledBack { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(reason, "dashboard owners not ready");

    // Running the job again neither republishes the restatement nor rolls back twice.
    let again = job(dir.path(), &["--rollback", "dashboard owners not ready"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("already rolled back"),
        "{}",
        text(&again)
    );
    assert_eq!(published(&db).await, history_rows);
    assert_eq!(state(RESTATEMENT_RUN).await, RunState::RolledBack);
}

/// Two workers of the job started at the same moment on a fresh data directory, three times: both
/// succeed (no migration race, no duplicate load of the bronze events, one submission, one approval,
/// one review, one publication), and the restatement is published once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_started_together_on_a_fresh_directory_all_succeed() {
    for attempt in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        for (i, o) in together(&["--data-dir", data]).iter().enumerate() {
            assert!(
                o.status.success(),
                "try {attempt}, worker {i}:\n{}",
                text(o)
            );
        }
        let rows = published(&warehouse(dir.path()).await).await;
        let ids: std::collections::BTreeSet<&String> = rows.iter().map(|r| &r.0).collect();
        assert_eq!(ids.len(), rows.len(), "try {attempt}: duplicated rows");
        assert!(rows.len() > 10_000, "try {attempt}: {}", rows.len());
        assert!(rows.iter().all(|r| r.4 == RESTATEMENT_RUN), "try {attempt}");
        let store = store(dir.path()).await;
        let state = |id: &'static str| common::state(&store, id);
        assert_eq!(state(RESTATEMENT_RUN).await, RunState::Published);
        assert_eq!(state(HISTORY_RUN).await, RunState::Superseded);
    }
}
