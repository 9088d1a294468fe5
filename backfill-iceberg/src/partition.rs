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
use chrono::{Duration, NaiveDate};
use iceberg::spec::{Literal, PartitionSpec, PrimitiveLiteral, Schema, Struct, Transform, Type};

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
        out.push_str(&human(field.transform, &t, value));
    }
    Ok(out)
}

/// Iceberg's human form of a partition value, as the Java implementation writes it: `year` as
/// `2025`, `month` as `2025-03`, `day` as `2025-03-14`, `hour` as `2025-03-14-09`; other transforms
/// as the value (iceberg-rust prints temporal transforms as bare ordinals).
fn human(transform: Transform, ty: &Type, value: Option<&Literal>) -> String {
    let ordinal = match value {
        Some(Literal::Primitive(PrimitiveLiteral::Int(n))) => Some(i64::from(*n)),
        Some(Literal::Primitive(PrimitiveLiteral::Long(n))) => Some(*n),
        _ => None,
    };
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    match (transform, ordinal) {
        (Transform::Year, Some(n)) => format!("{}", 1970 + n),
        (Transform::Month, Some(n)) => {
            let (y, m) = (1970 + n.div_euclid(12), n.rem_euclid(12) + 1);
            format!("{y:04}-{m:02}")
        }
        (Transform::Day, Some(n)) => (epoch + Duration::days(n)).format("%Y-%m-%d").to_string(),
        (Transform::Hour, Some(n)) => {
            let t = epoch.and_hms_opt(0, 0, 0).unwrap_or_default() + Duration::hours(n);
            t.format("%Y-%m-%d-%H").to_string()
        }
        _ => transform.to_human_string(ty, value),
    }
}
