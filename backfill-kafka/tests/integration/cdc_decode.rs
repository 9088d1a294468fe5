//! Decoding Debezium envelopes: every op, PostgreSQL and MySQL source blocks, the schema/payload
//! wrapper, tombstones, and typed errors for malformed messages.

use backfill_kafka::cdc::{
    ChangeDecoder, ChangeKey, ChangeOp, DecodeError, KafkaCoordinates, PositionBasis,
    SourcePosition,
};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
struct Customer {
    id: i64,
    email: String,
    tier: Option<String>,
}

fn at(offset: i64) -> KafkaCoordinates {
    KafkaCoordinates::new("shop.public.customers", 0, offset)
}

/// A PostgreSQL connector event as the JSON converter writes it with schemas enabled (schema
/// shortened to what matters here).
fn pg_event(op: &str, before: serde_json::Value, after: serde_json::Value, lsn: u64) -> Vec<u8> {
    let snapshot = if op == "r" { "true" } else { "false" };
    serde_json::to_vec(&json!({
        "schema": {
            "type": "struct",
            "name": "shop.public.customers.Envelope",
            "optional": false,
            "fields": [
                {"field": "before", "type": "struct", "optional": true, "name": "shop.public.customers.Value"},
                {"field": "after", "type": "struct", "optional": true, "name": "shop.public.customers.Value"},
                {"field": "source", "type": "struct", "optional": false, "name": "io.debezium.connector.postgresql.Source"},
                {"field": "op", "type": "string", "optional": false},
                {"field": "ts_ms", "type": "int64", "optional": true}
            ]
        },
        "payload": {
            "before": before,
            "after": after,
            "source": {
                "version": "2.7.3.Final",
                "connector": "postgresql",
                "name": "shop",
                "ts_ms": 1_733_300_000_000_i64,
                "snapshot": snapshot,
                "db": "shop",
                "sequence": "[\"24023128\",\"24023184\"]",
                "schema": "public",
                "table": "customers",
                "txId": 741,
                "lsn": lsn,
                "xmin": null
            },
            "op": op,
            "ts_ms": 1_733_300_000_123_i64,
            "transaction": null
        }
    }))
    .unwrap()
}

/// A MySQL connector event without schemas.
fn mysql_event(
    op: &str,
    before: serde_json::Value,
    after: serde_json::Value,
    file: &str,
    pos: u64,
    row: u64,
) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "before": before,
        "after": after,
        "source": {
            "version": "2.7.3.Final",
            "connector": "mysql",
            "name": "shop",
            "ts_ms": 1_733_300_000_000_i64,
            "snapshot": "false",
            "db": "shop",
            "table": "customers",
            "server_id": 223_344,
            "gtid": null,
            "file": file,
            "pos": pos,
            "row": row,
            "thread": 7,
            "query": null
        },
        "op": op,
        "ts_ms": 1_733_300_000_456_i64
    }))
    .unwrap()
}

fn ada() -> serde_json::Value {
    json!({"id": 1, "email": "ada@example.com", "tier": null})
}

fn ada_gold() -> serde_json::Value {
    json!({"id": 1, "email": "ada@example.com", "tier": "gold"})
}

const PG_KEY: &[u8] =
    br#"{"schema":{"type":"struct","fields":[{"field":"id","type":"int64"}]},"payload":{"id":1}}"#;

#[test]
fn postgres_create_update_delete_carry_lsn_ts_and_source() {
    let mut d = ChangeDecoder::new();
    let c = d
        .decode::<Customer>(
            Some(PG_KEY),
            Some(&pg_event("c", json!(null), ada(), 24_023_184)),
            Some(&at(10)),
        )
        .unwrap();
    assert_eq!(c.op, ChangeOp::Create);
    assert_eq!(c.key, ChangeKey::from_json(&json!({"id": 1})));
    assert_eq!(c.position, SourcePosition::lsn(24_023_184));
    assert_eq!(c.version, 24_023_184);
    assert_eq!(c.ts_ms, Some(1_733_300_000_123));
    assert_eq!(c.source.connector.as_deref(), Some("postgresql"));
    assert_eq!(c.source.table.as_deref(), Some("customers"));
    assert_eq!(c.source.schema.as_deref(), Some("public"));
    assert!(!c.source.snapshot);
    assert_eq!(c.kafka, Some(at(10)));
    assert_eq!(c.state().map(|r| r.email.as_str()), Some("ada@example.com"));
    assert!(c.before.is_none() && !c.is_observation());

    let u = d
        .decode::<Customer>(
            Some(PG_KEY),
            Some(&pg_event("u", ada(), ada_gold(), 24_023_300)),
            Some(&at(11)),
        )
        .unwrap();
    assert_eq!(u.op, ChangeOp::Update);
    assert_eq!(u.state().and_then(|r| r.tier.as_deref()), Some("gold"));
    assert_eq!(u.before.as_ref().map(|r| r.tier.clone()), Some(None));
    assert!(u.position > c.position && u.version > c.version);

    let del = d
        .decode::<Customer>(
            Some(PG_KEY),
            Some(&pg_event("d", ada_gold(), json!(null), 24_023_400)),
            Some(&at(12)),
        )
        .unwrap();
    assert_eq!(del.op, ChangeOp::Delete);
    assert!(del.is_delete());
    assert_eq!(del.state(), None);
    assert_eq!(del.before.as_ref().map(|r| r.id), Some(1));
}

