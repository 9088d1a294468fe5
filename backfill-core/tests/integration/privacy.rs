//! Privacy before replay: an unanswered privacy section of a source with personal data blocks
//! approval; a `Withheld` source refuses what its policy forbids when it plans and reads, stages
//! none of a forgotten subject's records, and says in each chunk's evidence how many it withheld.

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::sync::Arc;

use backfill_core::evidence::EvidenceRecord;
use backfill_core::memory::MemorySource;
use backfill_core::prelude::*;
use backfill_core::privacy::{
    DataClass, ForgottenSubjects, MemoryForgotten, PrivacyPolicy, Withheld,
};
use common::*;
use futures::stream::StreamExt;
use proptest::prelude::*;

const REGISTRY: &str = "erasure-requests";

/// The fixture manifest with every privacy question answered for a source with personal data.
fn private_manifest(id: &str) -> RunManifest {
    let mut m = manifest(id);
    m.privacy = Some(PrivacySpec {
        purpose: "finance reporting".into(),
        personal_data: Some(true),
        retained_from: Some(day(2024, 7, 4)),
        target_classification: Some(DataClass::Restricted),
        masked_fields: Some(vec!["account_name".into()]),
        access_role: Some("finance-etl".into()),
        forgotten_registry: Some(REGISTRY.into()),
        ..PrivacySpec::default()
    });
    m
}

fn policy() -> PrivacyPolicy {
    PrivacyPolicy::personal_data()
        .retention_days(730)
        .purposes(["finance reporting"])
        .must_mask(["account_name"])
        .readers(["finance-etl"])
}

fn withheld(
    inner: MemorySource<Event>,
    policy: PrivacyPolicy,
    registry: &MemoryForgotten,
) -> Withheld<MemorySource<Event>, Event> {
    Withheld::new(inner, policy, registry.clone(), |e: &Event| {
        Some(e.account.clone())
    })
    .with_clock(Arc::new(FixedClock(at())))
}

fn blocking_fields(e: &Error) -> Vec<String> {
    match e.root() {
        Error::BlockingFindings { findings, .. } => {
            findings.iter().map(|f| f.field.clone()).collect()
        }
        other => panic!("expected blocking findings, got {other}"),
    }
}

