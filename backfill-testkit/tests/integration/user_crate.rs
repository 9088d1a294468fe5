//! The testkit from a user's crate: only the public API, a user's transform, a user's sink.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use backfill_core::ids::{ChunkId, RunId};
use backfill_core::plan::{ChunkSpec, PlannedChunk, SourcePlan};
use backfill_core::prelude::*;
use backfill_core::sink::{StageReceipt, StageRequest, StagedArtifact};
use backfill_testkit::determinism::check_transform;
use backfill_testkit::idempotency::check_idempotent_staging;
use backfill_testkit::strategy::{self, Keyed};
use backfill_testkit::{SinkHarness, SourceFixture, SourceHarness, TestRow};
use chrono::NaiveDate;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

// ---- the user's transform ------------------------------------------------------------------------

/// A daily balance row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct Balance {
    id: String,
    account: String,
    day: NaiveDate,
    month: String,
    cents: i64,
    produced_at: String,
}

impl OutputRow for Balance {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

/// Converts amounts to cents, stamping the run's start (never the wall clock).
#[derive(Debug)]
struct ToBalance;

impl DeterministicTransform for ToBalance {
    type Input = Keyed<i64>;
    type Output = Balance;
    fn name(&self) -> &str {
        "to_balance"
    }
    fn version(&self) -> &str {
        "2.0.0"
    }
    fn apply(
        &self,
        r: &Keyed<i64>,
        ctx: &TransformContext,
        out: &mut Vec<Balance>,
    ) -> Result<(), TransformError> {
        out.push(Balance {
            id: ctx.output_id(&[&r.key, &r.day.to_string()]),
            account: r.key.clone(),
            day: r.day,
            month: r.month(),
            cents: r.value * 100,
            produced_at: ctx.run_started_at().to_rfc3339(),
        });
        Ok(())
    }
}

#[test]
fn the_users_transform_is_deterministic() {
    let at = chrono::DateTime::from_timestamp(1_750_000_000, 0).unwrap();
    let ctx = TransformContext::fixed("bf-user", ExecutionMode::Backfill, at);
    let q1 = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    let inputs = strategy::keyed(4, q1, 90, -1_000_000i64..1_000_000, 0..40);
    check_transform(&ToBalance, inputs, &ctx, ProptestConfig::with_cases(32))
        .unwrap_or_else(|f| panic!("{f}"));
}

// ---- the user's sink -----------------------------------------------------------------------------

/// The user's staging sink: one slot per (run, chunk), written only when the stream completes, and
/// fenced: a slot remembers the attempt that wrote it and refuses older ones.
#[derive(Debug)]
struct SlotSink<R>(Mutex<SlotMap<R>>);

/// Each chunk's rows and the attempt that wrote them.
type SlotMap<R> = BTreeMap<(RunId, ChunkId), (u32, Vec<R>)>;

impl<R> SlotSink<R> {
    fn new() -> Self {
        Self(Mutex::new(BTreeMap::new()))
    }
}

#[async_trait]
impl<R: OutputRow> StagingSink<R> for SlotSink<R> {
    fn descriptor(&self) -> SinkDescriptor {
        SinkDescriptor::internal("slots", "user")
    }
    async fn stage(
        &self,
        req: StageRequest<'_>,
        rows: BoxStream<'_, backfill_core::Result<Vec<R>>>,
    ) -> backfill_core::Result<StageReceipt> {
        let batches: Vec<Vec<R>> = rows.try_collect().await?;
        let n = batches.len() as u64;
        let all: Vec<R> = batches.into_iter().flatten().collect();
        let rows = all.len() as u64;
        let mut slots = self.0.lock().unwrap();
        let key = (req.run_id.clone(), req.chunk_id.clone());
        if let Some((current, _)) = slots.get(&key).filter(|(a, _)| *a > req.attempt) {
            return Err(Error::Fenced {
                run_id: req.run_id.clone(),
                chunk_id: req.chunk_id.clone(),
                attempt: req.attempt,
                current: *current,
            });
        }
        slots.insert(key, (req.attempt, all));
        let artifact = StagedArtifact::of(&(req.chunk_id, req.attempt))?;
        Ok(StageReceipt {
            rows,
            batches: n,
            artifact,
        })
    }
    fn read_staged<'a>(
        &'a self,
        run_id: &'a RunId,
    ) -> BoxStream<'a, backfill_core::Result<Vec<R>>> {
        let chunks: Vec<backfill_core::Result<Vec<R>>> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|((r, _), _)| r == run_id)
            .map(|(_, (_, v))| Ok(v.clone()))
            .collect();
        stream::iter(chunks).boxed()
    }
    async fn discard(&self, run_id: &RunId) -> backfill_core::Result<()> {
        self.0.lock().unwrap().retain(|(r, _), _| r != run_id);
        Ok(())
    }
}

struct Slots;

