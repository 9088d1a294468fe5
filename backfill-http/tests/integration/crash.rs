//! Acceptance 5: a worker crashes after capturing and before the ledger. The restart replays the
//! capture: zero requests for captured pages, the same digest.

use crate::common;

use std::sync::Arc;

use backfill_core::prelude::*;
use backfill_http::{CaptureStore, DirCaptureStore, HttpSource, RetryPolicy, Scan, Vendor};
use backfill_testkit::http::{ApiRow, ApiScript, ScriptedApi};
use common::*;
use futures::TryStreamExt;

const RUN: &str = "bf-crash";

fn source(api: &ScriptedApi, store: Arc<dyn CaptureStore>) -> HttpSource<Item> {
    HttpSource::<Item>::builder("items", api.uri(), "/items", Scan::id_range(50))
        .vendor(Vendor::new("scripted", 200))
        .retry(RetryPolicy::fast())
        .page_size(10)
        .capture_store(store)
        .clock(now)
        .build()
        .expect("source")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_capture_sends_no_request_for_captured_pages() {
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=100))).await;
    let m = manifest(RUN, 1, 101);

    // A clean, uninterrupted run (its own control plane and capture store).
    let clean_src = source(&api, Arc::new(backfill_http::MemoryCaptureStore::new()));
    let clean_world = World::new();
    let run = clean_world.submit(m.clone()).await;
    let clean = clean_world
        .executor(clean_src.clone())
        .run(&run)
        .await
        .expect("clean");
    let chunks = planned(&clean_src, &m).await;
    assert_eq!(chunks.len(), 2);
    let clean_capture = clean_src.captures_digest(&chunks).await.expect("captured");

    // Worker 1 reads the first chunk, which captures it to disk, and dies before staging it or
    // writing anything to the ledger.
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Arc::new(DirCaptureStore::open(dir.path()).await.expect("store"));
        let worker1 = source(&api, store);
        let batches: Vec<Vec<Item>> = BackfillSource::<Item>::read(&worker1, &chunks[0])
            .try_collect()
            .await
            .expect("first read");
        assert_eq!(batches.concat().len(), 50);
    }
    api.clear_log();

    // The restarted process: a new source over the same directory, the whole run.
    let store = Arc::new(DirCaptureStore::open(dir.path()).await.expect("reopen"));
    let restarted = source(&api, store);
    let world = World::new();
    let run = world.submit(m).await;
    let report = world
        .executor(restarted.clone())
        .run(&run)
        .await
        .expect("restart");
    assert_eq!(report.state, RunState::Published, "{report:?}");

    // Zero requests for the captured chunk (ids 1..51); the second chunk was fetched (5 pages).
    let requests = api.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.query.get("id_from").map(String::as_str) != Some("1")),
        "the captured chunk was requested again: {requests:?}"
    );
    assert_eq!(api.count("/items", Some(200)), 5, "{requests:?}");
    assert_eq!(report.digests, clean.digests);
    assert_eq!(
        restarted.captures_digest(&chunks).await.expect("captured"),
        clean_capture
    );

    // A second restart replays both chunks: no request at all.
    api.clear_log();
    let store = Arc::new(DirCaptureStore::open(dir.path()).await.expect("reopen"));
    let again = source(&api, store);
    for c in &chunks {
        let _: Vec<Vec<Item>> = BackfillSource::<Item>::read(&again, c)
            .try_collect()
            .await
            .expect("replay");
    }
    assert_eq!(api.data_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_pages_are_purged_unless_the_privacy_section_allows_keeping_them() {
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=20))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn CaptureStore> =
        Arc::new(DirCaptureStore::open(dir.path()).await.expect("store"));
    let src = source(&api, Arc::clone(&store));
    for (run, keep) in [("bf-purge", false), ("bf-keep", true)] {
        let mut m = manifest(run, 1, 51);
        if keep {
            m.privacy = Some(PrivacySpec {
                purpose: "restatement".into(),
                retention_checked: true,
                erasure_checked: true,
                ..PrivacySpec::default()
            });
        }
        let chunks = planned(&src, &m).await;
        let _: Vec<Vec<Item>> = BackfillSource::<Item>::read(&src, &chunks[0])
            .try_collect()
            .await
            .expect("read");
        let capture = src
            .capture_of(&chunks[0])
            .await
            .expect("store")
            .expect("captured");
        assert_eq!(src.purge_raw(&chunks[0]).await.expect("purge"), !keep);
        // The capture (digests, counts) stays as evidence either way.
        assert!(src.capture_of(&chunks[0]).await.expect("store").is_some());
        let blob = store.get_blob(&capture.key, &capture.pages[0].digest).await;
        assert_eq!(blob.is_ok(), keep, "run {run}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_staging_crashes_before_the_ledger_resumes_from_the_capture() {
    use backfill_core::memory::MemorySink;
    use backfill_core::validate::UniqueKey;
    use backfill_testkit::faults::{FaultKind, FaultySink, SinkFault};

    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=100))).await;
    let m = manifest("bf-crash-run", 1, 101);
    let clean_src = source(&api, Arc::new(backfill_http::MemoryCaptureStore::new()));
    let clean_world = World::new();
    let run = clean_world.submit(m.clone()).await;
    let clean = clean_world
        .executor(clean_src)
        .run(&run)
        .await
        .expect("clean");
    api.clear_log();

    // The first chunk's staging commits and then the worker dies: the ledger never hears of it.
    let dir = tempfile::tempdir().expect("tempdir");
    let world = World::new();
    let run = world.submit(m).await;
    let crashing = Arc::new(FaultySink::new(
        Arc::<MemorySink<Row>>::clone(&world.staging),
        SinkFault::AfterStage(0),
        FaultKind::Fatal,
    ));
    let store = Arc::new(DirCaptureStore::open(dir.path()).await.expect("store"));
    let err = Executor::builder(
        world.control.clone(),
        Arc::new(source(&api, store)),
        Arc::new(ToRow),
        crashing,
        Arc::<backfill_core::memory::MemoryPublisher<Row>>::clone(&world.target),
    )
    .validator(Arc::new(UniqueKey::new("id", |r: &Row| r.id.clone())))
    .options(RunnerOptions::worker("crashing"))
    .build()
    .run(&run)
    .await
    .expect_err("the worker crashes");
    assert!(err.to_string().contains("injected fault"), "{err}");
    let captured_pages = api.count("/items", Some(200));
    assert_eq!(captured_pages, 5, "the first chunk was captured: {err}");
    api.clear_log();

    // A new process over the same capture directory resumes the run.
    let store = Arc::new(DirCaptureStore::open(dir.path()).await.expect("reopen"));
    let report = world
        .executor(source(&api, store))
        .run(&run)
        .await
        .expect("resumed");
    assert_eq!(report.state, RunState::Published, "{report:?}");
    assert!(
        api.requests()
            .iter()
            .all(|r| r.query.get("id_from").map(String::as_str) != Some("1")),
        "the captured chunk was requested again: {:?}",
        api.requests()
    );
    assert_eq!(api.count("/items", Some(200)), 5, "only the second chunk");
    assert_eq!(report.digests, clean.digests);
    assert_eq!(world.published_items(), (1..=100).collect::<Vec<u64>>());

    // Each chunk's staged evidence names the capture it was read from.
    let store = Arc::new(DirCaptureStore::open(dir.path()).await.expect("reopen"));
    let src = source(&api, store);
    let plan = world
        .control
        .store()
        .plan(&run)
        .await
        .expect("store")
        .expect("plan");
    let evidence = world
        .control
        .store()
        .evidence(&run)
        .await
        .expect("evidence");
    for chunk in &plan.chunks {
        let capture = src
            .capture_of(chunk)
            .await
            .expect("store")
            .expect("captured");
        let recorded = evidence
            .iter()
            .find_map(|e| match &e.record {
                backfill_core::evidence::EvidenceRecord::ChunkStaged {
                    chunk_id, source, ..
                } if *chunk_id == chunk.id => source.clone(),
                _ => None,
            })
            .expect("the chunk's staged evidence carries its capture");
        assert_eq!(recorded["capture_digest"], capture.digest.as_str());
        assert_eq!(recorded["pages"], capture.pages.len());
    }
}
