//! Manifest checks, approval binding, immutability and the canonical digest.

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use backfill_core::manifest::{
    canonical_json, Finding, InputRange, ManifestDigest, Mutation, RunManifest, Severity,
    StoredManifest,
};
use backfill_core::prelude::*;
use common::*;
use proptest::prelude::*;

fn blocking_codes(m: &RunManifest) -> Vec<String> {
    m.check()
        .blocking()
        .into_iter()
        .map(|f: Finding| f.code)
        .collect()
}

#[test]
fn a_complete_manifest_has_no_blocking_findings_and_answers_the_checklist() {
    let m = manifest("bf-100");
    let f = m.check();
    assert!(!f.has_blocking(), "{:?}", f.blocking());
    // Unanswered checklist questions are reported as warnings, not silently ignored.
    assert!(f.contains("privacy_unanswered"));
    assert!(f.contains("max_cost_unbounded"));
    assert!(f.contains("publication_strategy"));
    assert!(f
        .0
        .iter()
        .all(|x| !x.question.is_empty() && !x.field.is_empty()));
}

#[test]
fn each_required_section_is_blocking_when_missing() {
    type Breaks = Box<dyn Fn(&mut RunManifest)>;
    let cases: Vec<(&str, Breaks)> = vec![
        ("input_scope_missing", Box::new(|m| m.source.range = None)),
        (
            "transform_version_missing",
            Box::new(|m| m.transform.version.clear()),
        ),
        (
            "target_mutation_missing",
            Box::new(|m| m.target.mutation = None),
        ),
        (
            "side_effect_policy_missing",
            Box::new(|m| m.safety.side_effects = None),
        ),
        ("validation_plan_missing", Box::new(|m| m.validation = None)),
        (
            "validation_plan_empty",
            Box::new(|m| m.validation = Some(ValidationPlan::default())),
        ),
        ("reason_missing", Box::new(|m| m.reason = " ".into())),
        (
            "partitions_missing",
            Box::new(|m| m.target.partitions.clear()),
        ),
        (
            "merge_unguarded",
            Box::new(|m| {
                m.target.mutation = Some(Mutation::MergeByKey {
                    key: vec![],
                    version_column: "v".into(),
                    delete_column: None,
                })
            }),
        ),
        (
            "input_scope_empty",
            Box::new(|m| {
                m.source.range = Some(InputRange::Dates {
                    from: day(2025, 4, 1),
                    to_exclusive: day(2025, 1, 1),
                })
            }),
        ),
        (
            "publish_range_outside_input",
            Box::new(|m| {
                m.publish_range = Some(InputRange::Dates {
                    from: day(2025, 3, 1),
                    to_exclusive: day(2025, 5, 1),
                })
            }),
        ),
        (
            "publish_range_incomparable",
            Box::new(|m| {
                m.publish_range = Some(InputRange::Keys {
                    from: "a".into(),
                    to_exclusive: "b".into(),
                })
            }),
        ),
    ];
    for (code, breaks) in cases {
        let mut m = manifest("bf-101");
        breaks(&mut m);
        assert_eq!(blocking_codes(&m), vec![code.to_owned()], "{code}");
        let err = m.approve("owner", at()).unwrap_err();
        match err {
            Error::BlockingFindings { run_id, findings } => {
                assert_eq!(run_id.as_str(), "bf-101");
                assert_eq!(findings[0].code, code);
                assert_eq!(findings[0].severity, Severity::Blocking);
            }
            other => panic!("{code}: {other}"),
        }
    }
}

#[test]
fn warm_up_input_is_allowed_and_reported() {
    let mut m = manifest("bf-102");
    m.source.range = Some(InputRange::Dates {
        from: day(2024, 12, 1),
        to_exclusive: day(2025, 4, 1),
    });
    m.publish_range = Some(InputRange::Dates {
        from: day(2025, 1, 1),
        to_exclusive: day(2025, 4, 1),
    });
    let f = m.check();
    assert!(!f.has_blocking());
    assert!(f.contains("warm_up_input"));
}