#[async_trait]
impl SinkHarness for Slots {
    async fn build(&self, _: &str) -> backfill_core::Result<Arc<dyn StagingSink<TestRow>>> {
        Ok(Arc::new(SlotSink::<TestRow>::new()))
    }
    async fn teardown(&self, _: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

backfill_testkit::sink_conformance!(slot_sink, || Slots);

#[tokio::test]
async fn the_users_sink_stages_the_users_rows_idempotently() {
    let at = chrono::DateTime::from_timestamp(1_750_000_000, 0).unwrap();
    let ctx = TransformContext::fixed("bf-user", ExecutionMode::Backfill, at);
    let q1 = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    let mut runner = TestRunner::deterministic();
    for _ in 0..8 {
        let inputs = strategy::keyed(3, q1, 60, 0i64..1_000, 0..60)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let mut rows = Vec::new();
        for i in &inputs {
            ToBalance.apply(i, &ctx, &mut rows).unwrap();
        }
        let sink = SlotSink::<Balance>::new();
        check_idempotent_staging(&sink, &"bf-user".into(), &rows)
            .await
            .unwrap_or_else(|f| panic!("{f}"));
    }
}

// ---- the user's source ---------------------------------------------------------------------------

/// The user's source: accounts keyed by id, planned as key ranges of the manifest's key range split
/// at the given points, read in batches of three. The snapshot is the data's version.
#[derive(Debug)]
struct Accounts {
    rows: Vec<(String, i64)>,
    version: String,
    splits: Vec<String>,
}

#[async_trait]
impl BackfillSource<(String, i64)> for Accounts {
    fn name(&self) -> &str {
        "accounts"
    }

    async fn plan(&self, m: &RunManifest) -> backfill_core::Result<SourcePlan> {
        let Some(InputRange::Keys { from, to_exclusive }) = &m.source.range else {
            return Err(Error::InvalidManifest {
                run_id: m.run_id.clone(),
                field: "source.range".into(),
                message: "accounts are planned by key range".into(),
            });
        };
        let mut bounds = vec![from.clone()];
        bounds.extend(
            self.splits
                .iter()
                .filter(|s| *s > from && *s < to_exclusive)
                .cloned(),
        );
        bounds.push(to_exclusive.clone());
        let chunks = bounds
            .windows(2)
            .map(|w| {
                let range = InputRange::Keys {
                    from: w[0].clone(),
                    to_exclusive: w[1].clone(),
                };
                ChunkSpec::new(range, format!("{}..{}", w[0], w[1]))
            })
            .collect();
        Ok(SourcePlan {
            snapshot: Some(self.version.clone()),
            resolved_from: None,
            chunks,
        })
    }

    fn read(
        &self,
        chunk: &PlannedChunk,
    ) -> BoxStream<'static, backfill_core::Result<Vec<(String, i64)>>> {
        let InputRange::Keys { from, to_exclusive } = &chunk.range else {
            return stream::empty().boxed();
        };
        let rows: Vec<(String, i64)> = self
            .rows
            .iter()
            .filter(|(k, _)| k >= from && k < to_exclusive)
            .cloned()
            .collect();
        let batches: Vec<backfill_core::Result<Vec<(String, i64)>>> =
            rows.chunks(3).map(|b| Ok(b.to_vec())).collect();
        stream::iter(batches).boxed()
    }
}

struct AccountsHarness;

#[async_trait]
impl SourceHarness for AccountsHarness {
    type Record = (String, i64);

    async fn build(&self, _: &str) -> backfill_core::Result<SourceFixture<(String, i64)>> {
        let rows: Vec<(String, i64)> = (0..40).map(|i| (format!("acct-{i:03}"), i * 10)).collect();
        let source = Accounts {
            rows,
            version: "v7".into(),
            splits: vec!["acct-010".into(), "acct-025".into()],
        };
        let mut m = RunManifest::new("bf-accounts", RunKind::Repair, ExecutionMode::Backfill);
        m.source.snapshot = Some("v7".into());
        m.source.range = Some(InputRange::Keys {
            from: "acct-005".into(),
            to_exclusive: "acct-030".into(),
        });
        Ok(SourceFixture::new(Arc::new(source), m).expect_records(25))
    }

    async fn teardown(&self, _: &str) -> backfill_core::Result<()> {
        Ok(())
    }
}

backfill_testkit::source_conformance!(accounts_source, || AccountsHarness);

// ---- the public strategies -----------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn generated_manifests_are_valid_and_approvable(m in strategy::manifests()) {
        prop_assert!(!m.check().has_blocking(), "{:?}", m.check().blocking());
        let input = m.source.range.clone().unwrap();
        let publish = m.effective_publish_range().unwrap();
        prop_assert_eq!(input.contains(publish), Some(true));
        prop_assert!(!publish.is_empty());
        prop_assert!(!m.target.partitions.is_empty());
        let at = chrono::DateTime::from_timestamp(1_750_000_000, 0).unwrap();
        prop_assert!(m.approve("owner", at).is_ok());
    }

    #[test]
    fn generated_input_ranges_are_not_empty(r in strategy::input_ranges()) {
        prop_assert!(!r.is_empty(), "{r}");
        prop_assert_eq!(r.contains(&r), Some(true));
    }

    #[test]
    fn generated_records_are_in_date_order_with_partitions(
        v in strategy::keyed(3, NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(), 90, any::<i32>(), 0..50),
        rows in strategy::test_rows(vec!["2025-01".into(), "2025-02".into()], 1..20),
    ) {
        prop_assert!(v.windows(2).all(|w| w[0].day <= w[1].day));
        prop_assert!(v.iter().all(|r| r.partition().starts_with("2025-0") && r.key.starts_with('k')));
        prop_assert!(rows.iter().all(|r| r.partition == "2025-01" || r.partition == "2025-02"));
    }
}
