//! Strict manifests: unknown fields refused in every section, the seed's JSON accepted, schema
//! versions, YAML and TOML files, and approval verified by digest alone.

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::path::PathBuf;

use backfill_core::manifest::{
    Approval, DuplicateFilePolicy, InputRange, ManifestRef, Mutation, OffsetRange, ReferenceData,
    ReferenceSemantics, RunManifest, StoredManifest, MANIFEST_SCHEMA_VERSION,
};
use backfill_core::prelude::*;
use common::{at, day};
use serde_json::{json, Value};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read_fixture(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).expect("fixture exists")
}

/// A manifest that fills every section, including the optional ones, with a dates range.
fn full_manifest() -> RunManifest {
    let mut m = common::manifest("bf-strict-1");
    m.supersedes = Some(ManifestRef {
        run_id: "bf-strict-0".into(),
        version: 1,
        digest: common::manifest("bf-strict-0").digest(),
    });
    m.version = 2;
    m.approved_by = Some("owner".into());
    m.publish_range = Some(InputRange::Dates {
        from: day(2025, 2, 1),
        to_exclusive: day(2025, 4, 1),
    });
    m.source.cluster = Some("prod-a".into());
    m.source.duplicate_files = Some(DuplicateFilePolicy::Correction);
    m.transform.reference_data = vec![ReferenceData {
        name: "calendar".into(),
        version: "v1".into(),
        semantics: ReferenceSemantics::CorrectedTruth,
    }];
    m.transform.container_image = Some("registry/app:1.0.0".into());
    m.transform.reference_data_version = Some("calendar-v1".into());
    m.target.mutation = Some(Mutation::MergeByKey {
        key: vec!["id".into()],
        version_column: "v".into(),
        delete_column: Some("deleted".into()),
    });
    m.privacy = Some(PrivacySpec {
        purpose: "reporting".into(),
        retention_checked: true,
        erasure_checked: true,
        ..PrivacySpec::default()
    });
    m
}

/// The same with an offsets range, so offset ranges are reached too.
fn offsets_manifest() -> RunManifest {
    let mut m = full_manifest();
    m.source.range = Some(InputRange::Offsets {
        partitions: vec![OffsetRange {
            partition: 0,
            from: 10,
            to_exclusive: 20,
        }],
    });
    m.publish_range = None;
    m
}

