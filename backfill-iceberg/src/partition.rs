//! Publish partitions of an Iceberg table: the text a row's [`OutputRow::partition`] must return.
//!
//! A row's publish partition is the table's partition value of that row, each field in Iceberg's
//! human form (`2025-03` for `month(d)`, `2025-03-14` for `day(d)`, the value for `identity(c)`),
//! fields joined by `/`. So a row in `month(event_date) = 2025-03` says `"2025-03"`, a row of a
//! table partitioned by `identity(region), month(d)` says `"eu/2025-03"`. Unpartitioned tables have
//! the single partition [`UNPARTITIONED`]. The staging sink checks every row against the spec.
//!
//! [`OutputRow::partition`]: backfill_core::digest::OutputRow::partition

use backfill_core::Result;
use iceberg::spec::{PartitionSpec, Schema, Struct};

use crate::error::ice;

/// The publish partition of every row of an unpartitioned table.
pub const UNPARTITIONED: &str = "all";

/// The publish partition of a partition value of `spec` over `schema`.
pub fn partition_label(spec: &PartitionSpec, schema: &Schema, data: &Struct) -> Result<String> {
    if spec.is_unpartitioned() {
        return Ok(UNPARTITIONED.to_owned());
    }
    let ty = spec
        .partition_type(schema)
        .map_err(|e| ice("computing the partition type", e))?;
    let types = ty.fields();
    let mut out = String::new();
    for (i, (field, value)) in spec.fields().iter().zip(data.iter()).enumerate() {
        if i > 0 {
            out.push('/');
        }
        let t = types
            .get(i)
            .map(|f| f.field_type.as_ref().clone())
            .ok_or_else(|| crate::error::corrupt("partition value", "more values than fields"))?;
        out.push_str(&field.transform.to_human_string(&t, value));
    }
    Ok(out)
}
