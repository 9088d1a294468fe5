//! Reading manifests from JSON, YAML and TOML text and from files.

use std::fmt::Display;
use std::path::Path;

use serde_json::Value;

use super::shorthand::check_schema_version;
use super::RunManifest;
use crate::error::{Error, Result};
use crate::ids::RunId;

impl RunManifest {
    /// Parses a manifest from JSON. Errors name the offending field by its path.
    ///
    /// Unknown fields, duplicate fields, trailing text and a newer `schema_version` than
    /// [`MANIFEST_SCHEMA_VERSION`](super::MANIFEST_SCHEMA_VERSION) are refused.
    pub fn from_json(json: &str) -> Result<Self> {
        let mut de = serde_json::Deserializer::from_str(json);
        let parsed = serde_path_to_error::deserialize(&mut de);
        let document = || serde_json::from_str::<Value>(json).ok();
        let manifest = finish(parsed, document)?;
        de.end().map_err(|e| syntax(&manifest.run_id, e))?;
        Ok(manifest)
    }

    /// Parses a manifest from YAML (one document), with the same rules as [`from_json`](Self::from_json).
    pub fn from_yaml(yaml: &str) -> Result<Self> {
        let de = serde_yaml_ng::Deserializer::from_str(yaml);
        let parsed = serde_path_to_error::deserialize(de);
        finish(parsed, || serde_yaml_ng::from_str::<Value>(yaml).ok())
    }

    /// Parses a manifest from TOML, with the same rules as [`from_json`](Self::from_json). TOML
    /// dates and date-times (`from = 2025-01-01`) are read as their RFC 3339 text.
    pub fn from_toml(toml: &str) -> Result<Self> {
        let mut document =
            toml::from_str::<Value>(toml).map_err(|e| syntax(&RunId::default(), e))?;
        untag_toml_datetimes(&mut document);
        let parsed = serde_path_to_error::deserialize(document.clone());
        finish(parsed, || Some(document))
    }

    /// Reads a manifest file, choosing the format by extension: `.json`, `.yaml` or `.yml`, `.toml`.
    /// Errors name the file and the field path.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let in_file = |e: Error| match e {
            Error::InvalidManifest {
                run_id,
                field,
                message,
            } => Error::InvalidManifest {
                run_id,
                field,
                message: format!("{}: {message}", path.display()),
            },
            other => other,
        };
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let parse: fn(&str) -> Result<Self> = match extension.as_deref() {
            Some("json") => Self::from_json,
            Some("yaml" | "yml") => Self::from_yaml,
            Some("toml") => Self::from_toml,
            _ => {
                return Err(in_file(whole_document(
                    &RunId::default(),
                    "unknown manifest format: use a .json, .yaml, .yml or .toml file",
                )))
            }
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            in_file(whole_document(
                &RunId::default(),
                &format!("cannot read the manifest file: {e}"),
            ))
        })?;
        parse(&text).map_err(in_file)
    }
}

/// Turns a typed parse into the crate's error: the field path and message of the first error, or a
/// schema-version error when the document declares a version this release cannot read (its other
/// fields are then expected to be unknown here, and that is not what the reader must fix).
fn finish<E: Display>(
    parsed: std::result::Result<RunManifest, serde_path_to_error::Error<E>>,
    document: impl FnOnce() -> Option<Value>,
) -> Result<RunManifest> {
    let err = match parsed {
        Ok(manifest) => return Ok(manifest),
        Err(err) => err,
    };
    let document = document();
    let field = |names: [&str; 2]| {
        let object = document.as_ref()?.as_object()?;
        names.iter().find_map(|n| object.get(*n))
    };
    let run_id = field(["run_id", "runId"])
        .and_then(Value::as_str)
        .map(RunId::from)
        .unwrap_or_default();
    if let Some(version) = field(["schema_version", "schemaVersion"]).and_then(Value::as_u64) {
        if let Err(message) = check_schema_version(version) {
            return Err(Error::InvalidManifest {
                run_id,
                field: "schema_version".into(),
                message,
            });
        }
    }
    Err(Error::InvalidManifest {
        run_id,
        field: err.path().to_string(),
        message: err.inner().to_string(),
    })
}

fn whole_document(run_id: &RunId, message: &str) -> Error {
    Error::InvalidManifest {
        run_id: run_id.clone(),
        field: ".".into(),
        message: message.into(),
    }
}

fn syntax(run_id: &RunId, e: impl Display) -> Error {
    whole_document(run_id, &e.to_string())
}

/// The `toml` crate hands dates to a generic reader as `{"$__toml_private_datetime": "..."}`.
fn untag_toml_datetimes(value: &mut Value) {
    const KEY: &str = "$__toml_private_datetime";
    match value {
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some(Value::String(text)) = map.get(KEY) {
                    *value = Value::String(text.clone());
                    return;
                }
            }
            map.values_mut().for_each(untag_toml_datetimes);
        }
        Value::Array(items) => items.iter_mut().for_each(untag_toml_datetimes),
        _ => {}
    }
}