/// Paths (as serde_path_to_error writes them) of every object in `v` but the free-form `labels`.
fn object_paths(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            out.push(path.to_owned());
            for (k, child) in map {
                if path.is_empty() && k == "labels" {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                object_paths(child, &p, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                object_paths(child, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn object_at<'a>(v: &'a mut Value, path: &str) -> &'a mut serde_json::Map<String, Value> {
    let mut cur = v;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, index) = match part.split_once('[') {
            Some((k, i)) => (k, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        cur = &mut cur[key];
        if let Some(i) = index {
            cur = &mut cur[i];
        }
    }
    cur.as_object_mut().expect("an object")
}

#[test]
fn a_typo_in_every_section_is_refused_and_named() {
    const TYPO: &str = "zz_typo";
    let mut covered = Vec::new();
    for base in [full_manifest(), offsets_manifest()] {
        let value = serde_json::to_value(&base).unwrap();
        let mut paths = Vec::new();
        object_paths(&value, "", &mut paths);
        for path in paths {
            let mut broken = value.clone();
            object_at(&mut broken, &path).insert(TYPO.into(), json!(true));
            let err = RunManifest::from_json(&broken.to_string()).unwrap_err();
            let Error::InvalidManifest {
                run_id,
                field,
                message,
            } = &err
            else {
                panic!("{path}: {err}")
            };
            assert_eq!(run_id.as_str(), "bf-strict-1");
            let at_field = if path.is_empty() {
                TYPO.to_owned()
            } else {
                format!("{path}.{TYPO}")
            };
            // Structs name the bad field in the path; tagged enums (ranges, mutations) stop at the
            // field holding them and name the bad field in the message.
            assert!(
                *field == at_field || (path.starts_with(field.as_str()) && message.contains(TYPO)),
                "{path}: {field}: {message}"
            );
            covered.push(path);
        }
    }
    for section in [
        "",
        "supersedes",
        "source",
        "source.range",
        "source.range.partitions[0]",
        "publish_range",
        "transform",
        "transform.reference_data[0]",
        "target",
        "target.mutation",
        "safety",
        "safety.side_effects",
        "safety.limits",
        "validation",
        "privacy",
    ] {
        assert!(
            covered.iter().any(|c| c == section),
            "{section} not reached"
        );
    }
}

#[test]
fn the_example_typo_names_its_path() {
    let json = r#"{"run_id": "bf-1", "kind": "backfill", "safety": {"manual_publsh": true}}"#;
    match RunManifest::from_json(json).unwrap_err() {
        Error::InvalidManifest { field, message, .. } => {
            assert_eq!(field, "safety.manual_publsh");
            assert!(message.contains("manual_publsh"), "{message}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn unit_mutations_refuse_parameters() {
    for mutation in [
        json!({"type": "shadow_swap", "key": ["id"]}),
        json!("BOGUS"),
    ] {
        let json = json!({"run_id": "bf-1", "kind": "backfill", "target": {"mutation": mutation}});
        match RunManifest::from_json(&json.to_string()).unwrap_err() {
            Error::InvalidManifest { field, .. } => assert_eq!(field, "target.mutation"),
            other => panic!("{other}"),
        }
    }
}

#[test]
fn duplicates_and_trailing_text_are_refused() {
    for text in [
        r#"{"run_id": "bf-1", "kind": "backfill", "reason": "a", "reason": "b"}"#,
        r#"{"run_id": "bf-1", "runId": "bf-2", "kind": "backfill"}"#,
        r#"{"run_id": "bf-1", "kind": "backfill"} {}"#,
    ] {
        assert!(
            matches!(
                RunManifest::from_json(text),
                Err(Error::InvalidManifest { .. })
            ),
            "{text}"
        );
    }
}

#[test]
fn the_seeds_run_manifest_is_read() {
    let m = RunManifest::from_json(&read_fixture("seed_backfill.json")).unwrap();
    assert_eq!(m.run_id.as_str(), "bf-2026-03-15-claims-latency-v2-001");
    assert_eq!(m.kind, RunKind::Backfill);
    assert_eq!(m.mode, ExecutionMode::Backfill);
    assert_eq!(m.schema_version, 1);
    assert_eq!(m.approved_by.as_deref(), Some("claims-reporting-owner"));
    assert_eq!(m.source.kind, "ICEBERG_TABLE");
    assert_eq!(m.source.snapshot.as_deref(), Some("5512093384410"));
    // The seed's `eventDateTo` is included; ranges here are half-open.
    assert_eq!(
        m.source.range,
        Some(InputRange::Dates {
            from: day(2025, 1, 1),
            to_exclusive: day(2025, 7, 1),
        })
    );
    assert_eq!(m.transform.git_commit.as_deref(), Some("3fa91c0"));
    assert_eq!(
        m.transform.container_image.as_deref(),
        Some("registry/example/claims-latency:2.4.1")
    );
    assert_eq!(
        m.transform.reference_data_version.as_deref(),
        Some("holiday-calendar-v2026-02-28")
    );
    assert_eq!(m.target.mutation, Some(Mutation::ReplacePartitions));
    assert_eq!(m.target.partitions.len(), 6);
    assert_eq!(m.safety.side_effects, Some(SideEffectPolicy::default()));
    assert_eq!(m.safety.max_rows_expected, Some(80_000_000));
    assert_eq!(m.safety.max_cost_usd, Some(450));
    assert!(m.safety.manual_publish);
    let v = m.validation.clone().unwrap();
    assert_eq!((v.count_tolerance, v.checksum_required), (Some(0), true));
    assert_eq!(v.quality_gate.as_deref(), Some("claims-latency-v2-gate"));
    assert!(!m.check().has_blocking(), "{:?}", m.check().blocking());

    // Only the named owner may approve it.
    match m.clone().approve("someone-else", at()).unwrap_err() {
        Error::InvalidManifest { field, .. } => assert_eq!(field, "approved_by"),
        other => panic!("{other}"),
    }
    let approved = m.clone().approve("claims-reporting-owner", at()).unwrap();
    approved.to_stored().verify().unwrap();

    // Written back in the canonical snake_case form, which reads to the same manifest.
    let canonical = m.to_json_pretty();
    assert!(canonical.contains("\"run_id\"") && !canonical.contains("runId"));
    assert_eq!(RunManifest::from_json(&canonical).unwrap(), m);
}

#[test]
fn the_seeds_kafka_replay_source_is_read() {
    let m = RunManifest::from_json(&read_fixture("seed_kafka_replay.json")).unwrap();
    assert_eq!(m.kind, RunKind::Replay);
    assert_eq!(m.mode, ExecutionMode::Backfill);
    assert_eq!(m.source.kind, "KAFKA");
    assert_eq!(m.source.cluster.as_deref(), Some("prod-b"));
    assert_eq!(m.source.name, "payment-events-v1");
    let Some(InputRange::Offsets { partitions }) = &m.source.range else {
        panic!("{:?}", m.source.range)
    };
    assert_eq!(partitions.len(), 3);
    assert_eq!(
        partitions[1],
        OffsetRange {
            partition: 1,
            from: 1_187_250,
            to_exclusive: 1_290_433,
        }
    );
    assert_eq!(m.target.mutation, Some(Mutation::CorrectionEvents));
    assert!(!m.check().has_blocking(), "{:?}", m.check().blocking());
    assert_eq!(RunManifest::from_json(&m.to_json_pretty()).unwrap(), m);
}

#[test]
fn yaml_toml_and_files_read_the_same_manifest() {
    let yaml = RunManifest::from_yaml(&read_fixture("canonical.yaml")).unwrap();
    let mut toml = RunManifest::from_toml(&read_fixture("canonical.toml")).unwrap();
    assert_eq!(toml.run_id.as_str(), "bf-toml-001");
    toml.run_id = yaml.run_id.clone();
    assert_eq!(toml, yaml);
    assert_eq!(
        yaml.source.duplicate_files,
        Some(DuplicateFilePolicy::Correction)
    );
    assert!(
        !yaml.check().has_blocking(),
        "{:?}",
        yaml.check().blocking()
    );

    for name in ["canonical.yaml", "canonical.toml", "seed_backfill.json"] {
        RunManifest::load(fixture(name)).unwrap();
    }
    // A .yml file and upper-case extensions choose the same readers.
    let dir = std::env::temp_dir().join(format!("backfill-manifest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let yml = dir.join("m.YML");
    std::fs::write(&yml, read_fixture("canonical.yaml")).unwrap();
    assert_eq!(RunManifest::load(&yml).unwrap(), yaml);

    // Errors name the file and the field path.
    let typo = dir.join("typo.yaml");
    std::fs::write(
        &typo,
        read_fixture("canonical.yaml").replace("manual_publish", "manual_publsh"),
    )
    .unwrap();
    match RunManifest::load(&typo).unwrap_err() {
        Error::InvalidManifest {
            run_id,
            field,
            message,
        } => {
            assert_eq!(run_id.as_str(), "bf-yaml-001");
            assert_eq!(field, "safety.manual_publsh");
            assert!(message.contains("typo.yaml"), "{message}");
        }
        other => panic!("{other}"),
    }
    let toml_typo = dir.join("typo.toml");
    std::fs::write(
        &toml_typo,
        read_fixture("canonical.toml").replace("max_chunks_in_parallel", "max_chunk_in_parallel"),
    )
    .unwrap();
    match RunManifest::load(&toml_typo).unwrap_err() {
        Error::InvalidManifest { field, message, .. } => {
            assert_eq!(field, "safety.limits.max_chunk_in_parallel");
            assert!(message.contains("typo.toml"), "{message}");
        }
        other => panic!("{other}"),
    }
    for (path, says) in [
        (dir.join("m.txt"), "unknown manifest format"),
        (dir.join("missing.json"), "cannot read"),
    ] {
        match RunManifest::load(&path).unwrap_err() {
            Error::InvalidManifest { message, .. } => {
                assert!(message.contains(says), "{message}");
                assert!(message.contains(&path.display().to_string()), "{message}");
            }
            other => panic!("{other}"),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn schema_version_defaults_to_one_and_newer_versions_are_refused() {
    let plain = r#"{"run_id": "bf-1", "kind": "backfill"}"#;
    assert_eq!(RunManifest::from_json(plain).unwrap().schema_version, 1);
    assert_eq!(MANIFEST_SCHEMA_VERSION, 1);
    assert!(common::manifest("bf-1")
        .to_json_pretty()
        .contains("\"schema_version\": 1"));
    let future = r#"{"run_id": "bf-1", "schemaVersion": 2, "kind": "backfill", "new_section": {}}"#;
    let future_yaml = "new_section: {}\nrun_id: bf-1\nschema_version: 7\nkind: backfill\n";
    let zero = r#"{"run_id": "bf-1", "kind": "backfill", "schema_version": 0}"#;
    for result in [
        RunManifest::from_json(future),
        RunManifest::from_yaml(future_yaml),
        RunManifest::from_json(zero),
    ] {
        match result.unwrap_err() {
            Error::InvalidManifest {
                run_id,
                field,
                message,
            } => {
                assert_eq!(run_id.as_str(), "bf-1");
                assert_eq!(field, "schema_version");
                assert!(message.contains("schema version"), "{message}");
            }
            other => panic!("{other}"),
        }
    }
}

#[test]
fn digests_change_only_by_the_schema_version() {
    // The canonical form of a manifest that uses none of the new fields is the old form plus
    // `schema_version`: the new optional fields are left out when absent.
    let value = serde_json::to_value(common::manifest("bf-1")).unwrap();
    let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    let mut top = keys(&value);
    top.sort();
    assert_eq!(
        top,
        [
            "kind",
            "labels",
            "mode",
            "privacy",
            "publish_range",
            "reason",
            "requested_by",
            "run_id",
            "safety",
            "schema_version",
            "source",
            "supersedes",
            "target",
            "transform",
            "validation",
            "version"
        ]
    );
    assert_eq!(keys(&value["source"]).len(), 4);
    assert_eq!(keys(&value["transform"]).len(), 7);
}

#[test]
fn approval_is_verified_by_digest_not_by_todays_findings() {
    // Approved under older rules: today this manifest has a blocking finding.
    let mut m = common::manifest("bf-old-rules");
    m.reason = String::new();
    assert!(m.check().has_blocking());
    let approval = Approval {
        digest: m.digest(),
        approved_by: "owner".into(),
        approved_at: at(),
    };
    let stored = StoredManifest::new(&m, Some(approval.clone()));
    let verified = stored.verify().unwrap();
    assert_eq!(verified.manifest(), &m);
    assert_eq!(verified.approval(), &approval);

    // Still refused: edits, another version, self-approval, an approver the manifest does not name.
    let mut edited = stored.clone();
    edited.json = edited.json.replace("bf-old-rules", "bf-other");
    assert!(matches!(edited.verify(), Err(Error::Tampered { .. })));
    let mut bumped = stored.clone();
    bumped.version = 2;
    assert!(matches!(bumped.verify(), Err(Error::Tampered { .. })));
    let own = Approval {
        approved_by: m.requested_by.clone(),
        ..approval.clone()
    };
    assert!(matches!(
        StoredManifest::new(&m, Some(own)).verify(),
        Err(Error::SelfApproval { .. })
    ));
    m.approved_by = Some("another-owner".into());
    let named = Approval {
        digest: m.digest(),
        ..approval
    };
    assert!(matches!(
        StoredManifest::new(&m, Some(named)).verify(),
        Err(Error::InvalidManifest { field, .. }) if field == "approved_by"
    ));
    assert!(matches!(
        StoredManifest::new(&m, None).verify(),
        Err(Error::NotApproved { .. })
    ));
}

#[test]
fn the_duplicate_file_policy_is_a_typed_field() {
    let with = |policy: Value| {
        json!({"run_id": "bf-1", "kind": "backfill", "source": {"duplicate_files": policy}})
            .to_string()
    };
    for (text, policy) in [
        ("ignore", DuplicateFilePolicy::Ignore),
        ("reprocess", DuplicateFilePolicy::Reprocess),
        ("correction", DuplicateFilePolicy::Correction),
        ("REJECT", DuplicateFilePolicy::Reject),
    ] {
        let m = RunManifest::from_json(&with(json!(text))).unwrap();
        assert_eq!(m.duplicate_file_policy().unwrap(), policy);
    }
    match RunManifest::from_json(&with(json!("maybe"))).unwrap_err() {
        Error::InvalidManifest { field, message, .. } => {
            assert_eq!(field, "source.duplicate_files");
            assert!(message.contains("maybe"), "{message}");
        }
        other => panic!("{other}"),
    }
    let none = RunManifest::from_json(r#"{"run_id": "bf-1", "kind": "backfill"}"#).unwrap();
    assert!(matches!(
        none.duplicate_file_policy(),
        Err(Error::InvalidManifest { field, .. }) if field == "source.duplicate_files"
    ));
}

#[test]
fn merge_by_key_reads_a_delete_column_and_leaves_it_out_when_absent() {
    let json = json!({"run_id": "bf-1", "kind": "backfill", "target": {"mutation": {
        "type": "merge_by_key", "key": ["id"], "versionColumn": "v", "deleteColumn": "deleted"
    }}});
    let m = RunManifest::from_json(&json.to_string()).unwrap();
    assert_eq!(
        m.target.mutation,
        Some(Mutation::MergeByKey {
            key: vec!["id".into()],
            version_column: "v".into(),
            delete_column: Some("deleted".into()),
        })
    );
    // Without one, the canonical form (and so the digest) is what it was before the field existed.
    let mut plain = m.clone();
    plain.target.mutation = Some(Mutation::MergeByKey {
        key: vec!["id".into()],
        version_column: "v".into(),
        delete_column: None,
    });
    assert!(!plain.to_json_pretty().contains("delete_column"));
    assert_ne!(plain.digest(), m.digest());
    // A delete marker that is the version or a key column is refused by the checklist.
    for bad in ["v", "id", " "] {
        let mut m = m.clone();
        m.target.mutation = Some(Mutation::MergeByKey {
            key: vec!["id".into()],
            version_column: "v".into(),
            delete_column: Some(bad.into()),
        });
        assert!(
            m.check().0.iter().any(|f| f.code == "merge_delete_column"),
            "{bad:?}"
        );
    }
}
