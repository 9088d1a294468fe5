//! A crash in every window of publish and of rollback, on every engine and mutation: before the
//! target commits, after it commits (an unknown outcome), between its transaction and the view
//! switch (the MySQL/MariaDB window, simulated everywhere), and at each step of the control plane's
//! bookkeeping up to and after the store's pointer. A fresh `Control` then retries, and store,
//! target and readers end on one pointer, with one publication recorded and the rows published once.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;
use crate::publishing;

use std::sync::Arc;

use backfill_core::evidence::EvidenceKind;
use backfill_core::memory::MemorySource;
use backfill_core::prelude::*;
use backfill_sql::{SqlPool, SqlPublisher, SqlSink, SqlStore};
use publishing::faults::{Crash, Injected};
use publishing::{at, merge, rows, run_manifest, view_of, Pass, Sla};

const MONTHS: [&str; 2] = ["2025-01", "2025-02"];

/// Each scenario crashes publish in one window and rollback in the matching one.
fn windows() -> Vec<(Crash, Crash)> {
    use RunState::*;
    vec![
        (Crash::BeforeCommit, Crash::BeforeCommit),
        (Crash::AfterCommit, Crash::AfterCommit),
        (Crash::BeforeViewSwitch, Crash::BeforeViewSwitch),
        (
            Crash::Evidence(EvidenceKind::Published),
            Crash::Evidence(EvidenceKind::RolledBack),
        ),
        (
            Crash::TransitionTo(Published),
            Crash::TransitionTo(RolledBack),
        ),
        (
            Crash::TransitionTo(Superseded),
            Crash::TransitionTo(Published),
        ),
        (Crash::BeforeSwap, Crash::BeforeSwap),
        (Crash::AfterSwap, Crash::AfterSwap),
        (
            Crash::Evidence(EvidenceKind::PointerMoved),
            Crash::Evidence(EvidenceKind::PointerMoved),
        ),
    ]
}

/// One engine namespace with a SQL run store shared by every scenario in it.
struct World {
    ns: common::Namespace,
    pool: SqlPool,
    store: Arc<SqlStore>,
}

/// One target with its sink and publisher.
struct Target {
    name: String,
    mutation: Mutation,
    sink: Arc<SqlSink<Sla>>,
    publisher: Arc<SqlPublisher<Sla>>,
}

fn control(store: Arc<dyn RunStore>, publisher: Arc<dyn Publisher>) -> Control {
    Control::new(store)
        .with_clock(Arc::new(FixedClock(at())))
        .with_target(publisher)
        .unwrap()
}

impl World {
    /// A control plane over the plain store and publisher (a restarted process).
    fn fresh(&self, t: &Target) -> Control {
        control(self.store.clone(), t.publisher.clone())
    }

    /// A control plane whose store or publisher crashes once, at `crash`.
    fn crashing(
        &self,
        t: &Target,
        crash: Crash,
        rollback: bool,
    ) -> (Control, Injected<SqlPublisher<Sla>>) {
        let view = view_of(&t.name, &t.mutation);
        let store: Arc<dyn RunStore> = self.store.clone();
        let injected = Injected::new(
            crash,
            rollback,
            store.clone(),
            t.publisher.clone(),
            &self.pool,
            view,
        );
        let c = match &injected {
            Injected::Store(s) => control(s.clone(), t.publisher.clone()),
            Injected::Publisher(p) => control(store, p.clone()),
            Injected::View(v) => control(store, v.clone()),
        };
        (c, injected)
    }

    /// Submits and executes a run of `input` through `control`.
    async fn run(
        &self,
        control: &Control,
        t: &Target,
        run: &str,
        input: Vec<Sla>,
    ) -> Result<RunReport, Error> {
        let n = input.len() as u64;
        let m = run_manifest(run, &t.name, t.mutation.clone(), &MONTHS, n);
        let approved = m.approve("bob", at()).unwrap();
        control.submit(&approved).await.unwrap();
        let executor = Executor::builder(
            control.clone(),
            Arc::new(MemorySource::by_offset(input, 4)),
            Arc::new(Pass),
            t.sink.clone(),
            t.publisher.clone(),
        )
        .build();
        executor.run(approved.run_id()).await
    }
}

