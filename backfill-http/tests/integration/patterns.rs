//! The scan patterns' planning rules, and the id-listing reconciliation of hidden deletes.

use crate::common;

use backfill_core::prelude::*;
use backfill_http::{hidden_deletes, ChunkState, HttpSource, IdListing, RetryPolicy, Scan, Vendor};
use backfill_testkit::http::{ApiRow, ApiScript, ScriptedApi};
use chrono::{Duration, TimeZone, Utc};
use common::*;
use futures::TryStreamExt;

fn window_source(api: &ScriptedApi, now: chrono::DateTime<Utc>) -> HttpSource<Item> {
    HttpSource::<Item>::builder(
        "items",
        api.uri(),
        "/items",
        Scan::window(
            Duration::minutes(30),
            Duration::minutes(15),
            Duration::hours(1),
        ),
    )
    .vendor(Vendor::new("scripted", 500))
    .retry(RetryPolicy::fast())
    .page_size(7)
    .clock(move || now)
    .build()
    .expect("source")
}

fn window_manifest(to_hour: u32) -> RunManifest {
    let mut m = manifest("bf-window", 1, 1001);
    let at = |h| {
        Utc.with_ymd_and_hms(2025, 1, 1, h, 0, 0)
            .single()
            .unwrap_or_default()
    };
    m.source.range = Some(InputRange::Timestamps {
        from: at(0),
        to_exclusive: at(to_hour),
    });
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_scan_never_plans_past_now_minus_the_settle_lag() {
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=100))).await;
    // Now is 02:30; the settle lag is an hour: a range to 02:00 is not settled yet.
    let now = Utc
        .with_ymd_and_hms(2025, 1, 1, 2, 30, 0)
        .single()
        .unwrap_or_default();
    let src = window_source(&api, now);
    let err = BackfillSource::<Item>::plan(&src, &window_manifest(2))
        .await
        .expect_err("unsettled");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("settle lag"), "{err}");
    // A range to 01:00 is settled: two half-hour chunks, each querying from 15 minutes earlier.
    let plan = BackfillSource::<Item>::plan(&src, &window_manifest(1))
        .await
        .expect("settled");
    assert_eq!(plan.chunks.len(), 2);
    let second: ChunkState = plan.chunks[1].state.parse().expect("state");
    let ChunkState::Window {
        from, query_from, ..
    } = second
    else {
        panic!("{second:?}");
    };
    assert_eq!(from - query_from, Duration::minutes(15));
    assert_eq!(api.data_requests(), 0, "planning sends no request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_chunk_keeps_only_its_records_although_its_query_looks_back() {
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=100))).await;
    let src = window_source(&api, now());
    let m = window_manifest(1);
    let chunks = planned(&src, &m).await;
    let mut per_chunk = Vec::new();
    for c in &chunks {
        let items: Vec<Vec<Item>> = BackfillSource::<Item>::read(&src, c)
            .try_collect()
            .await
            .expect("read");
        per_chunk.push(items.concat().iter().map(|i| i.id).collect::<Vec<_>>());
    }
    // Row n changed at minute n: [00:00, 00:30) holds 1..=29, [00:30, 01:00) holds 30..=59.
    let mut first = per_chunk[0].clone();
    first.sort_unstable();
    let mut second = per_chunk[1].clone();
    second.sort_unstable();
    assert_eq!(first, (1..30).collect::<Vec<u64>>());
    assert_eq!(second, (30..60).collect::<Vec<u64>>());
    // The second chunk asked from 00:15.
    assert!(api
        .requests()
        .iter()
        .any(|r| r.query.get("updated_since").map(String::as_str)
            == Some("2025-01-01T00:15:00+00:00")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_ranges_must_be_written_with_one_width() {
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=10))).await;
    let src = id_source(&api, 10, None).build().expect("source");
    let mut m = manifest("bf-width", 1, 1001);
    m.source.range = Some(InputRange::Keys {
        from: "1".into(),
        to_exclusive: "1001".into(),
    });
    let err = BackfillSource::<Item>::plan(&src, &m)
        .await
        .expect_err("widths differ");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_deletes_are_found_by_the_id_listing() {
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=250))).await;
    let src = id_source(&api, 10, None).build().expect("source");
    // The target was loaded with every row; then the vendor deleted three without a trace.
    let target_ids: Vec<u64> = (1..=250).collect();
    api.delete_hidden(&[7, 120, 249]);
    let gone = hidden_deletes(
        &src,
        &IdListing::new("/ids").page_size(100),
        1,
        1_001,
        target_ids.iter().copied(),
    )
    .await
    .expect("reconcile");
    assert_eq!(gone, vec![7, 120, 249]);
    assert_eq!(api.count("/ids", Some(200)), 3, "250 ids in pages of 100");
    // A slice of the range reconciles only that slice.
    let gone = hidden_deletes(&src, &IdListing::new("/ids"), 100, 200, target_ids)
        .await
        .expect("reconcile");
    assert_eq!(gone, vec![120]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_scan_plans_a_dates_range_in_whole_days() {
    let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=10))).await;
    let day = |d| chrono::NaiveDate::from_ymd_opt(2025, 1, d).unwrap_or_default();
    let mut m = manifest("bf-days", 1, 1001);
    m.source.range = Some(InputRange::Dates {
        from: day(1),
        to_exclusive: day(8),
    });
    let days = |step| {
        HttpSource::<Item>::builder(
            "items",
            api.uri(),
            "/items",
            Scan::window(step, Duration::hours(6), Duration::hours(1)),
        )
        .clock(now)
        .build()
        .expect("source")
    };
    let plan = BackfillSource::<Item>::plan(&days(Duration::days(3)), &m)
        .await
        .expect("plan");
    let ranges: Vec<String> = plan.chunks.iter().map(|c| c.range.to_string()).collect();
    assert_eq!(ranges.len(), 3, "{ranges:?}");
    assert_eq!(
        plan.chunks[2].range,
        InputRange::Dates {
            from: day(7),
            to_exclusive: day(8)
        }
    );
    let err = BackfillSource::<Item>::plan(&days(Duration::hours(12)), &m)
        .await
        .expect_err("half days");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}
