//! Property ("fuzz") tests of the manifest readers: arbitrary JSON documents, arbitrary text in
//! every format, and randomly mutated approved manifests go through parse, check, approve and
//! `StoredManifest::verify` without a panic, and every refusal is a typed error of the right kind.
//!
//! Each property runs at least 100,000 cases (more when `PROPTEST_CASES` says so).

#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use backfill_core::manifest::{ApprovedManifest, RunManifest, StoredManifest};
use backfill_core::prelude::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm};
use serde_json::{Map, Number, Value};

/// At least 100,000 cases; more when `PROPTEST_CASES` asks for more.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    config.cases = config.cases.max(100_000);
    config.max_shrink_iters = 2_000;
    // ChaCha is a third of the run time in a debug build; the cases need no cryptographic RNG.
    config.rng_algorithm = RngAlgorithm::XorShift;
    config
}

/// Field names of the manifest at every depth, canonical and aliased, so arbitrary documents reach
/// the sections' readers instead of stopping at the first unknown key.
const KEYS: &[&str] = &[
    "schema_version",
    "schemaVersion",
    "run_id",
    "runId",
    "version",
    "supersedes",
    "kind",
    "mode",
    "processingMode",
    "reason",
    "requested_by",
    "requestedBy",
    "approved_by",
    "approvedBy",
    "source",
    "publish_range",
    "transform",
    "target",
    "safety",
    "validation",
    "privacy",
    "labels",
    "name",
    "snapshot",
    "snapshotId",
    "range",
    "cluster",
    "topic",
    "partitions",
    "partition",
    "duplicate_files",
    "type",
    "from",
    "to_exclusive",
    "fromOffset",
    "toOffsetExclusive",
    "eventDateFrom",
    "eventDateTo",
    "git_commit",
    "reference_data",
    "semantics",
    "mutation",
    "publishMode",
    "key",
    "version_column",
    "consumers",
    "live_writes",
    "liveWrites",
    "side_effects",
    "sideEffectsAllowed",
    "allowed",
    "allowed_sinks",
    "limits",
    "max_chunks_in_parallel",
    "max_rows_expected",
    "manual_publish",
    "count_tolerance",
    "checksum_required",
    "checks",
    "purpose",
    "digest",
];

/// String values that mean something to some field.
const WORDS: &[&str] = &[
    "backfill",
    "BACKFILL",
    "replay",
    "restatement",
    "dry_run",
    "DRY_RUN",
    "dates",
    "DATES",
    "timestamps",
    "offsets",
    "keys",
    "replace_partitions",
    "REPLACE_PARTITIONS",
    "merge_by_key",
    "shadow_swap",
    "correction_events",
    "corrected_truth",
    "as_recorded",
    "ignore",
    "reject",
    "correction",
    "2025-01-01",
    "2025-12-31",
    "+262142-12-31",
    "-262143-01-01",
    "2025-02-30",
    "2025-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999999+14:00",
    "1.0.0",
    "sha256:00",
    "",
];

/// Any text, built from chars (a regex strategy costs more per case than the parsers under test).
fn any_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

fn identifier() -> impl Strategy<Value = String> {
    let chars: Vec<char> = ('a'..='z').chain('A'..='Z').chain(['_']).collect();
    prop::collection::vec(prop::sample::select(chars), 1..10).prop_map(String::from_iter)
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => identifier(),
        1 => any_text(8),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(WORDS).prop_map(str::to_owned),
        2 => any_text(16),
    ]
}

/// Text made of the formats' punctuation and a few letters, to reach deeper into their parsers.
fn syntax_soup() -> impl Strategy<Value = String> {
    let chars: Vec<char> = "[]{}\":,=#-. \n\tabkrun_id0129".chars().collect();
    prop::collection::vec(prop::sample::select(chars), 0..60).prop_map(String::from_iter)
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![
            0i64,
            1,
            2,
            -1,
            i64::from(u32::MAX),
            i64::MIN,
            i64::MAX
        ])
        .prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..7)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A document shaped like a manifest at the top: an object with a valid identity most of the time.
