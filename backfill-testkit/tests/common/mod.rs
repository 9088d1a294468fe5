//! Broken implementations shared by the testkit's own tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::Mutex;

use async_trait::async_trait;
use backfill_core::digest::OutputRow;
use backfill_core::ids::RunId;
use backfill_core::sink::{SinkDescriptor, StageReceipt, StageRequest, StagingSink};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};

/// A sink that appends on re-stage instead of replacing.
#[derive(Debug)]
pub struct AppendingSink<R>(Mutex<Vec<(RunId, R)>>);

impl<R> Default for AppendingSink<R> {
    fn default() -> Self {
        Self(Mutex::new(Vec::new()))
    }
}

#[async_trait]
impl<R: OutputRow> StagingSink<R> for AppendingSink<R> {
    fn descriptor(&self) -> SinkDescriptor {
        SinkDescriptor::internal("appending", "broken")
    }
    async fn stage(
        &self,
        req: StageRequest<'_>,
        rows: BoxStream<'_, backfill_core::Result<Vec<R>>>,
    ) -> backfill_core::Result<StageReceipt> {
        let rows: Vec<R> = rows.try_concat().await?;
        let n = rows.len() as u64;
        self.0
            .lock()
            .unwrap()
            .extend(rows.into_iter().map(|r| (req.run_id.clone(), r)));
        Ok(StageReceipt {
            rows: n,
            batches: 1,
        })
    }
    fn read_staged<'a>(
        &'a self,
        run_id: &'a RunId,
    ) -> BoxStream<'a, backfill_core::Result<Vec<R>>> {
        let rows: Vec<R> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| r == run_id)
            .map(|(_, x)| x.clone())
            .collect();
        futures::stream::iter([Ok(rows)]).boxed()
    }
    async fn discard(&self, run_id: &RunId) -> backfill_core::Result<()> {
        self.0.lock().unwrap().retain(|(r, _)| r != run_id);
        Ok(())
    }
}