#[test]
fn approval_binds_to_the_digest_and_verification_catches_edits() {
    let approved = approve(manifest("bf-103"));
    assert_eq!(approved.approval().digest, approved.manifest().digest());
    let stored = approved.to_stored();
    assert_eq!(stored.verify().unwrap(), approved);

    // Any semantic edit of the stored JSON is detected.
    let mut edited = stored.clone();
    edited.json = edited.json.replace("fix amounts", "fix amounts and more");
    assert!(matches!(
        edited.verify().unwrap_err(),
        Error::Tampered { .. }
    ));

    // Swapping in a different, self-consistent approval for another manifest is detected too.
    let mut forged = stored.clone();
    forged.approval = Some(approve(manifest("bf-other")).approval().clone());
    assert!(matches!(
        forged.verify().unwrap_err(),
        Error::Tampered { .. }
    ));

    // No approval at all.
    let draft = StoredManifest::new(approved.manifest(), None);
    assert!(matches!(
        draft.verify().unwrap_err(),
        Error::NotApproved { .. }
    ));

    // Malformed JSON names the field.
    let mut broken = stored;
    broken.json = broken
        .json
        .replace("\"kind\":\"restatement\"", "\"kind\":\"rerun\"");
    match broken.verify().unwrap_err() {
        Error::InvalidManifest { run_id, field, .. } => {
            assert_eq!(run_id.as_str(), "bf-103");
            assert_eq!(field, "kind");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let json = manifest("bf-104")
        .to_json_pretty()
        .replacen("\"reason\"", "\"reasn\"", 1);
    match RunManifest::from_json(&json).unwrap_err() {
        Error::InvalidManifest {
            run_id, message, ..
        } => {
            assert_eq!(run_id.as_str(), "bf-104");
            assert!(message.contains("reasn"), "{message}");
        }
        other => panic!("{other}"),
    }
}

/// Writes JSON with every object's keys in reverse order and with whitespace.
fn reversed(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<_> = map.keys().collect();
            keys.sort();
            keys.reverse();
            let body: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{} :  {}",
                        serde_json::to_string(k).unwrap(),
                        reversed(&map[k])
                    )
                })
                .collect();
            format!("{{\n {} }}", body.join(" ,\n"))
        }
        serde_json::Value::Array(items) => format!(
            "[ {} ]",
            items.iter().map(reversed).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn arb_manifest() -> impl Strategy<Value = RunManifest> {
    (
        "[a-z0-9-]{1,20}",
        "\\PC{0,40}",
        0u32..4,
        proptest::option::of(0u64..u64::MAX),
        proptest::collection::vec("[0-9]{4}-[0-9]{2}", 0..6),
        proptest::collection::btree_map("[a-z]{1,5}", "\\PC{0,8}", 0..4),
        any::<bool>(),
    )
        .prop_map(
            |(id, reason, version, max_rows, partitions, labels, manual)| {
                let mut m = manifest(&id);
                m.reason = reason;
                m.version = version + 1;
                m.safety.max_rows_expected = max_rows;
                m.safety.manual_publish = manual;
                m.target.partitions = partitions.into_iter().map(PartitionKey::from).collect();
                m.labels = labels;
                m
            },
        )
}

proptest! {
    #[test]
    fn json_round_trip_keeps_the_digest(m in arb_manifest()) {
        let back = RunManifest::from_json(&m.to_json_pretty()).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(back.digest(), m.digest());
        let compact = serde_json::to_string(&m).unwrap();
        prop_assert_eq!(RunManifest::from_json(&compact).unwrap().digest(), m.digest());
    }

    #[test]
    fn digest_ignores_key_order_and_whitespace(m in arb_manifest()) {
        let value = serde_json::to_value(&m).unwrap();
        let shuffled = reversed(&value);
        let back = RunManifest::from_json(&shuffled).unwrap();
        prop_assert_eq!(back.digest(), m.digest());
        prop_assert_eq!(canonical_json(&back), canonical_json(&m));
    }

    #[test]
    fn any_change_changes_the_digest(m in arb_manifest(), extra in "[a-z]{1,8}") {
        let mut changed = m.clone();
        changed.reason.push_str(&extra);
        prop_assert_ne!(changed.digest(), m.digest());
    }
}

#[test]
fn canonical_encoding_is_documented_form() {
    let m = manifest("bf-105");
    let bytes = canonical_json(&m);
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        text.starts_with("{\"kind\":\"restatement\",\"labels\":{},\"mode\":\"backfill\""),
        "{text}"
    );
    // Sorted keys, no whitespace: the same as serde_json's compact form of a BTreeMap-backed value.
    assert_eq!(
        text,
        serde_json::to_string(&serde_json::to_value(&m).unwrap()).unwrap()
    );
    assert_eq!(ManifestDigest::of_bytes(&bytes), m.digest());
    assert!(m.digest().as_str().starts_with("sha256:"));
    assert_eq!(m.digest().as_str().len(), 7 + 64);
}
