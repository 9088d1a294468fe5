//! The core control plane and executor on the SQL store (memory staging and target), on every
//! engine.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::borrow::Cow;
use std::sync::Arc;

use backfill_core::memory::{MemoryPublisher, MemorySink, MemorySource};
use backfill_core::prelude::*;
use backfill_sql::SqlStore;
use chrono::{NaiveDate, TimeZone, Utc};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
struct Row {
    id: String,
    month: String,
    v: i64,
}
impl OutputRow for Row {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}
#[derive(Debug)]
struct T;
impl DeterministicTransform for T {
    type Input = (NaiveDate, i64);
    type Output = Row;
    fn name(&self) -> &str {
        "t"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    fn apply(
        &self,
        i: &Self::Input,
        ctx: &TransformContext,
        out: &mut Vec<Row>,
    ) -> Result<(), TransformError> {
        out.push(Row {
            id: ctx.output_id(&[&i.0.to_string()]),
            month: i.0.format("%Y-%m").to_string(),
            v: i.1,
        });
        Ok(())
    }
}

#[tokio::test]
async fn runner_on_sql_store() {
    for engine in common::engines() {
        let ns = engine.namespace("smoke");
        let store = Arc::new(SqlStore::new(ns.pool().await).await.unwrap());
        let d0 = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        let inputs: Vec<_> = (0..90)
            .map(|i| (d0 + chrono::Days::new(i), i as i64))
            .collect();
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let sink = Arc::new(MemorySink::new("s"));
        let target = Arc::new(MemoryPublisher::new("t", &sink));
        let control = Control::new(store.clone())
            .with_clock(Arc::new(FixedClock(at)))
            .with_target(target.clone())
            .unwrap();
        let executor = Executor::builder(
            control.clone(),
            Arc::new(MemorySource::by_date(inputs, |r| r.0)),
            Arc::new(T),
            sink,
            target,
        )
        .build();
        let mut m = RunManifest::new("bf-1", RunKind::Backfill, ExecutionMode::Backfill);
        m.reason = "r".into();
        m.requested_by = "a".into();
        m.source = SourceSpec {
            kind: "memory".into(),
            name: "x".into(),
            snapshot: None,
            range: Some(InputRange::Dates {
                from: d0,
                to_exclusive: NaiveDate::from_ymd_opt(2025, 4, 1).unwrap(),
            }),
            ..SourceSpec::default()
        };
        m.transform.name = "t".into();
        m.transform.version = "1.0.0".into();
        m.target.name = "t".into();
        m.target.mutation = Some(Mutation::ReplacePartitions);
        m.target.partitions = vec!["2025-01".into(), "2025-02".into(), "2025-03".into()];
        m.safety.side_effects = Some(SideEffectPolicy::default());
        m.validation = Some(ValidationPlan {
            checksum_required: true,
            ..Default::default()
        });
        let approved = m.approve("b", at).unwrap();
        control.submit(&approved).await.unwrap();
        let report = executor.run(approved.run_id()).await.unwrap();
        assert_eq!(report.state, RunState::Published, "{}", engine.name);
        assert_eq!(report.output_rows, 90);
        assert_eq!(store.transitions(approved.run_id()).await.unwrap().len(), 5);
        assert!(store.evidence(approved.run_id()).await.unwrap().len() > 8);
        assert_eq!(executor.run(approved.run_id()).await.unwrap(), report);
        let run = store.run(approved.run_id()).await.unwrap().unwrap();
        assert_eq!(run.requested_by, "a");
        ns.drop().await;
    }
}
