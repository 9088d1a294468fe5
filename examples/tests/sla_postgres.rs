//! The main job on PostgreSQL (`--database-url`): the same result as on SQLite.

use std::process::Command;

use backfill_examples::sla::job::{RESTATEMENT_RUN, TARGET_TABLE};
use sqlx::postgres::PgPool;

/// The test server's URL; missing is a failure where services are required (scripts/test.sh, CI).
fn pg_url() -> Option<String> {
    match std::env::var("BACKFILL_TEST_PG_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            let required = ["CI", "BACKFILL_REQUIRE_SERVICES"]
                .iter()
                .any(|k| std::env::var(k).is_ok_and(|v| v == "true" || v == "1"));
            assert!(
                !required,
                "BACKFILL_TEST_PG_URL is not set: PostgreSQL is required here (scripts/test.sh starts it)"
            );
            eprintln!("SKIPPED: BACKFILL_TEST_PG_URL is not set; run scripts/test.sh");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_job_runs_on_postgresql() {
    let Some(url) = pg_url() else { return };
    let admin = PgPool::connect(&url).await.unwrap();
    let name = format!("bf_sla_{}", std::process::id());
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    let db_url = format!("{base}/{name}");
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_sla-restatement"))
            .arg("--database-url")
            .arg(&db_url)
            .arg("--data-dir")
            .arg(dir.path().join("unused"))
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
    assert!(log.contains("published"), "{log}");
    // Nothing was written to the data directory: PostgreSQL holds store and warehouse.
    assert!(!dir.path().join("unused").exists());

    let db = PgPool::connect(&db_url).await.unwrap();
    let count = |db: PgPool| async move {
        sqlx::query_as::<_, (i64, i64)>(&format!(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE produced_by_run_id = '{RESTATEMENT_RUN}') FROM {TARGET_TABLE}"
        ))
        .fetch_one(&db)
        .await
        .unwrap()
    };
    let (rows, restated) = count(db.clone()).await;
    assert!(rows > 10_000);
    assert_eq!(rows, restated);
    let months: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT DISTINCT month FROM {TARGET_TABLE} ORDER BY 1"
    ))
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(months.first().map(String::as_str), Some("2025-01"));
    assert_eq!(months.len(), 12);

    let second = run();
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("nothing republished"));
    assert_eq!(count(db.clone()).await, (rows, restated));

    db.close().await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
}