fn arb_document() -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map(key(), arb_json(), 0..8),
        any::<bool>(),
    )
        .prop_map(|(fields, identity)| {
            let mut map: Map<String, Value> = fields.into_iter().collect();
            if identity {
                map.insert("run_id".into(), "bf-fuzz".into());
                map.insert("kind".into(), "backfill".into());
            }
            Value::Object(map)
        })
}

/// Valid, approved starting points: the common manifest and the seed fixtures.
fn bases() -> Vec<(Value, StoredManifest)> {
    let fixture = |name: &str| {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        RunManifest::load(path).expect("fixture reads")
    };
    let mut named = fixture("seed_backfill.json");
    named.approved_by = None;
    let manifests = [
        common::manifest("bf-fuzz-base"),
        named,
        fixture("seed_kafka_replay.json"),
        fixture("canonical.yaml"),
    ];
    let mut out = Vec::new();
    for m in manifests {
        let stored = approve(m.clone())
            .expect("bases are approvable")
            .to_stored();
        out.push((serde_json::to_value(&m).unwrap(), stored));
    }
    // The seed's own camelCase text as a starting point too.
    let seed: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/tests/fixtures/seed_kafka_replay.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let stored = out[2].1.clone();
    out.push((seed, stored));
    out
}

fn approve(m: RunManifest) -> backfill_core::Result<ApprovedManifest> {
    m.approve("fuzz-owner", common::at())
}

/// One random change to a document.
#[derive(Debug, Clone)]
enum Edit {
    DeleteKey(usize),
    RenameKey(usize, String),
    Replace(Value),
    InsertKey(String, Value),
    ExtremeNumber(Value),
    ToggleCase,
}

fn arb_mutation() -> impl Strategy<Value = (usize, Edit)> {
    let op = prop_oneof![
        2 => any::<usize>().prop_map(Edit::DeleteKey),
        2 => (any::<usize>(), key()).prop_map(|(i, k)| Edit::RenameKey(i, k)),
        2 => leaf().prop_map(Edit::Replace),
        1 => arb_json().prop_map(Edit::Replace),
        2 => (key(), leaf()).prop_map(|(k, v)| Edit::InsertKey(k, v)),
        2 => number().prop_map(Edit::ExtremeNumber),
        1 => Just(Edit::ToggleCase),
    ];
    (any::<usize>(), op)
}

/// The node a random walk from the root reaches: `seed` picks, level by level, whether to stop
/// and which child to enter (cheaper than listing every node of the document).
fn walk(mut node: &mut Value, mut seed: usize) -> &mut Value {
    loop {
        let children = match &node {
            Value::Object(map) => map.len(),
            Value::Array(items) => items.len(),
            _ => 0,
        };
        if children == 0 || seed % 4 == 0 {
            return node;
        }
        seed /= 4;
        let pick = seed % children;
        seed /= children.max(2);
        node = match node {
            Value::Object(map) => map.values_mut().nth(pick).expect("in range"),
            Value::Array(items) => &mut items[pick],
            _ => unreachable!("has children"),
        };
    }
}

fn apply(doc: &mut Value, (seed, op): &(usize, Edit)) {
    let target = walk(doc, *seed);
    match op {
        Edit::DeleteKey(i) => {
            if let Value::Object(map) = target {
                if let Some(k) = map.keys().nth(i % map.len().max(1)).cloned() {
                    map.remove(&k);
                }
            }
        }
        Edit::RenameKey(i, new) => {
            if let Value::Object(map) = target {
                if let Some(k) = map.keys().nth(i % map.len().max(1)).cloned() {
                    let v = map.remove(&k).unwrap_or_default();
                    map.insert(new.clone(), v);
                }
            }
        }
        Edit::Replace(v) | Edit::ExtremeNumber(v) => *target = v.clone(),
        Edit::InsertKey(k, v) => match target {
            Value::Object(map) => {
                map.insert(k.clone(), v.clone());
            }
            Value::Array(items) => items.push(v.clone()),
            _ => {}
        },
        Edit::ToggleCase => {
            if let Value::String(s) = target {
                *s = if s.chars().any(|c| c.is_ascii_lowercase()) {
                    s.to_ascii_uppercase()
                } else {
                    s.to_ascii_lowercase()
                };
            }
        }
    }
}

