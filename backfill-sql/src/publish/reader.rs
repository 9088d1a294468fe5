//! What readers see: [`TargetReader`] over the relation the target's pointer names.

use backfill_core::digest::OutputRow;
use backfill_core::ids::PartitionKey;
use backfill_core::publish::TargetReader;
use futures::stream::{self, BoxStream, StreamExt};
use serde::de::DeserializeOwned;

use super::SqlPublisher;
use crate::ident::QualifiedName;
use crate::sink::read_rows;

impl<R: OutputRow + DeserializeOwned> TargetReader<R> for SqlPublisher<R> {
    fn read_current<'a>(
        &'a self,
        partition: &'a PartitionKey,
    ) -> BoxStream<'a, backfill_core::Result<Vec<R>>> {
        stream::once(async move {
            let relation = match self.pointer().await? {
                Some(p) => QualifiedName::parse(&p.relation)?,
                None if self.exists(&self.target).await? => self.target.clone(),
                None => return Ok(Vec::new()),
            };
            let from = format!(
                "{} WHERE {} = ?",
                relation.quoted(self.d()),
                self.q(self.schema.partition_column)
            );
            read_rows::<R>(&self.pool, &self.schema, &from, Some(partition.as_str())).await
        })
        .boxed()
    }
}
