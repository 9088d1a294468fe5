//! Correction events: the diff (unit and property tests) and the publisher over the memory outbox.

#![allow(clippy::clone_on_ref_ptr)]

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::correction::{
    ChangeKind, Correction, CorrectionEvent, CorrectionOutbox, CorrectionPublisher, EventOrigin,
};
use backfill_core::digest::{OutputRow, PartitionDigests};
use backfill_core::memory::{MemoryOutbox, MemorySink};
use backfill_core::prelude::*;
use backfill_core::publish::{ChunkArtifact, PublishRequest, RollbackRequest};
use backfill_core::sink::StageRequest;
use backfill_core::Result;
use chrono::{DateTime, TimeZone, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use proptest::prelude::*;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Row {
    id: String,
    case: String,
    month: String,
    due: String,
    run: String,
}

impl OutputRow for Row {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

fn row(run: &str, month: &str, case: &str, due: &str) -> Row {
    Row {
        id: format!("{run}/{case}/{month}"),
        case: case.into(),
        month: month.into(),
        due: due.into(),
        run: run.into(),
    }
}

fn correction() -> Correction<Row> {
    Correction::new(
        "CaseSlaBreachCorrected",
        |r: &Row| r.case.clone(),
        |r: &Row| r.id.clone(),
        // Only the business fact: `run` and `id` differ on every run.
        |r: &Row| serde_json::json!({ "dueOn": r.due }),
    )
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 4, 12, 0, 0).unwrap()
}

const RUN: &str = "bf-002";
const OLD: &str = "bf-001";

#[test]
fn the_diff_has_one_event_per_added_changed_or_removed_key_in_key_order() {
    let run = RunId::new(RUN);
    let prev = RunId::new(OLD);
    let origin = EventOrigin::new(&run, "TIMEZONE_BUG_RESTATEMENT", at()).supersedes(Some(&prev));
    let p = PartitionKey::new("2025-04");
    let old = [
        row(OLD, "2025-04", "C-3", "2025-04-10"),
        row(OLD, "2025-04", "C-1", "2025-04-01"),
        row(OLD, "2025-04", "C-2", "2025-04-02"),
    ];
    let new = [
        row(RUN, "2025-04", "C-4", "2025-04-20"),
        row(RUN, "2025-04", "C-1", "2025-04-01"),
        row(RUN, "2025-04", "C-3", "2025-04-09"),
    ];
    let events = correction()
        .diff_partition(&origin, &p, &old, &new)
        .unwrap();
    let got: Vec<(&str, ChangeKind)> = events
        .iter()
        .map(|e| (e.key.as_str(), e.change()))
        .collect();
    assert_eq!(
        got,
        [
            ("C-2", ChangeKind::Removed),
            ("C-3", ChangeKind::Changed),
            ("C-4", ChangeKind::Added),
        ]
    );
    let c3 = &events[1];
    assert_eq!(c3.corrects_event_id.as_deref(), Some("bf-001/C-3/2025-04"));
    assert_eq!(c3.old, Some(serde_json::json!({ "dueOn": "2025-04-10" })));
    assert_eq!(c3.new, Some(serde_json::json!({ "dueOn": "2025-04-09" })));
    assert_eq!(c3.produced_by_run_id, run);
    assert_eq!(c3.supersedes_run_id.as_ref(), Some(&prev));
    assert_eq!(c3.reason, "TIMEZONE_BUG_RESTATEMENT");
    assert_eq!(
        c3.event_id,
        CorrectionEvent::derive_id(&run, "CaseSlaBreachCorrected", &p, "C-3")
    );
    assert_eq!(events[0].new, None);
    assert_eq!(events[2].corrects_event_id, None);
    assert_eq!(events[2].old, None);
}

#[test]
fn events_serialize_with_the_seeds_camel_case_names_and_read_back() {
    let run = RunId::new(RUN);
    let origin = EventOrigin::new(&run, "fix", at());
    let events = correction()
        .diff_partition(
            &origin,
            &PartitionKey::new("2025-04"),
            &[row(OLD, "2025-04", "C-101", "2025-04-10")],
            &[row(RUN, "2025-04", "C-101", "2025-04-09")],
        )
        .unwrap();
    let json = serde_json::to_value(&events[0]).unwrap();
    let keys: BTreeSet<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let want: BTreeSet<&str> = [
        "eventId",
        "eventType",
        "key",
        "partition",
        "correctsEventId",
        "reason",
        "old",
        "new",
        "producedByRunId",
        "supersedesRunId",
        "producedAt",
    ]
    .into();
    assert_eq!(keys, want);
    assert_eq!(json["eventType"], "CaseSlaBreachCorrected");
    assert_eq!(json["producedByRunId"], RUN);
    let back: CorrectionEvent = serde_json::from_value(json).unwrap();
    assert_eq!(back, events[0]);
}

#[test]
fn a_key_twice_on_one_side_is_refused_naming_run_partition_and_key() {
    let run = RunId::new(RUN);
    let origin = EventOrigin::new(&run, "fix", at());
    let dup = [
        row(RUN, "2025-04", "C-1", "2025-04-01"),
        row(RUN, "2025-04", "C-1", "2025-04-02"),
    ];
    let err = correction()
        .diff_partition(&origin, &PartitionKey::new("2025-04"), &[], &dup)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused);
    let msg = err.to_string();
    assert!(
        msg.contains(RUN) && msg.contains("C-1") && msg.contains("2025-04"),
        "{msg}"
    );
}

