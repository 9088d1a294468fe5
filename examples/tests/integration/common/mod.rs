//! What the job's tests share: running the job as a process on a data directory, and opening its
//! SQLite store and warehouse.

#![allow(dead_code)]

pub(crate) mod tool;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use backfill_examples::sla::job::TARGET;
use backfill_sql::{Dialect, QualifiedName, SqlStore};
use sqlx::sqlite::SqlitePool;

/// Runs the job on `dir` with extra arguments (never against a server, never crashing on purpose).
pub(crate) fn job(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sla-restatement"))
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .env_remove("BACKFILL_DATABASE_URL")
        .env_remove("BACKFILL_SLA_CRASH_AFTER_CHUNKS")
        .output()
        .unwrap()
}

/// Starts the job twice at the same moment with the same arguments (workers of one job started
/// together), and waits for both.
pub(crate) fn together(args: &[&str]) -> [Output; 2] {
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_sla-restatement"))
            .args(args)
            .env_remove("BACKFILL_DATABASE_URL")
            .env_remove("BACKFILL_SLA_CRASH_AFTER_CHUNKS")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()]
}

/// Stdout and stderr of a run.
pub(crate) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The target's table in the SQLite warehouse (`silver.case_sla_monthly` is
/// `silver__case_sla_monthly`).
pub(crate) fn table() -> String {
    QualifiedName::parse(TARGET)
        .unwrap()
        .quoted(Dialect::Sqlite)
}

/// The warehouse URL in `dir`.
pub(crate) fn warehouse_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("warehouse.db").display())
}

/// The warehouse: bronze events, staging and the target.
pub(crate) async fn warehouse(dir: &Path) -> SqlitePool {
    SqlitePool::connect(&warehouse_url(dir)).await.unwrap()
}

/// The run store.
pub(crate) async fn store(dir: &Path) -> SqlStore {
    SqlStore::connect(&format!("sqlite://{}", dir.join("runs.db").display()))
        .await
        .unwrap()
}

/// Every published row's key facts and producer, in id order.
pub(crate) async fn published(
    db: &SqlitePool,
) -> Vec<(String, String, Option<String>, bool, String)> {
    sqlx::query_as(&format!(
        "SELECT id, month, due_on, breached, produced_by_run_id FROM {} ORDER BY id",
        table()
    ))
    .fetch_all(db)
    .await
    .unwrap()
}

/// Breaches per month of the published table (case-months that breached in that month).
pub(crate) async fn breaches_by_month(db: &SqlitePool) -> BTreeMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(&format!(
        "SELECT month, SUM(breached_in_month) FROM {} GROUP BY month",
        table()
    ))
    .fetch_all(db)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

/// The published rows' business facts (ids are run-scoped, so they are left out), in key order.
pub(crate) async fn facts(db: &SqlitePool) -> Vec<(String, String, Option<String>, bool, String)> {
    sqlx::query_as(&format!(
        "SELECT case_id, month, due_on, breached, produced_by_run_id FROM {} ORDER BY month, case_id",
        table()
    ))
    .fetch_all(db)
    .await
    .unwrap()
}

/// The state of run `id` in `store`.
pub(crate) async fn state(store: &SqlStore, id: &str) -> backfill_core::state::RunState {
    use backfill_core::store::RunStore;
    store
        .run(&backfill_core::ids::RunId::from(id))
        .await
        .unwrap()
        .unwrap()
        .state
}