/// Parses `text` with `parse`, then checks, approves and verifies whatever was accepted.
fn exercise(
    parsed: backfill_core::Result<RunManifest>,
    text: &str,
    approved: Option<&StoredManifest>,
) -> Result<(), TestCaseError> {
    let m = match parsed {
        Ok(m) => m,
        Err(Error::InvalidManifest { field, message, .. }) => {
            // The path may be empty: a document whose unknown key is "" names it as such.
            let _ = field;
            prop_assert!(!message.is_empty());
            return Ok(());
        }
        Err(other) => return Err(TestCaseError::fail(format!("untyped refusal: {other:?}"))),
    };
    let _ = m.check();
    match approve(m.clone()) {
        // Stored as canonical JSON, read back and re-hashed: the round trip keeps the manifest.
        Ok(a) => {
            let verified = a.to_stored().verify();
            prop_assert_eq!(
                verified.as_ref().ok().map(|v| v.manifest()),
                Some(&m),
                "{:?}",
                verified
            );
        }
        Err(
            Error::BlockingFindings { .. }
            | Error::SelfApproval { .. }
            | Error::InvalidManifest { .. },
        ) => {
            let again = RunManifest::from_json(&m.to_json_pretty());
            prop_assert_eq!(again.as_ref().ok(), Some(&m), "{:?}", again);
        }
        Err(other) => return Err(TestCaseError::fail(format!("approve: {other:?}"))),
    }
    if let Some(stored) = approved {
        // The mutated text under the original approval verifies only if it is the same manifest.
        let forged = StoredManifest {
            json: text.to_owned(),
            ..stored.clone()
        };
        match forged.verify() {
            Ok(v) => prop_assert_eq!(v.manifest().digest(), v.approval().digest.clone()),
            Err(
                Error::Tampered { .. }
                | Error::InvalidManifest { .. }
                | Error::SelfApproval { .. }
                | Error::NotApproved { .. },
            ) => {}
            Err(other) => return Err(TestCaseError::fail(format!("verify: {other:?}"))),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_documents_are_parsed_or_refused(
        doc in prop_oneof![3 => arb_document(), 1 => arb_json()],
        also_yaml in prop::bool::weighted(0.2),
    ) {
        let json = doc.to_string();
        exercise(RunManifest::from_json(&json), &json, None)?;
        if also_yaml {
            if let Ok(yaml) = serde_yaml_ng::to_string(&doc) {
                exercise(RunManifest::from_yaml(&yaml), &yaml, None)?;
            }
        }
    }

    #[test]
    fn arbitrary_text_is_parsed_or_refused(text in prop_oneof![any_text(60), syntax_soup()]) {
        exercise(RunManifest::from_json(&text), &text, None)?;
        exercise(RunManifest::from_yaml(&text), &text, None)?;
        exercise(RunManifest::from_toml(&text), &text, None)?;
    }

    #[test]
    fn mutated_manifests_are_parsed_or_refused(
        base in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(arb_mutation(), 1..4),
    ) {
        let bases = BASES.with(|b| b.clone());
        let (doc, stored) = &bases[base.index(bases.len())];
        let mut doc = doc.clone();
        for m in &mutations {
            apply(&mut doc, m);
        }
        let json = doc.to_string();
        exercise(RunManifest::from_json(&json), &json, Some(stored))?;
    }
}

thread_local! {
    static BASES: std::rc::Rc<Vec<(Value, StoredManifest)>> = std::rc::Rc::new(bases());
}
