//! The typed change record.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::position::{KafkaCoordinates, SourcePosition};

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOp {
    /// `c`: the row was inserted.
    Create,
    /// `u`: the row was updated.
    Update,
    /// `d` or a Kafka tombstone: the key was deleted.
    Delete,
    /// `r`: the row was observed by a snapshot (a state observation, not a create).
    Read,
}

impl ChangeOp {
    /// The op from Debezium's `op` code (`c`, `u`, `d`, `r`); `None` for any other code.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "c" => Some(Self::Create),
            "u" => Some(Self::Update),
            "d" => Some(Self::Delete),
            "r" => Some(Self::Read),
            _ => None,
        }
    }

    /// Debezium's code for the op.
    pub fn code(self) -> &'static str {
        match self {
            Self::Create => "c",
            Self::Update => "u",
            Self::Delete => "d",
            Self::Read => "r",
        }
    }
}

/// A row's key, as canonical JSON: object members sorted by name at every level, no whitespace.
/// Two encodings of the same key (members in another order, with or without a `schema`/`payload`
/// wrapper) give equal keys, and keys order deterministically (by their canonical text).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChangeKey(String);

impl ChangeKey {
    /// The canonical key of a JSON value.
    pub fn from_json(value: &Value) -> Self {
        let mut out = String::new();
        canonical(value, &mut out);
        Self(out)
    }

    /// The key made of `columns` of a JSON object (`None` when one is missing).
    pub fn from_columns(row: &Value, columns: &[String]) -> Option<Self> {
        let obj = row.as_object()?;
        let mut key = serde_json::Map::new();
        for c in columns {
            key.insert(c.clone(), obj.get(c)?.clone());
        }
        Some(Self::from_json(&Value::Object(key)))
    }

    /// The canonical JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as a JSON value.
    pub fn to_json(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }

    /// The key deserialized into a type (such as a struct of the key columns).
    pub fn parse<K: DeserializeOwned>(&self) -> Result<K, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

impl fmt::Display for ChangeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Where a change was captured: Debezium's `source` block, as far as the envelope gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Connector kind (`postgresql`, `mysql`, ...).
    pub connector: Option<String>,
    /// Logical server name (the topic prefix).
    pub name: Option<String>,
    /// Database.
    pub db: Option<String>,
    /// Schema (PostgreSQL).
    pub schema: Option<String>,
    /// Table.
    pub table: Option<String>,
    /// When the database made the change (`source.ts_ms`).
    pub ts_ms: Option<i64>,
    /// Whether the change was read by a snapshot (`source.snapshot` other than `false`).
    pub snapshot: bool,
}

/// One decoded change of one key.
///
/// [`ChangeDecoder`](super::ChangeDecoder) fills `position` from the source log and `version`
/// from [`SourcePosition::version`]; records built by hand should keep that relation, since the
/// folds order by `position` and merges compare `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord<T> {
    /// What the change did.
    pub op: ChangeOp,
    /// The key it changed.
    pub key: ChangeKey,
    /// The row before the change, when the envelope carries a full image of it.
    pub before: Option<T>,
    /// The row after the change (`None` for a delete).
    pub after: Option<T>,
    /// The source block.
    pub source: SourceInfo,
    /// Where the change is in its log; the folds apply changes in this order.
    pub position: SourcePosition,
    /// Where the message was read, when it came from Kafka.
    pub kafka: Option<KafkaCoordinates>,
    /// When the connector processed the change (the envelope's `ts_ms`, else `source.ts_ms`).
    pub ts_ms: Option<i64>,
    /// The merge version: grows with `position` within one log.
    pub version: i64,
}

impl<T> ChangeRecord<T> {
    /// The row's state after the change: `after`, or `None` for a delete.
    pub fn state(&self) -> Option<&T> {
        match self.op {
            ChangeOp::Delete => None,
            _ => self.after.as_ref(),
        }
    }

    /// Whether the record observes a state (a snapshot read) rather than reporting a change.
    pub fn is_observation(&self) -> bool {
        self.op == ChangeOp::Read
    }

    /// Whether the record deletes its key.
    pub fn is_delete(&self) -> bool {
        self.op == ChangeOp::Delete
    }
}
