//! The testkit's source suite, for each scan pattern, against a scripted API on loopback.

use crate::common;

use std::sync::Arc;

use async_trait::async_trait;
use backfill_core::manifest::{InputRange, RunManifest};
use backfill_http::{HttpSource, RetryPolicy, Scan, Vendor};
use backfill_testkit::http::{ApiRow, ApiScript, ScriptedApi};
use backfill_testkit::{SourceFixture, SourceHarness};
use chrono::{Duration, TimeZone, Utc};
use common::{manifest, now, Item};

#[derive(Clone, Copy)]
enum Pattern {
    IdRange,
    Window,
    Cursor,
    Snapshot,
}

struct Harness(Pattern);

fn ranged(mut m: RunManifest, range: InputRange) -> RunManifest {
    m.source.range = Some(range);
    m
}

#[async_trait]
impl SourceHarness for Harness {
    type Record = Item;

    async fn build(&self, _namespace: &str) -> backfill_core::Result<SourceFixture<Item>> {
        let api = Arc::new(ScriptedApi::start(ApiScript::new(ApiRow::series(1..=100))).await);
        let base = manifest("bf-conformance", 1, 1001);
        let at = |h, m| {
            Utc.with_ymd_and_hms(2025, 1, 1, h, m, 0)
                .single()
                .unwrap_or_default()
        };
        let (path, scan, m, expected) = match self.0 {
            Pattern::IdRange => ("/items", Scan::id_range(30), base, 100),
            Pattern::Window => (
                "/items",
                Scan::window(
                    Duration::minutes(25),
                    Duration::minutes(10),
                    Duration::hours(1),
                ),
                ranged(
                    base,
                    InputRange::Timestamps {
                        from: at(0, 0),
                        to_exclusive: at(2, 0),
                    },
                ),
                100,
            ),
            Pattern::Cursor => (
                "/events",
                Scan::cursor(),
                ranged(
                    base,
                    InputRange::Keys {
                        from: "0".into(),
                        to_exclusive: "81".into(),
                    },
                ),
                80,
            ),
            Pattern::Snapshot => {
                let mut m = base;
                m.source.snapshot = Some("exp-1".into());
                ("/exports/{export_id}", Scan::snapshot(40), m, 100)
            }
        };
        let source = HttpSource::<Item>::builder("items", api.uri(), path, scan)
            .vendor(Vendor::new("scripted", 500))
            .retry(RetryPolicy::fast())
            .page_size(7)
            .clock(now)
            .build()?;
        Ok(SourceFixture::new(Arc::new(source), m)
            .expect_records(expected)
            .observe(move || {
                let api = Arc::clone(&api);
                async move { Ok(format!("{:?}", api.rows())) }
            }))
    }

    async fn teardown(&self, _namespace: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

backfill_testkit::source_conformance!(id_range, || Harness(Pattern::IdRange));
backfill_testkit::source_conformance!(window, || Harness(Pattern::Window));
backfill_testkit::source_conformance!(cursor, || Harness(Pattern::Cursor));
backfill_testkit::source_conformance!(snapshot, || Harness(Pattern::Snapshot));
