//! Acceptance 3: rows inserted at the head of a newest-first listing while it is paged. Every id
//! comes out exactly once, or the chunk fails loudly; never a silent loss.

use crate::common;

use backfill_core::prelude::*;
use backfill_testkit::http::{ApiRow, ApiScript, ScriptedApi};
use common::*;
use futures::TryStreamExt;

async fn read_all(
    src: &backfill_http::HttpSource<Item>,
    m: &RunManifest,
) -> Result<Vec<u64>, Error> {
    let chunks = planned(src, m).await;
    let mut ids = Vec::new();
    for c in &chunks {
        let batches: Vec<Vec<Item>> = BackfillSource::<Item>::read(src, c).try_collect().await?;
        ids.extend(batches.into_iter().flatten().map(|i| i.id));
    }
    ids.sort_unstable();
    Ok(ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_between_pages_are_caught_by_totals_and_the_chunk_recaptured() {
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=100))).await;
    // Three new rows land at the head after page 2 of 10: page 3 would repeat rows of page 2.
    api.insert_after_pages(2, ApiRow::series(101..=103));
    let src = id_source(&api, 10, None).build().expect("source");
    let world = World::new();
    let m = manifest("bf-drift", 1, 1001);
    let chunks = planned(&src, &m).await;
    let run = world.submit(m).await;
    let report = world.executor(src.clone()).run(&run).await.expect("run");
    assert_eq!(report.state, RunState::Published, "{report:?}");
    // Exactly the server's ids, each once.
    assert_eq!(world.published_items(), api.ids());
    assert_eq!(api.ids().len(), 103);
    let capture = src
        .capture_of(&chunks[0])
        .await
        .expect("store")
        .expect("captured");
    assert_eq!(capture.attempts, 2, "the drifted capture was retaken");
    assert_eq!(capture.records, 103);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_totals_a_row_seen_twice_is_drift() {
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=100))).await;
    api.insert_after_pages(2, ApiRow::series(101..=103));
    let src = id_source(&api, 10, None)
        .total_at(None)
        .build()
        .expect("source");
    let ids = read_all(&src, &manifest("bf-drift-dup", 1, 1001))
        .await
        .expect("read");
    assert_eq!(ids, api.ids());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_totals_the_first_page_recheck_catches_an_insert_after_the_last_page() {
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=100))).await;
    // Ten full pages and the empty eleventh end the listing; the rows land after it, before the
    // recheck of page 1, so no duplicate shows them.
    api.insert_after_pages(11, ApiRow::series(101..=103));
    let src = id_source(&api, 10, None)
        .total_at(None)
        .recheck_first_page(true)
        .build()
        .expect("source");
    let m = manifest("bf-drift-recheck", 1, 1001);
    let ids = read_all(&src, &m).await.expect("read");
    assert_eq!(ids, api.ids());
    assert_eq!(ids.len(), 103);
    let chunks = planned(&src, &m).await;
    let capture = src
        .capture_of(&chunks[0])
        .await
        .expect("store")
        .expect("captured");
    assert_eq!(
        capture.attempts, 2,
        "the recheck found the changed first page"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_that_outlasts_the_recaptures_fails_the_chunk_loudly_as_transient() {
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=100))).await;
    api.insert_after_pages(2, ApiRow::series(101..=103));
    let src = id_source(&api, 10, None)
        .max_captures(1)
        .build()
        .expect("source");
    let m = manifest("bf-drift-loud", 1, 1001);
    let err = read_all(&src, &m)
        .await
        .expect_err("drift must not pass silently");
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.to_string().contains("pagination drift"), "{err}");
    // Nothing was captured, so the next read starts from a fresh capture and gets every row.
    let chunks = planned(&src, &m).await;
    assert!(src.capture_of(&chunks[0]).await.expect("store").is_none());
    assert_eq!(read_all(&src, &m).await.expect("fresh capture"), api.ids());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_serving_shorter_pages_than_asked_is_read_to_the_end() {
    // The API serves at most 40 rows a page; the source asks for 100.
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=250)).max_limit(40)).await;
    let with_totals = id_source(&api, 100, None).build().expect("source");
    let m = manifest("bf-short-pages", 1, 1001);
    assert_eq!(read_all(&with_totals, &m).await.expect("read"), api.ids());
    let without = id_source(&api, 100, None)
        .total_at(None)
        .build()
        .expect("source");
    assert_eq!(read_all(&without, &m).await.expect("read"), api.ids());
}
