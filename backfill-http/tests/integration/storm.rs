//! Acceptance 2: `429` storms with `Retry-After`. Twenty are waited out (each for at least the
//! advertised second) under the vendor's rate limit; a storm longer than the schedule pauses the
//! run, and running it again after the storm reaches the clean run's digest.

use crate::common;

use std::time::{Duration, Instant};

use backfill_core::prelude::*;
use backfill_http::{HttpSource, RetryPolicy, Scan, Vendor};
use backfill_testkit::http::{ApiRow, ApiScript, LoggedRequest, ScriptedApi};
use common::*;

fn source(api: &ScriptedApi, per_second: u32, retry: RetryPolicy) -> HttpSource<Item> {
    HttpSource::<Item>::builder("items", api.uri(), "/items", Scan::id_range(1_000))
        .vendor(Vendor::new("scripted", per_second))
        .retry(retry)
        .page_size(10)
        .clock(now)
        .build()
        .expect("source")
}

/// The clean run's output digests, from its own server and control plane (same run id).
async fn clean_digests(run: &str) -> PartitionDigests {
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=30))).await;
    let world = World::new();
    let id = world.submit(manifest(run, 1, 1001)).await;
    let report = world
        .executor(source(&api, 200, RetryPolicy::fast()))
        .run(&id)
        .await
        .expect("clean run");
    assert_eq!(report.state, RunState::Published);
    report.digests
}

fn after_each_429(requests: &[LoggedRequest]) -> Vec<Duration> {
    requests
        .windows(2)
        .filter(|w| w[0].status == 429)
        .map(|w| w[1].at.duration_since(w[0].at))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_429s_are_waited_out_as_advertised_under_the_rate_limit() {
    let clean = clean_digests("bf-storm").await;
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=30))).await;
    api.storm(20, 1);
    let world = World::new();
    let id = world.submit(manifest("bf-storm", 1, 1001)).await;
    let started = Instant::now();
    let report = world
        .executor(source(&api, 5, RetryPolicy::fast()))
        .run(&id)
        .await
        .expect("the storm is waited out");
    let took = started.elapsed();
    assert_eq!(report.state, RunState::Published, "{report:?}");
    assert_eq!(report.digests, clean);

    let requests: Vec<LoggedRequest> = api
        .requests()
        .into_iter()
        .filter(|r| r.path == "/items")
        .collect();
    assert_eq!(api.count("/items", Some(429)), 20);
    assert_eq!(api.count("/items", Some(200)), 3, "three pages");
    // Each 429 said `Retry-After: 1`; the next request came at least a second later.
    let waits = after_each_429(&requests);
    assert_eq!(waits.len(), 20);
    for w in &waits {
        assert!(
            *w >= Duration::from_secs(1),
            "a retry came {w:?} after a 429"
        );
    }
    // Five requests a second, evenly spaced: no two requests closer than 200 ms (less a little
    // scheduling slack on the server's side of the socket).
    for w in requests.windows(2) {
        let gap = w[1].at.duration_since(w[0].at);
        assert!(
            gap >= Duration::from_millis(180),
            "two requests {gap:?} apart"
        );
    }
    assert!(took >= Duration::from_secs(20), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_longer_than_the_schedule_pauses_the_run_and_a_resume_reaches_the_same_digest() {
    let clean = clean_digests("bf-long-storm").await;
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=30))).await;
    api.storm(1_000, 1);
    let world = World::new();
    let id = world.submit(manifest("bf-long-storm", 1, 1001)).await;
    // Three 429s are waited out (a second each); the fourth pauses.
    let retry = RetryPolicy::fast().with_storm_limit(3);
    let err = world
        .executor(source(&api, 50, retry))
        .run(&id)
        .await
        .expect_err("the run pauses");
    assert_eq!(err.root().kind(), ErrorKind::Paused, "{err}");
    assert!(err.to_string().contains("consecutive 429"), "{err}");
    let state = world.control.run(&id).await.expect("status").state;
    assert_eq!(state, RunState::Paused);
    assert_eq!(api.count("/items", Some(429)), 4);
    assert_eq!(api.count("/items", Some(200)), 0);
    for w in after_each_429(&api.requests()) {
        assert!(
            w >= Duration::from_secs(1),
            "a retry came {w:?} after a 429"
        );
    }

    // The storm passes; running the paused run again resumes it.
    api.calm();
    let report = world
        .executor(source(&api, 50, retry))
        .run(&id)
        .await
        .expect("resumed");
    assert_eq!(report.state, RunState::Published, "{report:?}");
    assert_eq!(report.digests, clean);
    assert_eq!(world.published_items(), (1..=30).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_beyond_the_cap_pauses_at_once() {
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=30))).await;
    let retry = RetryPolicy::fast().with_max_retry_after(Duration::from_secs(5));
    api.storm(1, 3_600);
    let src = source(&api, 200, retry);
    let m = manifest("bf-cap", 1, 1001);
    let chunks = planned(&src, &m).await;
    let err = futures::TryStreamExt::try_collect::<Vec<_>>(BackfillSource::<Item>::read(
        &src, &chunks[0],
    ))
    .await
    .expect_err("an hour's Retry-After is not waited in place");
    assert_eq!(err.kind(), ErrorKind::Paused, "{err}");
    assert_eq!(api.count("/items", Some(429)), 1);
}
