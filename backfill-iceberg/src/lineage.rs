//! Lineage columns: the seed's names, filled by the staging sink on every row it writes.

use std::sync::Arc;

use arrow_array::{ArrayRef, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field};
use backfill_core::context::OutputLineage;
use iceberg::spec::{NestedField, NestedFieldRef, PrimitiveType, Type};

/// Lineage column names, in the order [`lineage_fields`] declares them (the same names
/// backfill-sql uses).
pub const LINEAGE_COLUMNS: [&str; 8] = [
    "produced_by_run_id",
    "produced_by_transform",
    "transform_version",
    "processing_mode",
    "input_range",
    "input_snapshot_id",
    "reference_data_version",
    "produced_at",
];

/// The lineage columns as Iceberg fields with ids from `first_id` on, to append to a table's
/// schema. `produced_at` is a `timestamptz`, `input_snapshot_id` optional, the rest required text.
///
/// ```
/// use backfill_iceberg::lineage_fields;
/// use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
/// let mut fields = vec![
///     NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
/// ];
/// fields.extend(lineage_fields(2));
/// let schema = Schema::builder().with_fields(fields).build().unwrap();
/// assert!(schema.field_by_name("produced_by_run_id").is_some());
/// ```
pub fn lineage_fields(first_id: i32) -> Vec<NestedFieldRef> {
    LINEAGE_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let id = first_id + i as i32;
            let field = match *name {
                "produced_at" => {
                    NestedField::required(id, *name, Type::Primitive(PrimitiveType::Timestamptz))
                }
                "input_snapshot_id" => {
                    NestedField::optional(id, *name, Type::Primitive(PrimitiveType::String))
                }
                _ => NestedField::required(id, *name, Type::Primitive(PrimitiveType::String)),
            };
            Arc::new(field)
        })
        .collect()
}

/// Whether a column is a lineage column.
pub(crate) fn is_lineage(name: &str) -> bool {
    LINEAGE_COLUMNS.contains(&name)
}

/// The constant column `field` (a lineage column) for `rows` rows.
pub(crate) fn column(field: &Field, l: &OutputLineage, rows: usize) -> Option<ArrayRef> {
    let text =
        |v: &str| -> ArrayRef { Arc::new(StringArray::from_iter_values((0..rows).map(|_| v))) };
    Some(match field.name().as_str() {
        "produced_by_run_id" => text(l.run_id.as_str()),
        "produced_by_transform" => text(&l.transform_name),
        "transform_version" => text(&l.transform_version),
        "processing_mode" => text(l.mode.as_str()),
        "input_range" => text(&l.input_range),
        "reference_data_version" => text(&l.reference_data),
        "input_snapshot_id" => Arc::new(StringArray::from(vec![l.input_snapshot.as_deref(); rows])),
        "produced_at" => {
            let tz = match field.data_type() {
                DataType::Timestamp(_, tz) => tz.clone(),
                _ => None,
            };
            let micros = l.produced_at.timestamp_micros();
            Arc::new(
                TimestampMicrosecondArray::from_iter_values((0..rows).map(|_| micros))
                    .with_timezone_opt(tz),
            )
        }
        _ => return None,
    })
}
