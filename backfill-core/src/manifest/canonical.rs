//! Canonical JSON encoding of a manifest and its SHA-256 digest.
//!
//! # Canonical encoding
//! The manifest is serialized with serde to a JSON value and then written out with:
//! - object keys sorted by their UTF-8 bytes, at every depth;
//! - no whitespace between tokens;
//! - strings escaped as `serde_json` escapes them (`"`, `\\` and control characters only);
//! - integers in plain decimal; the manifest has no floating-point fields, and a float met anyway is
//!   written in `serde_json`'s shortest round-trip form;
//! - `null` for absent optional fields (they are not omitted), except the fields added after the
//!   first release (`approved_by`, `source.cluster`, `source.duplicate_files`,
//!   `transform.container_image`, `transform.reference_data_version`), which are left out when
//!   absent so that manifests which do not use them keep their digest.
//!
//! `schema_version` is always written (version 1 since it was introduced), so the digest of a
//! manifest made before it existed is not the digest the same manifest has now.
//!
//! The digest is `sha256:` followed by the lowercase hex SHA-256 of those bytes. It does not depend on
//! the order keys had in the input or on serde_json's `preserve_order` feature.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::RunManifest;

/// Content address of a manifest: `sha256:<hex>`.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct ManifestDigest(String);

impl ManifestDigest {
    /// Digest of a manifest's canonical encoding.
    pub fn of(manifest: &RunManifest) -> Self {
        Self::of_bytes(&canonical_json(manifest))
    }

    /// Digest of already canonical bytes.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// The digest string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ManifestDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The canonical JSON bytes of a manifest (see the module docs for the rules).
pub fn canonical_json(manifest: &RunManifest) -> Vec<u8> {
    // Serializing plain data with string keys cannot fail.
    let value = serde_json::to_value(manifest).unwrap_or(Value::Null);
    let mut out = Vec::with_capacity(1024);
    write_canonical(&value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                write_canonical(val, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    // Writing a scalar JSON value into a Vec cannot fail.
    let _ = serde_json::to_writer(out, value);
}