#[test]
fn an_unanswered_privacy_section_blocks_approval_naming_each_open_question() {
    let mut m = manifest("bf-priv-open");
    m.privacy = Some(
        serde_json::from_value(
            serde_json::json!({ "personalData": true, "purpose": "finance reporting" }),
        )
        .unwrap(),
    );
    let err = m.clone().approve("owner", at()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(
        blocking_fields(&err),
        [
            "privacy.retained_from",
            "privacy.target_classification",
            "privacy.masked_fields",
            "privacy.access_role",
            "privacy.forgotten_registry",
        ]
    );
    let f = m.check();
    assert!(f
        .blocking()
        .iter()
        .all(|f| f.code == "privacy_question_unanswered"
            && f.question == "Is privacy/retention policy satisfied?"));
    // Answered, it is approvable.
    private_manifest("bf-priv-answered")
        .approve("owner", at())
        .expect("answered privacy section");
}

#[test]
fn sources_without_personal_data_keep_the_advisory_findings() {
    // No section: a warning, as before.
    let m = manifest("bf-priv-none");
    assert!(!m.check().has_blocking());
    assert!(m.check().contains("privacy_unanswered"));
    // The old three-field section reads, warns when unchecked, and keeps its canonical form.
    let legacy: PrivacySpec = serde_json::from_str(
        r#"{"purpose": "x", "retentionChecked": true, "erasure_checked": false}"#,
    )
    .unwrap();
    let mut m = manifest("bf-priv-legacy");
    m.privacy = Some(legacy.clone());
    assert!(!m.check().has_blocking());
    assert!(m.check().contains("privacy_unchecked"));
    let keys: Vec<String> = serde_json::to_value(&legacy)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, ["erasure_checked", "purpose", "retention_checked"]);
    // Unknown fields are refused, by name.
    let err = serde_json::from_str::<PrivacySpec>(r#"{"personal_dta": true}"#).unwrap_err();
    assert!(err.to_string().contains("personal_dta"), "{err}");
}

#[test]
fn an_input_range_older_than_the_retention_answer_blocks_approval_naming_the_range() {
    let mut m = private_manifest("bf-priv-old");
    if let Some(p) = m.privacy.as_mut() {
        p.retained_from = Some(day(2025, 2, 1));
    }
    let err = m.approve("owner", at()).unwrap_err();
    assert_eq!(blocking_fields(&err), ["source.range"]);
    assert!(
        err.to_string().contains("privacy_retention_exceeded"),
        "{err}"
    );
    assert!(err.to_string().contains("2025-01-01"), "{err}");
}

#[tokio::test]
async fn plan_refuses_what_the_source_policy_forbids_naming_the_field() {
    let registry = MemoryForgotten::new(REGISTRY);
    type Breaks = (Box<dyn Fn(&mut PrivacySpec)>, PrivacyPolicy, &'static str);
    let cases: Vec<Breaks> = vec![
        (
            Box::new(|p| p.purpose = "marketing".into()),
            policy(),
            "privacy.purpose",
        ),
        (
            Box::new(|p| p.masked_fields = Some(vec![])),
            policy(),
            "privacy.masked_fields",
        ),
        (
            Box::new(|p| p.access_role = Some("intern".into())),
            policy(),
            "privacy.access_role",
        ),
        (
            Box::new(|p| p.target_classification = Some(DataClass::Internal)),
            policy(),
            "privacy.target_classification",
        ),
        (
            Box::new(|p| p.forgotten_registry = Some("another-registry".into())),
            policy(),
            "privacy.forgotten_registry",
        ),
        // The legal window is a year at the clock's 2026-07-04: the 2025 range is out.
        (
            Box::new(|_| {}),
            policy().retention_days(365),
            "source.range",
        ),
        (
            Box::new(|p| p.personal_data = None),
            policy(),
            "privacy.personal_data",
        ),
    ];
    for (i, (brk, policy, field)) in cases.into_iter().enumerate() {
        let mut m = private_manifest(&format!("bf-priv-plan-{i}"));
        if let Some(p) = m.privacy.as_mut() {
            brk(p);
        }
        let src = withheld(source(), policy, &registry);
        let err = src.plan(&m).await.unwrap_err();
        assert_eq!(blocking_fields(&err), [field], "case {i}: {err}");
    }
    // The answered manifest plans.
    let src = withheld(source(), policy(), &registry);
    assert_eq!(
        src.plan(&private_manifest("bf-priv-plan-ok"))
            .await
            .unwrap()
            .chunks
            .len(),
        3
    );
    // A source with personal data refuses a manifest without a privacy section.
    let err = src.plan(&manifest("bf-priv-plan-none")).await.unwrap_err();
    assert_eq!(blocking_fields(&err)[0], "privacy");
}

/// Runs the private manifest through the executor over a `Withheld` memory source.
async fn replay(
    id: &str,
    registry: &MemoryForgotten,
) -> (
    Parts,
    ApprovedManifest,
    Arc<Withheld<MemorySource<Event>, Event>>,
) {
    let parts = Parts::new();
    let src = Arc::new(withheld(source(), policy(), registry));
    let runner = Executor::builder(
        parts.control(),
        src.clone(),
        Arc::new(Scale::default()),
        parts.sink.clone(),
        parts.publisher.clone(),
    )
    .build();
    let approved = approve(private_manifest(id));
    runner.control().submit(&approved).await.unwrap();
    let report = runner.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Published, "{report:?}");
    (parts, approved, src)
}

/// The `withheld` count of each chunk's staged evidence, by chunk.
async fn withheld_evidence(parts: &Parts, run: &RunId) -> Vec<(ChunkId, serde_json::Value)> {
    parts
        .store
        .evidence(run)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.record {
            EvidenceRecord::ChunkStaged {
                chunk_id, source, ..
            } => Some((chunk_id, source.expect("privacy evidence"))),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_replay_stages_none_of_a_forgotten_subjects_records_and_evidence_counts_them() {
    let registry = MemoryForgotten::new(REGISTRY);
    registry.forget("B-2");
    let (parts, approved, src) = replay("bf-priv-run", &registry).await;
    let run = approved.run_id();
    let plan = parts.store.plan(run).await.unwrap().unwrap();
    let evidence = withheld_evidence(&parts, run).await;
    assert_eq!(evidence.len(), plan.chunks.len());
    let mut total = 0;
    for chunk in &plan.chunks {
        let staged = parts.sink.chunk_rows(run, &chunk.id);
        assert!(!staged.is_empty());
        assert!(staged.iter().all(|r| r.account != "B-2"), "{}", chunk.id);
        // The count withheld is exactly the chunk's B-2 input.
        let expected = events()
            .iter()
            .filter(|e| e.account == "B-2" && chunk.range.contains_date(e.day) == Some(true))
            .count() as u64;
        let (_, v) = evidence.iter().find(|(id, _)| *id == chunk.id).unwrap();
        assert_eq!(v["withheld"], expected, "{}: {v}", chunk.id);
        assert_eq!(v["registry"], REGISTRY);
        assert_eq!(v["registry_version"], 1);
        assert!(v.get("recounted").is_none());
        assert_eq!(src.withheld(&chunk.id), Some(expected));
        total += expected;
    }
    assert_eq!(total, 90);
    let published: Vec<Row> = parts.publisher.snapshot().into_values().flatten().collect();
    assert_eq!(published.len(), 180);
    assert!(published.iter().all(|r| r.account != "B-2"));
    // One registry lookup per batch: 16 records a batch, 270 records, never one per record.
    assert!(registry.lookups() <= 270 / 16 + 3, "{}", registry.lookups());
    let bundle = parts.control().export(run).await.unwrap();
    assert!(bundle.verify().passed(), "{:?}", bundle.verify());
}

#[tokio::test]
async fn a_subject_forgotten_later_is_never_brought_back_by_a_re_read_or_a_recount() {
    let registry = MemoryForgotten::new(REGISTRY);
    registry.forget("B-2");
    let src = withheld(source(), policy(), &registry);
    let plan = backfill_core::plan::ResolvedPlan::new(
        &"bf-priv-reread".into(),
        backfill_core::manifest::ManifestDigest::of_bytes(b"m"),
        src.plan(&private_manifest("bf-priv-reread")).await.unwrap(),
        at(),
    );
    let chunk = &plan.chunks[0];
    let read = |src: &Withheld<MemorySource<Event>, Event>| {
        let s = src.read(chunk);
        async move {
            s.collect::<Vec<_>>()
                .await
                .into_iter()
                .map(|b| b.unwrap())
                .collect::<Vec<_>>()
                .concat()
        }
    };
    let first = read(&src).await;
    assert!(first.iter().all(|e| e.account != "B-2"));
    assert_eq!(src.withheld(&chunk.id), Some(31));
    // Forgotten after the first read: the next read withholds both, at the new version.
    registry.forget("C-3");
    let second = read(&src).await;
    assert!(second.iter().all(|e| e.account == "A-1"));
    let v = src.chunk_evidence(chunk).await.unwrap().unwrap();
    assert_eq!(
        (v["withheld"].as_u64(), v["registry_version"].as_u64()),
        (Some(62), Some(2))
    );
    // A process that never read the chunk (evidence recovered from the ledger) counts it again
    // against the registry as it is now, and says so.
    let fresh = withheld(source(), policy(), &registry);
    let v = fresh.chunk_evidence(chunk).await.unwrap().unwrap();
    assert_eq!(v["withheld"], 62);
    assert_eq!(v["recounted"], true);
}

/// A registry that forgets a subject while a chunk is being read.
#[derive(Debug, Clone)]
struct Growing(MemoryForgotten);

#[async_trait::async_trait]
impl ForgottenSubjects for Growing {
    fn name(&self) -> &str {
        self.0.name()
    }
    async fn version(&self) -> backfill_core::Result<u64> {
        self.0.version().await
    }
    async fn forgotten(&self, subjects: &[&str]) -> backfill_core::Result<Vec<bool>> {
        let answer = self.0.forgotten(subjects).await;
        self.0.forget(format!("late-{}", self.0.lookups()));
        answer
    }
}

#[tokio::test]
async fn a_registry_that_changes_during_a_read_fails_the_read_as_transient() {
    let registry = Growing(MemoryForgotten::new(REGISTRY));
    let src = Withheld::new(source(), policy(), registry, |e: &Event| {
        Some(e.account.clone())
    })
    .with_clock(Arc::new(FixedClock(at())));
    let m = private_manifest("bf-priv-growing");
    let plan = src.plan(&m).await.unwrap();
    let chunk =
        backfill_core::plan::ResolvedPlan::new(&m.run_id, m.digest(), plan, at()).chunks[0].clone();
    let results: Vec<_> = src.read(&chunk).collect().await;
    let err = results
        .into_iter()
        .find_map(Result::err)
        .expect("a failed read");
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("version"), "{err}");
    assert_eq!(src.withheld(&chunk.id), None);
}

#[tokio::test]
async fn a_chunk_that_left_the_retention_window_after_planning_is_refused_at_read() {
    let registry = MemoryForgotten::new(REGISTRY);
    let m = private_manifest("bf-priv-late");
    let planned = withheld(source(), policy(), &registry);
    let plan = backfill_core::plan::ResolvedPlan::new(
        &m.run_id,
        m.digest(),
        planned.plan(&m).await.unwrap(),
        at(),
    );
    // Read two years later: the window moved past the input.
    let later = at() + chrono::Duration::days(730);
    let reader = withheld(source(), policy(), &registry).with_clock(Arc::new(FixedClock(later)));
    let results: Vec<_> = reader.read(&plan.chunks[0]).collect().await;
    let err = results.into_iter().find_map(Result::err).expect("refused");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.to_string().contains("retention"), "{err}");
    assert!(
        err.to_string().contains(plan.chunks[0].id.as_str()),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever the registry names, no forgotten subject's record is ever read through, and every
    /// record is either read or counted as withheld.
    #[test]
    fn no_forgotten_subject_is_ever_read(
        forgotten in proptest::collection::btree_set("[A-F]", 0..6),
        batch in 1usize..40,
    ) {
        let accounts = ["A", "B", "C", "D", "E", "F"];
        let records: Vec<Event> = (0..200u64)
            .map(|i| Event {
                day: day(2025, 1, 1) + chrono::Days::new(i % 90),
                account: accounts[(i * 7 % 6) as usize].to_owned(),
                cents: i as i64,
            })
            .collect();
        let rt = rt();
        rt.block_on(async {
            let registry = MemoryForgotten::new(REGISTRY);
            for s in &forgotten {
                registry.forget(s.clone());
            }
            let inner = MemorySource::by_date(records.clone(), |e: &Event| e.day).batch_size(batch);
            let src = withheld(inner, policy(), &registry);
            let m = private_manifest("bf-priv-prop");
            let plan = backfill_core::plan::ResolvedPlan::new(&m.run_id, m.digest(), src.plan(&m).await.unwrap(), at());
            let (mut read, mut withheld_total) = (0u64, 0u64);
            for chunk in &plan.chunks {
                let batches: Vec<Vec<Event>> = src.read(chunk).map(|b| b.unwrap()).collect().await;
                prop_assert!(batches.iter().all(|b| !b.is_empty()));
                for e in batches.iter().flatten() {
                    prop_assert!(!forgotten.contains(&e.account));
                    read += 1;
                }
                withheld_total += src.withheld(&chunk.id).unwrap();
            }
            let expected = records.iter().filter(|e| forgotten.contains(&e.account)).count() as u64;
            prop_assert_eq!(withheld_total, expected);
            prop_assert_eq!(read + withheld_total, records.len() as u64);
            Ok(())
        })?;
    }
}

#[test]
fn withheld_records_are_counted_once_per_complete_read_and_not_on_a_recount() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let registry = MemoryForgotten::new(REGISTRY);
    registry.forget("C-3");
    metrics::with_local_recorder(&recorder, || {
        rt().block_on(async {
            let (parts, approved, _) = replay("bf-priv-metric", &registry).await;
            // Evidence recovered by a process that never read the chunk adds nothing.
            let plan = parts.store.plan(approved.run_id()).await.unwrap().unwrap();
            let fresh = withheld(source(), policy(), &registry);
            let v = fresh
                .chunk_evidence(&plan.chunks[1])
                .await
                .unwrap()
                .unwrap();
            assert_eq!(v["withheld"], 28);
        })
    });
    let counted: Vec<(Vec<(String, String)>, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, ..)| k.key().name() == backfill_core::privacy::WITHHELD_RECORDS_TOTAL)
        .map(|(k, _, _, v)| {
            let labels = k
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            match v {
                DebugValue::Counter(n) => (labels, n),
                other => panic!("{other:?}"),
            }
        })
        .collect();
    assert_eq!(
        counted,
        [(vec![("registry".to_owned(), REGISTRY.to_owned())], 90)]
    );
}