proptest! {
    /// Same input gives the same events in any input order; every changed, added or removed key
    /// has exactly one event; unchanged keys none.
    #[test]
    fn the_diff_is_deterministic_and_covers_every_changed_key_once(
        old in prop::collection::btree_map(0u8..40, 0u8..4, 0..30),
        new in prop::collection::btree_map(0u8..40, 0u8..4, 0..30),
        seed in any::<u64>(),
    ) {
        let rows = |m: &BTreeMap<u8, u8>, run: &str| -> Vec<Row> {
            m.iter().map(|(k, v)| row(run, "2025-01", &format!("C-{k:02}"), &format!("d{v}"))).collect()
        };
        let (a, b) = (rows(&old, OLD), rows(&new, RUN));
        let run = RunId::new(RUN);
        let origin = EventOrigin::new(&run, "fix", at());
        let p = PartitionKey::new("2025-01");
        let c = correction();
        let first = c.diff_partition(&origin, &p, &a, &b).unwrap();
        // Shuffled input, deterministically from the seed.
        let mut a2 = a.clone();
        let mut b2 = b.clone();
        let rot = |v: &mut Vec<Row>| if !v.is_empty() { let n = (seed as usize) % v.len(); v.rotate_left(n); v.reverse(); };
        rot(&mut a2);
        rot(&mut b2);
        let again = c.diff_partition(&origin, &p, &a2, &b2).unwrap();
        prop_assert_eq!(&first, &again);
        let keys: Vec<&str> = first.iter().map(|e| e.key.as_str()).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        sorted.dedup();
        prop_assert_eq!(&keys, &sorted, "sorted by key, each once");
        let changed: BTreeSet<String> = old.keys().chain(new.keys())
            .filter(|k| old.get(k) != new.get(k))
            .map(|k| format!("C-{k:02}"))
            .collect();
        let got: BTreeSet<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        prop_assert_eq!(got, changed);
        let ids: BTreeSet<&str> = first.iter().map(|e| e.event_id.as_str()).collect();
        prop_assert_eq!(ids.len(), first.len());
    }
}

/// What readers see now: fixed rows per partition.
#[derive(Debug, Default)]
struct Accepted(BTreeMap<PartitionKey, Vec<Row>>);

impl TargetReader<Row> for Accepted {
    fn read_current<'a>(&'a self, partition: &'a PartitionKey) -> BoxStream<'a, Result<Vec<Row>>> {
        let rows = self.0.get(partition).cloned().unwrap_or_default();
        stream::iter([Ok(rows)]).boxed()
    }
}

/// An outbox that commits but then reports a timeout: the unknown outcome.
#[derive(Debug)]
struct LostReply(Arc<MemoryOutbox>);

#[async_trait]
impl CorrectionOutbox for LostReply {
    fn descriptor(&self) -> SinkDescriptor {
        self.0.descriptor()
    }

    async fn write(
        &self,
        run_id: &RunId,
        events: &[CorrectionEvent],
        receipt: &PublishReceipt,
    ) -> Result<PublishReceipt> {
        self.0.write(run_id, events, receipt).await?;
        Err(Error::transient("test", "timed out after commit"))
    }

