//! Rows as Arrow record batches: how the sink writes a user's output type and how the source and the
//! target reader give one back.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Converts between a row type and Arrow record batches.
///
/// # Contract
/// 1. `encode(rows, schema)` returns a batch with exactly `schema` (same fields, order, types and
///    metadata; the schema the adapter passes carries Iceberg's field ids) and one row per input
///    row, in order.
/// 2. `decode` accepts a batch whose columns include every field `to_batch` writes (the table's
///    schema, lineage columns included) and returns one row per batch row, in order;
///    `decode(encode(rows))` equals `rows`.
/// 3. Both are pure: no I/O, no clock.
pub trait ArrowRows<R>: fmt::Debug + Send + Sync + 'static {
    /// Encodes rows into a batch of `schema`.
    fn encode(&self, rows: &[&R], schema: &SchemaRef) -> Result<RecordBatch, ArrowError>;

    /// Decodes a batch into rows.
    fn decode(&self, batch: &RecordBatch) -> Result<Vec<R>, ArrowError>;
}

/// [`ArrowRows`] for any serde type, through arrow-json's serde bridge: struct fields map to columns
/// by name; dates and timestamps go as text (`chrono` types work as they are).
///
/// Write a hand-made [`ArrowRows`] with typed array builders where the last bit of speed matters.
pub struct SerdeRows<R>(PhantomData<fn() -> R>);

impl<R> SerdeRows<R> {
    /// The codec.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<R> Default for SerdeRows<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> Clone for SerdeRows<R> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<R> fmt::Debug for SerdeRows<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SerdeRows")
    }
}

impl<R: Serialize + DeserializeOwned + 'static> ArrowRows<R> for SerdeRows<R> {
    fn encode(&self, rows: &[&R], schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        let mut decoder = arrow_json::ReaderBuilder::new(Arc::clone(schema))
            .with_batch_size(rows.len().max(1))
            .build_decoder()?;
        decoder.serialize(rows)?;
        match decoder.flush()? {
            Some(b) => Ok(b),
            None => Ok(RecordBatch::new_empty(Arc::clone(schema))),
        }
    }

    fn decode(&self, batch: &RecordBatch) -> Result<Vec<R>, ArrowError> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let mut w = arrow_json::ArrayWriter::new(Vec::with_capacity(batch.num_rows() * 64));
        w.write(batch)?;
        w.finish()?;
        let bytes = w.into_inner();
        serde_json::from_slice(&bytes).map_err(|e| ArrowError::JsonError(e.to_string()))
    }
}
