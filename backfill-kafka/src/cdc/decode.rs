//! Decoding Debezium JSON envelopes and Kafka tombstones into [`ChangeRecord`]s.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::position::{KafkaCoordinates, SourcePosition};
use super::record::{ChangeKey, ChangeOp, ChangeRecord, SourceInfo};

/// Why a message is not a change record. Every variant names where the message was read (`at`:
/// the Kafka coordinates, or `envelope` when none were given) and, where there is one, the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The key or value is not JSON.
    #[error("cdc message at {at}: {field} is not JSON: {source}")]
    Json {
        /// Where the message was read.
        at: String,
        /// `key` or `value`.
        field: &'static str,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A field the change needs is absent (or null).
    #[error("cdc message at {at}: field `{field}` is missing")]
    MissingField {
        /// Where the message was read.
        at: String,
        /// The field, as a path (`source.lsn`).
        field: &'static str,
    },
    /// A field has the wrong type or an impossible value.
    #[error("cdc message at {at}: field `{field}` {detail}")]
    InvalidField {
        /// Where the message was read.
        at: String,
        /// The field, as a path.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The `op` code is not one of `c`, `u`, `d`, `r` (truncate `t` and message `m` events carry
    /// no key and are not decoded).
    #[error("cdc message at {at}: op `{op}` is not supported (expected c, u, d or r)")]
    UnsupportedOp {
        /// Where the message was read.
        at: String,
        /// The op code.
        op: String,
    },
    /// The row image does not deserialize into the row type.
    #[error("cdc message at {at}: field `{field}` does not match the row type: {source}")]
    Row {
        /// Where the message was read.
        at: String,
        /// `after`.
        field: &'static str,
        /// The deserializer's error.
        source: serde_json::Error,
    },
    /// A tombstone positioned by the source log, for a key this decoder has seen no change of.
    #[error("cdc message at {at}: tombstone for key {key} follows no change of that key, so it has no source-log position (decode with PositionBasis::Kafka)")]
    TombstoneWithoutPosition {
        /// Where the message was read.
        at: String,
        /// The key.
        key: ChangeKey,
    },
}

/// Which position orders the decoded changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PositionBasis {
    /// The database log position from the envelope's source block (`source.lsn`, or
    /// `source.file`/`source.pos`/`source.row`); an envelope without one falls back to its Kafka
    /// coordinates. A tombstone takes the position of the last change of its key this decoder
    /// decoded (normally the delete it follows). Snapshot and CDC positions then compare.
    #[default]
    SourceLog,
    /// The Kafka coordinates of every message, tombstones included: for a single topic partition
    /// read in full, where the database position is not wanted or not present.
    Kafka,
}

/// Decodes Debezium change events, one Kafka message at a time.
///
/// Accepts the JSON converter's output with or without schemas (a `{"schema": …, "payload": …}`
/// wrapper around the key and the value), and tombstones (a key with a null value, decoded as a
/// [delete](ChangeOp::Delete) with no images). The key is the message key; without one, it is
/// taken from the row image's [key columns](Self::with_key_columns).
///
/// A `before` image that does not deserialize into the row type is dropped rather than refused:
/// PostgreSQL sends only the key columns of it unless the table's replica identity is full.
#[derive(Debug, Clone, Default)]
pub struct ChangeDecoder {
    basis: PositionBasis,
    key_columns: Option<Vec<String>>,
    last: BTreeMap<ChangeKey, (SourcePosition, i64)>,
}

impl ChangeDecoder {
    /// A decoder positioning changes by their source log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Positions changes by `basis`.
    pub fn with_basis(mut self, basis: PositionBasis) -> Self {
        self.basis = basis;
        self
    }