    async fn inspect(&self, run_id: &RunId) -> Result<Option<PublishReceipt>> {
        self.0.inspect(run_id).await
    }
}

struct Fixture {
    sink: Arc<MemorySink<Row>>,
    accepted: Arc<Accepted>,
    manifest: RunManifest,
    digests: PartitionDigests,
    artifacts: Vec<ChunkArtifact>,
    previous: RunId,
}

impl Fixture {
    async fn new() -> Self {
        let months = ["2025-01", "2025-02"];
        let mut accepted = Accepted::default();
        let mut staged = Vec::new();
        for m in months {
            let old: Vec<Row> = (0..5)
                .map(|i| row(OLD, m, &format!("C-{i}"), "a"))
                .collect();
            accepted.0.insert(m.into(), old);
            // C-0 unchanged, C-1 changed, C-2 removed, C-5 added, C-3/C-4 unchanged.
            for (i, due) in [(0, "a"), (1, "b"), (3, "a"), (4, "a"), (5, "a")] {
                staged.push(row(RUN, m, &format!("C-{i}"), due));
            }
        }
        let mut m = RunManifest::new(RUN, RunKind::Restatement, ExecutionMode::Backfill);
        m.reason = "TIMEZONE_BUG_RESTATEMENT".into();
        m.target = TargetSpec {
            kind: "outbox".into(),
            name: "case_sla_corrections".into(),
            mutation: Some(Mutation::CorrectionEvents),
            partitions: months.iter().map(|m| PartitionKey::new(*m)).collect(),
            ..Default::default()
        };
        let sink = Arc::new(MemorySink::new("staging"));
        let ctx = TransformContext::for_manifest(&m, at());
        let digests = PartitionDigests::of_rows(&staged);
        let receipt = sink
            .stage(
                StageRequest {
                    run_id: &m.run_id,
                    chunk_id: &"c0".into(),
                    attempt: 1,
                    lineage: ctx.lineage(),
                },
                stream::iter([Ok(staged)]).boxed(),
            )
            .await
            .unwrap();
        Self {
            sink,
            accepted: Arc::new(accepted),
            manifest: m,
            digests,
            artifacts: vec![ChunkArtifact {
                chunk_id: "c0".into(),
                attempt: 1,
                rows: receipt.rows,
                artifact: receipt.artifact,
            }],
            previous: OLD.into(),
        }
    }

    fn publisher(&self, outbox: Arc<dyn CorrectionOutbox>) -> CorrectionPublisher<Row> {
        CorrectionPublisher::new(
            outbox,
            self.accepted.clone(),
            self.sink.clone(),
            correction(),
        )
    }

    fn request(&self) -> PublishRequest<'_> {
        PublishRequest {
            run_id: &self.manifest.run_id,
            manifest: &self.manifest,
            digests: &self.digests,
            artifacts: &self.artifacts,
            previous: Some(&self.previous),
            at: at(),
        }
    }
}

#[tokio::test]
async fn publishing_writes_one_event_per_changed_key_and_republishing_writes_nothing() {
    let f = Fixture::new().await;
    let outbox = Arc::new(MemoryOutbox::new("case_sla_corrections"));
    let p = f.publisher(outbox.clone());
    assert!(p.capabilities().supports("correction_events"));
    assert!(!p.capabilities().rollback);
    assert_eq!(p.inspect(&f.manifest.run_id).await.unwrap(), None);
    let first = p.publish(f.request()).await.unwrap();
    assert_eq!(first.rows, 6, "3 keys in each of 2 months");
    assert_eq!(first.mutation, "correction_events");
    assert_eq!(first.target, "case_sla_corrections");
    assert_eq!(
        first.partitions,
        [PartitionKey::new("2025-01"), "2025-02".into()]
    );
    let events = outbox.events();
    let got: Vec<(String, String, ChangeKind)> = events
        .iter()
        .map(|e| (e.partition.to_string(), e.key.clone(), e.change()))
        .collect();
    let want: Vec<(String, String, ChangeKind)> = ["2025-01", "2025-02"]
        .iter()
        .flat_map(|m| {
            [
                ("C-1", ChangeKind::Changed),
                ("C-2", ChangeKind::Removed),
                ("C-5", ChangeKind::Added),
            ]
            .map(|(k, c)| ((*m).to_owned(), k.to_owned(), c))
        })
        .collect();
    assert_eq!(got, want);
    assert!(events.iter().all(
        |e| e.supersedes_run_id.as_ref().map(RunId::as_str) == Some(OLD)
            && e.reason == "TIMEZONE_BUG_RESTATEMENT"
            && e.produced_at == at()
    ));

    let again = p.publish(f.request()).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(outbox.events().len(), 6);
    assert_eq!(outbox.writes(), 1);
    assert_eq!(p.inspect(&f.manifest.run_id).await.unwrap(), Some(first));
}

