//! The committed JSON Schema is the one generated from the types.
//!
//! Refresh it after changing a manifest type with
//! `BACKFILL_BLESS=1 cargo test -p backfill-core --test integration manifest_schema::`.

use std::path::PathBuf;

use backfill_core::manifest::RunManifest;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/manifest.schema.json")
}

fn generated() -> String {
    let mut text = serde_json::to_string_pretty(&RunManifest::json_schema()).unwrap();
    text.push('\n');
    text
}

#[test]
fn committed_schema_matches_the_types() {
    let path = committed_path();
    let fresh = generated();
    if std::env::var_os("BACKFILL_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is out of date with the manifest types; refresh it with\n  \
         BACKFILL_BLESS=1 cargo test -p backfill-core --test integration manifest_schema::\nand commit it",
        path.display()
    );
}

#[test]
fn schema_describes_the_canonical_form_strictly() {
    let schema = RunManifest::json_schema();
    assert_eq!(schema["title"], "RunManifest");
    assert_eq!(schema["additionalProperties"], false);
    let properties = schema["properties"].as_object().unwrap();
    let written = serde_json::to_value(RunManifest::new(
        "bf-1",
        backfill_core::manifest::RunKind::Backfill,
        backfill_core::context::ExecutionMode::Backfill,
    ))
    .unwrap();
    for key in written.as_object().unwrap().keys() {
        assert!(
            properties.contains_key(key),
            "{key} missing from the schema"
        );
    }
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(required, ["run_id", "kind"]);
    // Every section refuses unknown fields in the schema as in the reader.
    for (name, def) in schema["$defs"].as_object().unwrap() {
        if def["type"] == "object" {
            assert_eq!(def["additionalProperties"], false, "{name}");
        }
    }
}