    /// Takes the key from these columns of the row image when a message has no key.
    pub fn with_key_columns<I, S>(mut self, columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.key_columns = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    /// Decodes one message: its key, its value (`None` for a tombstone) and where it was read.
    pub fn decode<T: DeserializeOwned>(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        at: Option<&KafkaCoordinates>,
    ) -> Result<ChangeRecord<T>, DecodeError> {
        let here = at.map_or_else(|| "envelope".to_owned(), ToString::to_string);
        let key_json = match key {
            Some(bytes) => unwrap_payload(parse(bytes, "key", &here)?),
            None => Value::Null,
        };
        let value = match value {
            Some(bytes) => unwrap_payload(parse(bytes, "value", &here)?),
            None => Value::Null,
        };
        let record = match value {
            Value::Null => self.tombstone(key_json, at, &here)?,
            Value::Object(envelope) => self.envelope(key_json, &envelope, at, &here)?,
            _ => {
                return Err(invalid(&here, "value", "is neither an object nor null"));
            }
        };
        self.last.insert(
            record.key.clone(),
            (record.position.clone(), record.version),
        );
        Ok(record)
    }

    fn tombstone<T>(
        &self,
        key: Value,
        at: Option<&KafkaCoordinates>,
        here: &str,
    ) -> Result<ChangeRecord<T>, DecodeError> {
        if key.is_null() {
            return Err(missing(here, "key"));
        }
        let key = ChangeKey::from_json(&key);
        let (position, version) = match (self.basis, at) {
            (PositionBasis::Kafka, Some(at)) => kafka_position(at),
            (PositionBasis::Kafka, None) => return Err(missing(here, "kafka coordinates")),
            (PositionBasis::SourceLog, _) => match self.last.get(&key) {
                Some(last) => last.clone(),
                None => {
                    return Err(DecodeError::TombstoneWithoutPosition {
                        at: here.to_owned(),
                        key,
                    })
                }
            },
        };
        Ok(ChangeRecord {
            op: ChangeOp::Delete,
            key,
            before: None,
            after: None,
            source: SourceInfo::default(),
            position,
            kafka: at.cloned(),
            ts_ms: None,
            version,
        })
    }

    fn envelope<T: DeserializeOwned>(
        &self,
        key: Value,
        envelope: &Map<String, Value>,
        at: Option<&KafkaCoordinates>,
        here: &str,
    ) -> Result<ChangeRecord<T>, DecodeError> {
        let code = match envelope.get("op") {
            None | Some(Value::Null) => return Err(missing(here, "op")),
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(invalid(here, "op", "is not a string")),
        };
        let op = ChangeOp::from_code(code).ok_or_else(|| DecodeError::UnsupportedOp {
            at: here.to_owned(),
            op: code.to_owned(),
        })?;
        let before = envelope.get("before").filter(|v| !v.is_null());
        let after = envelope.get("after").filter(|v| !v.is_null());
        let after_row: Option<T> = match (op, after) {
            (ChangeOp::Delete, _) => None,
            (_, None) => return Err(missing(here, "after")),
            (_, Some(a)) => Some(T::deserialize(a).map_err(|source| DecodeError::Row {
                at: here.to_owned(),
                field: "after",
                source,
            })?),
        };
        let before_row: Option<T> = before.and_then(|b| T::deserialize(b).ok());
        let key = if key.is_null() {
            let image = after.or(before).ok_or_else(|| missing(here, "key"))?;
            self.key_columns
                .as_deref()
                .and_then(|cols| ChangeKey::from_columns(image, cols))
                .ok_or_else(|| missing(here, "key"))?
        } else {
            ChangeKey::from_json(&key)
        };
        let source = match envelope.get("source") {
            None | Some(Value::Null) => None,
            Some(Value::Object(s)) => Some(s),
            Some(_) => return Err(invalid(here, "source", "is not an object")),
        };
        let info = source
            .map(source_info)
            .transpose()
            .map_err(|(field, detail)| invalid(here, field, detail))?;
        let (position, version) = match (self.basis, source.map(log_position), at) {
            (PositionBasis::Kafka, _, Some(at)) => kafka_position(at),
            (PositionBasis::Kafka, _, None) => return Err(missing(here, "kafka coordinates")),
            (PositionBasis::SourceLog, Some(Err((field, detail))), _) => {
                return Err(invalid(here, field, detail))
            }
            (PositionBasis::SourceLog, Some(Ok(Some(p))), _) => {
                let v = p.version().ok_or_else(|| {
                    invalid(
                        here,
                        "source",
                        format!("{p} does not fit an i64 merge version"),
                    )
                })?;
                (p, v)
            }
            (PositionBasis::SourceLog, _, Some(at)) => kafka_position(at),
            (PositionBasis::SourceLog, _, None) => {
                return Err(missing(here, "source.lsn or source.file/source.pos"))
            }
        };
        let ts_ms = match envelope.get("ts_ms") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_i64()
                    .ok_or_else(|| invalid(here, "ts_ms", "is not an integer"))?,
            ),
        };
        let info = info.unwrap_or_default();
        Ok(ChangeRecord {
            op,
            key,
            before: before_row,
            after: after_row,
            ts_ms: ts_ms.or(info.ts_ms),
            source: info,
            position,
            kafka: at.cloned(),
            version,
        })
    }
}

