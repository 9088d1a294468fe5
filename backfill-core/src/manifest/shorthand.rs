//! Readers for the seed's shorthand spellings of a few fields. Each reads the field into a JSON
//! value first, turns a shorthand into the canonical shape, then lets the canonical (strict) type
//! read it, so unknown fields are refused in the shorthand and canonical forms alike.

use chrono::NaiveDate;
use serde::de::{Error as _, IntoDeserializer};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::range::{InputRange, OffsetRange};
use super::sections::{Mutation, SideEffectPolicy};
use super::MANIFEST_SCHEMA_VERSION;
use crate::context::ExecutionMode;

/// The seed's date range: `eventDateTo` is the last date *included*.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventDates {
    #[serde(rename = "eventDateFrom", alias = "event_date_from")]
    from: NaiveDate,
    #[serde(rename = "eventDateTo", alias = "event_date_to")]
    to: NaiveDate,
}

/// Reads an optional [`InputRange`]: canonical (`{"type": "dates", ...}`), the seed's
/// `{"eventDateFrom", "eventDateTo"}` (both included) or a bare list of offset ranges.
pub(super) fn input_range<'de, D: Deserializer<'de>>(d: D) -> Result<Option<InputRange>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None => Ok(None),
        Some(value) => range_from_value(value).map(Some).map_err(D::Error::custom),
    }
}

fn range_from_value(value: Value) -> Result<InputRange, String> {
    match value {
        Value::Array(items) => {
            let partitions = Vec::<OffsetRange>::deserialize(Value::Array(items))
                .map_err(|e| format!("offset ranges: {e}"))?;
            Ok(InputRange::Offsets { partitions })
        }
        Value::Object(map) if !map.contains_key("type") && is_event_dates(&map) => {
            let dates = EventDates::deserialize(Value::Object(map)).map_err(|e| e.to_string())?;
            let to_exclusive = dates
                .to
                .succ_opt()
                .ok_or_else(|| format!("eventDateTo {} has no next day", dates.to))?;
            Ok(InputRange::Dates {
                from: dates.from,
                to_exclusive,
            })
        }
        other => InputRange::deserialize(lowercase_tag(other)).map_err(|e| e.to_string()),
    }
}

fn is_event_dates(map: &Map<String, Value>) -> bool {
    [
        "eventDateFrom",
        "eventDateTo",
        "event_date_from",
        "event_date_to",
    ]
    .iter()
    .any(|k| map.contains_key(*k))
}

/// Lower-cases a string `type` tag, so `"DATES"` and `"REPLACE_PARTITIONS"` read as canonical.
fn lowercase_tag(mut value: Value) -> Value {
    if let Some(Value::String(tag)) = value.get_mut("type") {
        *tag = tag.to_ascii_lowercase();
    }
    value
}

/// Reads an optional [`Mutation`]: a tagged object, or a bare mode name in any case.
pub(super) fn mutation<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Mutation>, D::Error> {
    let value = match Option::<Value>::deserialize(d)? {
        None => return Ok(None),
        Some(Value::String(name)) => {
            Value::Object(Map::from_iter([("type".to_owned(), Value::String(name))]))
        }
        Some(other) => other,
    };
    let extra = value
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "type").cloned());
    let mutation = Mutation::deserialize(lowercase_tag(value)).map_err(D::Error::custom)?;
    // Serde lets a unit variant of a tagged enum ignore other keys; a manifest must not.
    match (&mutation, extra) {
        (Mutation::MergeByKey { .. }, _) | (_, None) => Ok(Some(mutation)),
        (_, Some(key)) => Err(D::Error::custom(format!(
            "unknown field `{key}`: mutation `{}` takes no parameters",
            mutation.name()
        ))),
    }
}

/// Reads an optional [`SideEffectPolicy`]: the object, or a bare boolean for `allowed`.
pub(super) fn side_effects<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SideEffectPolicy>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None => Ok(None),
        Some(Value::Bool(allowed)) => Ok(Some(SideEffectPolicy {
            allowed,
            allowed_sinks: Vec::new(),
        })),
        Some(other) => SideEffectPolicy::deserialize(other)
            .map(Some)
            .map_err(D::Error::custom),
    }
}

/// Reads an [`ExecutionMode`] in any case (`backfill`, `BACKFILL`).
pub(super) fn execution_mode<'de, D: Deserializer<'de>>(d: D) -> Result<ExecutionMode, D::Error> {
    let name = String::deserialize(d)?.to_ascii_lowercase();
    ExecutionMode::deserialize(name.into_deserializer())
}

/// Reads the schema version and refuses one this release does not know.
pub(super) fn schema_version<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let version = u32::deserialize(d)?;
    check_schema_version(u64::from(version)).map_err(D::Error::custom)?;
    Ok(version)
}

/// `Err(message)` when `version` is not one this release reads.
pub(super) fn check_schema_version(version: u64) -> Result<(), String> {
    if version == 0 {
        return Err("schema version 0 does not exist; versions start at 1".into());
    }
    if version > u64::from(MANIFEST_SCHEMA_VERSION) {
        return Err(format!(
            "schema version {version} is newer than this release of backfill reads \
             (up to {MANIFEST_SCHEMA_VERSION}); upgrade backfill-core to load this manifest"
        ));
    }
    Ok(())
}
