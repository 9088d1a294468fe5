//! The manifest's JSON Schema, generated from the types.
//!
//! The schema describes the canonical form: snake_case keys, tagged ranges and mutations, exactly
//! what [`RunManifest::to_json_pretty`] writes. The readers also accept the seed's camelCase
//! spellings and shorthands, which the schema leaves out so that one document has one spelling.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::Value;

use super::RunManifest;
use crate::context::ExecutionMode;
use crate::ids::{PartitionKey, RunId};

impl RunManifest {
    /// The JSON Schema (draft 2020-12) of a manifest's canonical form, for editors, CI checks and a
    /// CLI's `schema` command. `schemas/manifest.schema.json` in the repository is this value.
    pub fn json_schema() -> Value {
        schemars::generate::SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<Self>()
            .to_value()
    }
}

impl JsonSchema for ExecutionMode {
    fn schema_name() -> Cow<'static, str> {
        "ExecutionMode".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // The names as serde writes them, so the schema cannot drift from the serialized form.
        let names: Vec<Value> = ALL_MODES
            .iter()
            .filter_map(|m| serde_json::to_value(m).ok())
            .collect();
        json_schema!({
            "description": "How a run's output must be treated downstream.",
            "type": "string",
            "enum": names,
        })
    }
}

/// Every execution mode, for the schema's `enum`.
const ALL_MODES: [ExecutionMode; 5] = [
    ExecutionMode::Live,
    ExecutionMode::Backfill,
    ExecutionMode::Replay,
    ExecutionMode::DryRun,
    ExecutionMode::Reconciliation,
];

macro_rules! string_schema {
    ($ty:ty, $name:literal, $description:literal) => {
        impl JsonSchema for $ty {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "description": $description, "type": "string" })
            }
        }
    };
}

string_schema!(RunId, "RunId", "Identity of a run.");
string_schema!(
    PartitionKey,
    "PartitionKey",
    "A publish partition of the target."
);