type FieldError = (&'static str, String);

fn parse(bytes: &[u8], field: &'static str, here: &str) -> Result<Value, DecodeError> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes).map_err(|source| DecodeError::Json {
        at: here.to_owned(),
        field,
        source,
    })
}

/// The payload of a `{"schema": …, "payload": …}` wrapper, or the value itself.
fn unwrap_payload(value: Value) -> Value {
    match value {
        Value::Object(mut o) if o.len() == 2 && o.contains_key("schema") => {
            o.remove("payload").unwrap_or(Value::Null)
        }
        other => other,
    }
}

fn kafka_position(at: &KafkaCoordinates) -> (SourcePosition, i64) {
    (SourcePosition::kafka(at.clone()), at.offset)
}

fn missing(here: &str, field: &'static str) -> DecodeError {
    DecodeError::MissingField {
        at: here.to_owned(),
        field,
    }
}

fn invalid(here: &str, field: &'static str, detail: impl Into<String>) -> DecodeError {
    DecodeError::InvalidField {
        at: here.to_owned(),
        field,
        detail: detail.into(),
    }
}

fn text(
    s: &Map<String, Value>,
    name: &str,
    field: &'static str,
) -> Result<Option<String>, FieldError> {
    match s.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(v)) => Ok(Some(v.clone())),
        Some(_) => Err((field, "is not a string".into())),
    }
}

fn unsigned(
    s: &Map<String, Value>,
    name: &str,
    field: &'static str,
) -> Result<Option<u64>, FieldError> {
    match s.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| (field, "is not a non-negative integer".into())),
    }
}

fn source_info(s: &Map<String, Value>) -> Result<SourceInfo, FieldError> {
    let snapshot = match s.get("snapshot") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(v)) => v != "false",
        Some(_) => {
            return Err((
                "source.snapshot",
                "is neither a string nor a boolean".into(),
            ))
        }
    };
    let ts_ms = match s.get("ts_ms") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or(("source.ts_ms", "is not an integer".to_owned()))?,
        ),
    };
    Ok(SourceInfo {
        connector: text(s, "connector", "source.connector")?,
        name: text(s, "name", "source.name")?,
        db: text(s, "db", "source.db")?,
        schema: text(s, "schema", "source.schema")?,
        table: text(s, "table", "source.table")?,
        ts_ms,
        snapshot,
    })
}

/// The database log position of a source block: `None` when it names none.
fn log_position(s: &Map<String, Value>) -> Result<Option<SourcePosition>, FieldError> {
    if let Some(lsn) = unsigned(s, "lsn", "source.lsn")? {
        return Ok(Some(SourcePosition::lsn(lsn)));
    }
    let Some(file) = text(s, "file", "source.file")? else {
        return Ok(None);
    };
    let pos = unsigned(s, "pos", "source.pos")?
        .ok_or(("source.pos", "is missing beside source.file".to_owned()))?;
    let row = unsigned(s, "row", "source.row")?.unwrap_or(0);
    SourcePosition::binlog(&file, pos, row).map(Some).ok_or((
        "source.file",
        format!("`{file}` does not end in a sequence number"),
    ))
}