#[test]
fn a_partial_before_image_is_dropped_not_refused() {
    // REPLICA IDENTITY DEFAULT: PostgreSQL sends only the key columns of the old row.
    let mut d = ChangeDecoder::new();
    let del = d
        .decode::<Customer>(
            Some(PG_KEY),
            Some(&pg_event(
                "d",
                json!({"id": 1, "email": null, "tier": null}),
                json!(null),
                500,
            )),
            Some(&at(1)),
        )
        .unwrap();
    assert!(del.is_delete() && del.before.is_none());
}

#[test]
fn a_snapshot_read_is_an_observation_not_a_create() {
    let mut d = ChangeDecoder::new();
    let r = d
        .decode::<Customer>(
            Some(PG_KEY),
            Some(&pg_event("r", json!(null), ada(), 24_000_000)),
            Some(&at(0)),
        )
        .unwrap();
    assert_eq!(r.op, ChangeOp::Read);
    assert_ne!(r.op, ChangeOp::Create);
    assert!(r.is_observation());
    assert!(r.source.snapshot);
    assert_eq!(r.state().map(|c| c.id), Some(1));
}

#[test]
fn mysql_binlog_positions_order_by_file_pos_and_row() {
    let mut d = ChangeDecoder::new();
    let key = br#"{"id":1}"#;
    let a = d
        .decode::<Customer>(
            Some(key),
            Some(&mysql_event(
                "c",
                json!(null),
                ada(),
                "mysql-bin.000003",
                4_096,
                0,
            )),
            None,
        )
        .unwrap();
    let b = d
        .decode::<Customer>(
            Some(key),
            Some(&mysql_event(
                "u",
                ada(),
                ada_gold(),
                "mysql-bin.000003",
                8_192,
                0,
            )),
            None,
        )
        .unwrap();
    let c = d
        .decode::<Customer>(
            Some(key),
            Some(&mysql_event(
                "d",
                ada_gold(),
                json!(null),
                "mysql-bin.000004",
                4,
                0,
            )),
            None,
        )
        .unwrap();
    assert_eq!(
        a.position,
        SourcePosition::binlog("mysql-bin.000003", 4_096, 0).unwrap()
    );
    assert_eq!(a.version, (3 << 32) | 4_096);
    assert!(a.position < b.position && b.position < c.position);
    assert!(a.version < b.version && b.version < c.version);
    assert_eq!(a.source.connector.as_deref(), Some("mysql"));
    assert_eq!(a.source.schema, None);
    assert_eq!(c.op, ChangeOp::Delete);
    assert_eq!(c.before.map(|r| r.tier), Some(Some("gold".into())));
}

