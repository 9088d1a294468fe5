//! Acceptance 1: a token that lives three requests, over a ten-page chunk.

use crate::common;

use backfill_core::prelude::*;
use backfill_testkit::http::{ApiRow, ApiScript, ScriptedApi};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_request_token_reads_every_page_once_and_reaches_the_clean_digest() {
    // The clean run: no authentication. Both runs share a run id (output ids derive from it),
    // each in its own control plane.
    let clean_api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=100))).await;
    let clean_src = id_source(&clean_api, 10, None).build().expect("source");
    let world = World::new();
    let m = manifest("bf-token", 1, 1001);
    let chunks = planned(&clean_src, &m).await;
    assert_eq!(chunks.len(), 1, "one chunk of ten pages");
    let run = world.submit(m).await;
    let clean = world
        .executor(clean_src.clone())
        .run(&run)
        .await
        .expect("clean run");
    let clean_capture = clean_src.captures_digest(&chunks).await.expect("captured");

    // The same rows behind tokens that each answer three requests.
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=100)).token_lifetime(3)).await;
    let src = with_token(id_source(&api, 10, None), &api)
        .build()
        .expect("source");
    let world = World::new();
    let m = manifest("bf-token", 1, 1001);
    let chunks = planned(&src, &m).await;
    let run = world.submit(m).await;
    let report = world
        .executor(src.clone())
        .run(&run)
        .await
        .expect("run with expiring tokens");

    // Every page was answered once: each offset got exactly one 200.
    let mut offsets: Vec<u64> = api
        .requests()
        .iter()
        .filter(|r| r.path == "/items" && r.status == 200)
        .map(|r| r.query["offset"].parse().expect("offset"))
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..10).map(|p| p * 10).collect::<Vec<u64>>());
    // Ten pages over three-request tokens: three refusals, four tokens.
    assert_eq!(api.count("/items", Some(401)), 3);
    assert_eq!(api.tokens_issued(), 4);
    let capture = src
        .capture_of(&chunks[0])
        .await
        .expect("store")
        .expect("captured");
    assert_eq!(capture.pages.len(), 10);
    assert_eq!(capture.attempts, 1);

    // The clean run's digests: of the output and of the capture.
    assert_eq!(report.state, RunState::Published, "{report:?}");
    assert_eq!(report.input_records, 100);
    assert_eq!(report.digests, clean.digests);
    assert_eq!(
        src.captures_digest(&chunks).await.expect("captured"),
        clean_capture
    );
    assert_eq!(world.published_items(), (1..=100).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refreshed_token_fails_without_retrying_forever() {
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=20)).token_lifetime(3)).await;
    // A static token the API never issued: one 401, one refresh (the same token), one 401, stop.
    let src = id_source(&api, 10, None)
        .auth(std::sync::Arc::new(backfill_http::StaticToken::new(
            "forged",
        )))
        .build()
        .expect("source");
    let m = manifest("bf-token-forged", 1, 1001);
    let chunks = planned(&src, &m).await;
    let err = futures::TryStreamExt::try_collect::<Vec<_>>(BackfillSource::<Item>::read(
        &src, &chunks[0],
    ))
    .await
    .expect_err("unauthorized");
    assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
    assert!(
        err.to_string()
            .contains("unauthorized after a token refresh"),
        "{err}"
    );
    assert_eq!(api.count("/items", Some(401)), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_refresh_ahead_of_expiry_without_a_401() {
    use backfill_http::{ClientCredentials, TokenProvider};
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=3)).token_expires_in(1)).await;
    let creds = ClientCredentials::new(format!("{}/oauth/token", api.uri()), "id", "secret")
        .refresh_at(0.5);
    let first = creds.token().await.expect("token");
    assert_eq!(creds.token().await.expect("token"), first, "still fresh");
    // Half of the one-second lifetime has passed: the next call refreshes.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let second = creds.token().await.expect("token");
    assert_ne!(second, first);
    assert_eq!(api.tokens_issued(), 2);
    // A refresh after a 401 with a token already replaced returns the newer one.
    assert_eq!(creds.refresh(&first).await.expect("token"), second);
    assert_eq!(api.tokens_issued(), 2);
}
