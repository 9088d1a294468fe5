//! The main job with `--database-url`, on PostgreSQL and on MariaDB: the same result as on SQLite,
//! and workers started together on a fresh database all succeed.

use crate::common;

use std::process::Command;

use backfill_core::prelude::*;
use backfill_examples::sla::job::{HISTORY_RUN, RESTATEMENT_RUN, TARGET};
use backfill_examples::sla::source::TABLE;
use backfill_sql::{Dialect, QualifiedName, SqlStore};
use sqlx::mysql::MySqlPool;
use sqlx::postgres::PgPool;

/// A test server's URL; missing is a failure where services are required (scripts/test.sh, CI).
fn server(var: &str) -> Option<String> {
    backfill_testkit::services::service(var, "the database server")
}

fn dialect(url: &str) -> Dialect {
    if url.starts_with("postgres") {
        Dialect::Postgres
    } else {
        Dialect::MySql
    }
}

/// Runs `sql` (one BIGINT) on the server behind `url`.
async fn scalar(url: &str, sql: &str) -> i64 {
    if url.starts_with("postgres") {
        let db = PgPool::connect(url).await.unwrap();
        let n = sqlx::query_scalar(sql).fetch_one(&db).await.unwrap();
        db.close().await;
        n
    } else {
        let db = MySqlPool::connect(url).await.unwrap();
        let n = sqlx::query_scalar(sql).fetch_one(&db).await.unwrap();
        db.close().await;
        n
    }
}

/// Creates (or recreates) a database next to the server's default one and returns its URL. On
/// PostgreSQL the job's `silver` and `bronze` schemas live inside it; on MariaDB a schema is a
/// database of its own, so those are dropped here (the servers are the test suite's throwaway ones,
/// and this is the only test module writing `silver.case_sla_monthly` or `bronze.case_events` there).
async fn fresh_database(url: &str, name: &str) -> String {
    let mut statements = vec![
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ];
    if !url.starts_with("postgres") {
        for qualified in [TARGET, TABLE] {
            let schema = QualifiedName::parse(qualified).unwrap();
            let schema = schema.schema().unwrap().quoted(Dialect::MySql);
            statements.push(format!("DROP DATABASE IF EXISTS {schema}"));
        }
    }
    for sql in statements {
        if url.starts_with("postgres") {
            let admin = PgPool::connect(url).await.unwrap();
            sqlx::query(&sql).execute(&admin).await.unwrap();
            admin.close().await;
        } else {
            let admin = MySqlPool::connect(url).await.unwrap();
            sqlx::query(&sql).execute(&admin).await.unwrap();
            admin.close().await;
        }
    }
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

async fn the_job_runs_on(var: &str, tag: &str) {
    let Some(url) = server(var) else { return };
    // Two workers started at the same moment on a fresh database, three times: both succeed and the
    // restatement is published once, every row once.
    for attempt in 0..3 {
        let db_url = fresh_database(
            &url,
            &format!("bf_sla_{tag}_{}_{attempt}", std::process::id()),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let reviews = dir.path().to_str().unwrap();
        for (i, o) in common::together(&["--database-url", &db_url, "--data-dir", reviews])
            .iter()
            .enumerate()
        {
            assert!(
                o.status.success(),
                "{tag} try {attempt}, worker {i}:\n{}",
                common::text(o)
            );
        }
        let target = QualifiedName::parse(TARGET).unwrap().quoted(dialect(&url));
        let all = scalar(&db_url, &format!("SELECT COUNT(*) FROM {target}")).await;
        let distinct = scalar(&db_url, &format!("SELECT COUNT(DISTINCT id) FROM {target}")).await;
        let restated = scalar(
            &db_url,
            &format!(
                "SELECT COUNT(*) FROM {target} WHERE produced_by_run_id = '{RESTATEMENT_RUN}'"
            ),
        )
        .await;
        assert!(
            all > 10_000 && all == distinct && all == restated,
            "{tag} try {attempt}: {all} {distinct} {restated}"
        );
    }
    let db_url = fresh_database(&url, &format!("bf_sla_{tag}_{}", std::process::id())).await;
    let dir = tempfile::tempdir().unwrap();
    let reviews = dir.path().join("reviews");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_sla-restatement"))
            .arg("--database-url")
            .arg(&db_url)
            .arg("--data-dir")
            .arg(&reviews)
            .env_remove("BACKFILL_SLA_CRASH_AFTER_CHUNKS")
            .output()
            .unwrap()
    };
    let first = run();
    let log = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(
        first.status.success(),
        "{log}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // The server holds store and warehouse; the data directory only the owner's diff file.
    assert!(!reviews.join("runs.db").exists() && !reviews.join("warehouse.db").exists());
    assert!(reviews.join(format!("{RESTATEMENT_RUN}-diff.csv")).exists());

    // The evidence bundle is exported next to the diff, and verified against the server's rows.
    assert!(reviews
        .join(format!("{RESTATEMENT_RUN}-evidence.json"))
        .exists());
    assert!(
        log.contains("verified (6 checks") && log.contains("published_rows_match_ledger"),
        "{log}"
    );

    // The target is schema-qualified on the server too.
    let target = QualifiedName::parse(TARGET).unwrap().quoted(dialect(&url));
    let all = format!("SELECT COUNT(*) FROM {target}");
    let restated =
        format!("SELECT COUNT(*) FROM {target} WHERE produced_by_run_id = '{RESTATEMENT_RUN}'");
    let warm_up = format!("SELECT COUNT(*) FROM {target} WHERE month < '2025-01'");
    let rows = scalar(&db_url, &all).await;
    assert!(rows > 10_000, "{rows}");
    assert_eq!(scalar(&db_url, &restated).await, rows);
    assert_eq!(scalar(&db_url, &warm_up).await, 0);
    let store = SqlStore::connect(&db_url).await.unwrap();
    let state = |id: &'static str| common::state(&store, id);
    assert_eq!(state(RESTATEMENT_RUN).await, RunState::Published);
    assert_eq!(state(HISTORY_RUN).await, RunState::Superseded);

    let second = run();
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("nothing republished"));
    assert_eq!(scalar(&db_url, &all).await, rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_job_runs_on_postgresql() {
    the_job_runs_on("BACKFILL_TEST_PG_URL", "pg").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_job_runs_on_mariadb() {
    the_job_runs_on("BACKFILL_TEST_MYSQL_URL", "maria").await;
}