/// What readers see after `b` published over `a`.
fn visible_after(mutation: &Mutation, a: &[Sla], b: &[Sla]) -> Vec<Sla> {
    let mut v: Vec<Sla> = match mutation {
        Mutation::MergeByKey { .. } => a
            .iter()
            .filter(|o| {
                !b.iter()
                    .any(|n| n.case_id == o.case_id && n.month == o.month)
            })
            .chain(b)
            .cloned()
            .collect(),
        _ => b.to_vec(),
    };
    v.sort_by(|x, y| (&x.month, &x.case_id).cmp(&(&y.month, &y.case_id)));
    v
}

/// Store, target pointer, readers (through the publisher and through the CLI) and run states all
/// agree that `accepted` is visible with exactly `expected` rows.
async fn assert_converged(
    w: &World,
    t: &Target,
    accepted: &str,
    other: (&str, RunState),
    expected: &[Sla],
    what: &str,
) {
    let store_ptr = w
        .store
        .accepted(&t.name)
        .await
        .unwrap()
        .map(|p| p.run_id.to_string());
    assert_eq!(
        store_ptr.as_deref(),
        Some(accepted),
        "{what}: store pointer"
    );
    let target_ptr = publishing::pointer(&w.pool, &t.name).await;
    assert_eq!(
        target_ptr.as_deref(),
        Some(accepted),
        "{what}: target pointer"
    );
    let mut seen = Vec::new();
    for month in MONTHS {
        seen.extend(
            futures::TryStreamExt::try_concat(t.publisher.read_current(&month.into()))
                .await
                .unwrap(),
        );
    }
    seen.sort_by(|x, y| (&x.month, &x.case_id).cmp(&(&y.month, &y.case_id)));
    assert_eq!(seen, expected, "{what}: rows readers see");
    let by_cli = format!(
        "SELECT run_id FROM bf_target_pointers WHERE target = '{}'",
        t.name
    );
    if let Some(run) = common::cli(&w.ns, &by_cli) {
        assert_eq!(run, accepted, "{what}: pointer through the CLI");
        let relation = common::cli(
            &w.ns,
            &format!(
                "SELECT relation FROM bf_target_pointers WHERE target = '{}'",
                t.name
            ),
        )
        .unwrap();
        let q = if w.ns.engine.name == "mysql" {
            format!("`{relation}`")
        } else {
            format!("\"{relation}\"")
        };
        let count = common::cli(&w.ns, &format!("SELECT COUNT(*) FROM {q}")).unwrap();
        assert_eq!(
            count,
            expected.len().to_string(),
            "{what}: rows through the CLI"
        );
    }
    let state = |run: &str| {
        let store = w.store.clone();
        let run = RunId::from(run);
        async move { store.run(&run).await.unwrap().unwrap().state }
    };
    assert_eq!(state(accepted).await, RunState::Published, "{what}");
    assert_eq!(state(other.0).await, other.1, "{what}");
}

/// How many evidence records of `kind` a run has.
async fn count(w: &World, run: &str, kind: EvidenceKind) -> usize {
    let evidence = w.store.evidence(&run.into()).await.unwrap();
    evidence.iter().filter(|e| e.kind() == kind).count()
}