#[tokio::test]
async fn after_an_unknown_outcome_inspect_finds_the_write_and_nothing_is_written_twice() {
    let f = Fixture::new().await;
    let inner = Arc::new(MemoryOutbox::new("case_sla_corrections"));
    let p = f.publisher(Arc::new(LostReply(inner.clone())));
    let err = p.publish(f.request()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let found = p.inspect(&f.manifest.run_id).await.unwrap().unwrap();
    let retried = p.publish(f.request()).await.unwrap();
    assert_eq!(retried, found);
    assert_eq!(inner.writes(), 1);
    assert_eq!(inner.events().len(), 6);
}

#[tokio::test]
async fn refused_when_the_mutation_target_or_ledger_does_not_match() {
    let f = Fixture::new().await;
    let outbox = Arc::new(MemoryOutbox::new("case_sla_corrections"));
    let p = f.publisher(outbox.clone());

    let mut replace = f.manifest.clone();
    replace.target.mutation = Some(Mutation::ReplacePartitions);
    let req = PublishRequest {
        manifest: &replace,
        ..f.request()
    };
    let err = p.publish(req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotSupported, "{err}");

    let mut other = f.manifest.clone();
    other.target.name = "elsewhere".into();
    let req = PublishRequest {
        manifest: &other,
        ..f.request()
    };
    assert_eq!(p.publish(req).await.unwrap_err().kind(), ErrorKind::Refused);

    // The accepted output already is the run's own: nothing left to compare.
    let req = PublishRequest {
        previous: Some(&f.manifest.run_id),
        ..f.request()
    };
    assert_eq!(p.publish(req).await.unwrap_err().kind(), ErrorKind::Refused);

    // Staged rows that are not what the ledger recorded.
    let wrong = PartitionDigests::default();
    let req = PublishRequest {
        digests: &wrong,
        ..f.request()
    };
    let err = p.publish(req).await.unwrap_err();
    assert!(err.to_string().contains("ledger"), "{err}");
    assert!(outbox.events().is_empty());
    assert_eq!(outbox.writes(), 0);

    // Alongside a replace-partitions publication: publish_corrections takes its manifest.
    let req = PublishRequest {
        manifest: &replace,
        ..f.request()
    };
    assert_eq!(p.publish_corrections(req).await.unwrap().rows, 6);
}

#[tokio::test]
async fn rollback_is_not_supported_and_never_happened() {
    let f = Fixture::new().await;
    let p = f.publisher(Arc::new(MemoryOutbox::new("case_sla_corrections")));
    p.publish(f.request()).await.unwrap();
    let err = p
        .rollback(RollbackRequest {
            from: &f.manifest.run_id,
            to: &f.previous,
            manifest: &f.manifest,
            at: at(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotSupported);
    assert_eq!(
        p.inspect_rollback(&f.manifest.run_id, &f.previous)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn the_memory_outbox_refuses_an_event_id_twice_and_writes_nothing() {
    let outbox = MemoryOutbox::new("o");
    let run = RunId::new(RUN);
    let origin = EventOrigin::new(&run, "fix", at());
    let events = correction()
        .diff_partition(
            &origin,
            &PartitionKey::new("2025-01"),
            &[],
            &[row(RUN, "2025-01", "C-1", "a")],
        )
        .unwrap();
    let receipt = PublishReceipt {
        run_id: run.clone(),
        target: "o".into(),
        mutation: "correction_events".into(),
        partitions: vec!["2025-01".into()],
        rows: 2,
        published_at: at(),
        reference: "memory".into(),
        digests: PartitionDigests::default(),
    };
    let twice = [events[0].clone(), events[0].clone()];
    let err = outbox.write(&run, &twice, &receipt).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(outbox.events().is_empty());
    assert_eq!(outbox.inspect(&run).await.unwrap(), None);
}
