//! Transient failures: 5xx and unreachable servers are retried on the schedule, then reported as
//! transient, naming the chunk and the request.

use crate::common;

use backfill_core::prelude::*;
use backfill_http::{HttpSource, RetryPolicy, Scan};
use backfill_testkit::http::{ApiRow, ApiScript, ScriptedApi};
use common::*;
use futures::TryStreamExt;

async fn read(src: &HttpSource<Item>, run: &str) -> Result<usize, Error> {
    let chunks = planned(src, &manifest(run, 1, 1001)).await;
    let batches: Vec<Vec<Item>> = BackfillSource::<Item>::read(src, &chunks[0])
        .try_collect()
        .await?;
    Ok(batches.concat().len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_within_the_schedule_are_retried() {
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=30))).await;
    api.fail_next(3, 503);
    let src = id_source(&api, 10, None).build().expect("source");
    assert_eq!(read(&src, "bf-503").await.expect("retried"), 30);
    assert_eq!(api.count("/items", Some(503)), 3);
    assert_eq!(api.count("/items", Some(200)), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_beyond_the_schedule_are_transient_and_name_the_request() {
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=30))).await;
    api.fail_next(100, 500);
    let src = id_source(&api, 10, None)
        .retry(RetryPolicy::fast().with_max_retries(2))
        .build()
        .expect("source");
    let err = read(&src, "bf-500").await.expect_err("exhausted");
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("status 500") && msg.contains("GET /items?id_from=1"),
        "{msg}"
    );
    assert_eq!(api.count("/items", Some(500)), 3, "one try and two retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_permanent_at_once() {
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=30))).await;
    api.fail_next(1, 422);
    let src = id_source(&api, 10, None).build().expect("source");
    let err = read(&src, "bf-422").await.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
    assert_eq!(api.data_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_transient_after_the_schedule() {
    // A loopback port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let src = HttpSource::<Item>::builder(
        "items",
        format!("http://127.0.0.1:{port}"),
        "/items",
        Scan::id_range(1_000),
    )
    .retry(RetryPolicy::fast().with_max_retries(2))
    .clock(now)
    .build()
    .expect("source");
    let err = read(&src, "bf-down").await.expect_err("unreachable");
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.to_string().contains("GET /items?id_from=1"), "{err}");
}