async fn scenario(w: &World, mutation: &Mutation, i: usize, crash: (Crash, Crash)) {
    let name = format!("w{i}_{}", mutation.name());
    let what = format!("{} {name} {crash:?}", w.ns.engine.name);
    let t = Target {
        sink: Arc::new(SqlSink::new(w.pool.clone(), &name).await.unwrap()),
        publisher: Arc::new(SqlPublisher::new(w.pool.clone(), &name).await.unwrap()),
        name,
        mutation: mutation.clone(),
    };
    let (run_a, run_b) = (format!("bf-{i}-a"), format!("bf-{i}-b"));
    let (id_a, id_b) = (RunId::from(run_a.as_str()), RunId::from(run_b.as_str()));
    let (a, b) = (rows(&MONTHS, 5, 1, 2), rows(&MONTHS, 3, 2, 3));
    let seen_a = visible_after(mutation, &[], &a);
    let seen_b = visible_after(mutation, &a, &b);
    let report = w.run(&w.fresh(&t), &t, &run_a, a.clone()).await.unwrap();
    assert_eq!(report.state, RunState::Published, "{what}");

    // Publish b, crashing once; then a restarted process publishes it.
    let (crashing, injected) = w.crashing(&t, crash.0, false);
    let err = w.run(&crashing, &t, &run_b, b.clone()).await.unwrap_err();
    assert_eq!(
        injected.fired(),
        1,
        "{what}: the crash never happened ({err})"
    );
    if crash.0 == Crash::BeforeViewSwitch && view_of(&t.name, mutation).is_some() {
        // The target committed but readers still see a: inspect must not claim the publication.
        assert_eq!(t.publisher.inspect(&id_b).await.unwrap(), None, "{what}");
        assert_eq!(
            publishing::pointer(&w.pool, &t.name).await.as_deref(),
            Some(run_b.as_str())
        );
        let mut still = Vec::new();
        for month in MONTHS {
            still.extend(
                futures::TryStreamExt::try_concat(t.publisher.read_current(&month.into()))
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(
            still.len(),
            seen_a.len(),
            "{what}: readers saw b before its view switch"
        );
    }
    let receipt = w.fresh(&t).publish(&id_b, "operator").await.unwrap();
    assert_eq!(receipt.run_id.as_str(), run_b, "{what}");
    assert_eq!(
        w.fresh(&t).publish(&id_b, "operator").await.unwrap(),
        receipt
    );
    assert_converged(
        w,
        &t,
        &run_b,
        (&run_a, RunState::Superseded),
        &seen_b,
        &format!("{what} publish"),
    )
    .await;
    assert_eq!(count(w, &run_b, EvidenceKind::Published).await, 1, "{what}");
    assert_eq!(t.publisher.inspect(&id_b).await.unwrap(), Some(receipt));

    // Roll b back, crashing once; then a restarted process rolls it back.
    let (crashing, injected) = w.crashing(&t, crash.1, true);
    let err = crashing
        .rollback_run(&id_b, "operator", "wrong calendar")
        .await
        .unwrap_err();
    assert_eq!(
        injected.fired(),
        1,
        "{what}: the rollback crash never happened ({err})"
    );
    if crash.1 == Crash::BeforeViewSwitch && view_of(&t.name, mutation).is_some() {
        let pending = t.publisher.inspect_rollback(&id_b, &id_a);
        assert_eq!(pending.await.unwrap(), None, "{what}");
    }
    let rb = w
        .fresh(&t)
        .rollback_run(&id_b, "operator", "wrong calendar")
        .await
        .unwrap();
    assert_eq!(rb.run_id.as_str(), run_a, "{what}");
    assert_converged(
        w,
        &t,
        &run_a,
        (&run_b, RunState::RolledBack),
        &seen_a,
        &format!("{what} rollback"),
    )
    .await;
    assert_eq!(
        count(w, &run_b, EvidenceKind::RolledBack).await,
        1,
        "{what}"
    );
    assert_eq!(
        count(w, &run_a, EvidenceKind::RolledBack).await,
        1,
        "{what}"
    );
    assert_eq!(count(w, &run_a, EvidenceKind::Published).await, 1, "{what}");
    assert_eq!(count(w, &run_b, EvidenceKind::Published).await, 1, "{what}");
    let recorded = t.publisher.inspect_rollback(&id_b, &id_a);
    assert_eq!(recorded.await.unwrap(), Some(rb), "{what}");
}

async fn every_window(mutation: Mutation) {
    for engine in common::engines() {
        let ns = engine.namespace(&format!("crash_{}", &mutation.name()[..5]));
        let pool = ns.pool().await;
        let store = Arc::new(SqlStore::new(pool.clone()).await.unwrap());
        let w = World { ns, pool, store };
        for (i, crash) in windows().into_iter().enumerate() {
            scenario(&w, &mutation, i, crash).await;
        }
        w.ns.drop().await;
    }
}

#[tokio::test]
async fn replace_partitions_converges_after_a_crash_in_every_window() {
    every_window(Mutation::ReplacePartitions).await;
}

#[tokio::test]
async fn merge_by_key_converges_after_a_crash_in_every_window() {
    every_window(merge()).await;
}

#[tokio::test]
async fn append_with_run_id_converges_after_a_crash_in_every_window() {
    every_window(Mutation::AppendWithRunId).await;
}

#[tokio::test]
async fn shadow_swap_converges_after_a_crash_in_every_window() {
    every_window(Mutation::ShadowSwap).await;
}

#[tokio::test]
async fn versioned_output_converges_after_a_crash_in_every_window() {
    every_window(Mutation::VersionedOutput).await;
}