/// A registry that forgets `C-3` right after answering its first lookup, as an erasure request
/// landing in the middle of the first chunk's read.
#[derive(Debug, Clone)]
struct ForgetsDuringFirstRead(MemoryForgotten);

#[async_trait::async_trait]
impl ForgottenSubjects for ForgetsDuringFirstRead {
    fn name(&self) -> &str {
        self.0.name()
    }
    async fn version(&self) -> backfill_core::Result<u64> {
        self.0.version().await
    }
    async fn forgotten(&self, subjects: &[&str]) -> backfill_core::Result<Vec<bool>> {
        let answer = self.0.forgotten(subjects).await;
        self.0.forget("C-3");
        answer
    }
}

#[tokio::test]
async fn an_erasure_landing_mid_chunk_is_honoured_by_the_retried_read_and_its_evidence() {
    let memory = MemoryForgotten::new(REGISTRY);
    memory.forget("B-2");
    let parts = Parts::new();
    let src = Withheld::new(
        source(),
        policy(),
        ForgetsDuringFirstRead(memory.clone()),
        |e: &Event| Some(e.account.clone()),
    )
    .with_clock(Arc::new(FixedClock(at())));
    let runner = Executor::builder(
        parts.control(),
        Arc::new(src),
        Arc::new(Scale::default()),
        parts.sink.clone(),
        parts.publisher.clone(),
    )
    .build();
    let approved = approve(private_manifest("bf-priv-midread"));
    runner.control().submit(&approved).await.unwrap();
    let report = runner.run(approved.run_id()).await.unwrap();
    assert_eq!(report.state, RunState::Published, "{report:?}");
    let evidence = withheld_evidence(&parts, approved.run_id()).await;
    assert_eq!(evidence.len(), 3);
    // Every chunk stands on the registry after the erasure: version 2, both subjects withheld.
    assert!(
        evidence.iter().all(|(_, v)| v["registry_version"] == 2),
        "{evidence:?}"
    );
    let total: u64 = evidence
        .iter()
        .map(|(_, v)| v["withheld"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 180);
    let published: Vec<Row> = parts.publisher.snapshot().into_values().flatten().collect();
    assert_eq!(published.len(), 90);
    assert!(published.iter().all(|r| r.account == "A-1"));
}