#[test]
fn a_tombstone_is_a_delete_of_its_key() {
    // Source-log basis: the tombstone takes the position of the delete it follows.
    let mut d = ChangeDecoder::new();
    let del = d
        .decode::<Customer>(
            Some(PG_KEY),
            Some(&pg_event("d", ada(), json!(null), 900)),
            Some(&at(5)),
        )
        .unwrap();
    let t = d
        .decode::<Customer>(Some(PG_KEY), None, Some(&at(6)))
        .unwrap();
    assert_eq!(t.op, ChangeOp::Delete);
    assert_eq!(t.key, del.key);
    assert_eq!((t.position.clone(), t.version), (del.position, del.version));
    assert!(t.before.is_none() && t.after.is_none() && t.state().is_none());
    assert_eq!(t.kafka, Some(at(6)));

    // An empty value is a tombstone too; on the Kafka basis it needs no earlier change.
    let mut k = ChangeDecoder::new().with_basis(PositionBasis::Kafka);
    let t = k
        .decode::<Customer>(Some(br#"{"id":7}"#), Some(b""), Some(&at(42)))
        .unwrap();
    assert_eq!(t.op, ChangeOp::Delete);
    assert_eq!(t.position, SourcePosition::kafka(at(42)));
    assert_eq!(t.version, 42);
    assert_eq!(
        t.key.parse::<serde_json::Value>().unwrap(),
        json!({"id": 7})
    );
}

#[test]
fn a_lone_tombstone_on_the_source_log_basis_says_why_it_cannot_be_placed() {
    let mut d = ChangeDecoder::new();
    let err = d
        .decode::<Customer>(Some(PG_KEY), None, Some(&at(3)))
        .unwrap_err();
    assert!(
        matches!(err, DecodeError::TombstoneWithoutPosition { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("shop.public.customers/0@3"),
        "{err}"
    );
}

#[test]
fn keys_compare_canonically_and_come_from_key_columns_without_a_message_key() {
    assert_eq!(
        ChangeKey::from_json(&json!({"b": 1, "a": [2, {"y": 1, "x": 0}]})),
        ChangeKey::from_json(&json!({"a": [2, {"x": 0, "y": 1}], "b": 1}))
    );
    let mut d = ChangeDecoder::new().with_key_columns(["id"]);
    let c = d
        .decode::<Customer>(
            None,
            Some(&mysql_event(
                "c",
                json!(null),
                ada(),
                "mysql-bin.000001",
                4,
                0,
            )),
            None,
        )
        .unwrap();
    assert_eq!(c.key.as_str(), r#"{"id":1}"#);
}

#[test]
fn malformed_envelopes_are_typed_errors_naming_offset_and_field() {
    let mut d = ChangeDecoder::new();
    let check = |d: &mut ChangeDecoder, value: &[u8], expect: &str| {
        let err = d
            .decode::<Customer>(Some(br#"{"id":1}"#), Some(value), Some(&at(77)))
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("@77"), "{text}");
        assert!(text.contains(expect), "expected `{expect}` in: {text}");
        err
    };
    let err = check(&mut d, b"{not json", "value is not JSON");
    assert!(matches!(err, DecodeError::Json { field: "value", .. }));
    let err = check(
        &mut d,
        br#"{"after":{"id":1,"email":"a"},"source":{"lsn":1}}"#,
        "`op`",
    );
    assert!(matches!(err, DecodeError::MissingField { field: "op", .. }));
    let err = check(&mut d, br#"{"op":"t","source":{"lsn":1}}"#, "op `t`");
    assert!(matches!(err, DecodeError::UnsupportedOp { .. }));
    let err = check(
        &mut d,
        br#"{"op":"c","after":null,"source":{"lsn":1}}"#,
        "`after`",
    );
    assert!(matches!(
        err,
        DecodeError::MissingField { field: "after", .. }
    ));
    let err = check(
        &mut d,
        br#"{"op":"c","after":{"id":"x","email":"a"},"source":{"lsn":1}}"#,
        "row type",
    );
    assert!(matches!(err, DecodeError::Row { field: "after", .. }));
    let err = check(
        &mut d,
        br#"{"op":"c","after":{"id":1,"email":"a"},"source":{"lsn":-4}}"#,
        "source.lsn",
    );
    assert!(matches!(
        err,
        DecodeError::InvalidField {
            field: "source.lsn",
            ..
        }
    ));
    let err = check(
        &mut d,
        br#"{"op":"c","after":{"id":1,"email":"a"},"source":{"file":"bin.000001"}}"#,
        "source.pos",
    );
    assert!(matches!(
        err,
        DecodeError::InvalidField {
            field: "source.pos",
            ..
        }
    ));
    let err = check(
        &mut d,
        br#"{"op":"c","after":{"id":1,"email":"a"},"source":{"lsn":1},"ts_ms":"soon"}"#,
        "ts_ms",
    );
    assert!(matches!(
        err,
        DecodeError::InvalidField { field: "ts_ms", .. }
    ));
    let err = check(&mut d, b"[1,2]", "value");
    assert!(matches!(
        err,
        DecodeError::InvalidField { field: "value", .. }
    ));
    // No source position and no Kafka coordinates: nothing to order the change by.
    let err = d
        .decode::<Customer>(
            Some(br#"{"id":1}"#),
            Some(br#"{"op":"c","after":{"id":1,"email":"a"}}"#),
            None,
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("envelope") && err.to_string().contains("source.lsn"),
        "{err}"
    );
    let err = d
        .decode::<Customer>(
            Some(b"\xff"),
            Some(br#"{"op":"c","after":{"id":1,"email":"a"},"source":{"lsn":1}}"#),
            None,
        )
        .unwrap_err();
    assert!(matches!(err, DecodeError::Json { field: "key", .. }));
}
