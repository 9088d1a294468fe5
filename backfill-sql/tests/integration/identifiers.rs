//! Hostile identifiers are refused or quoted; nothing is ever executed from them.

use crate::common;

use backfill_sql::{Dialect, Ident, QualifiedName, SqlPool, SqlSink, SqlType};
use proptest::prelude::*;

fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z_]{1,10}[\"'`;\\\\ -]{1,3}[a-z ;()*]{0,20}",
        Just("x\"; DROP TABLE bf_runs; --".to_owned()),
        Just("x`; DROP TABLE bf_runs; --".to_owned()),
        Just("Robert'); DROP TABLE students;--".to_owned()),
        Just("ünïcødé".to_owned()),
        Just("select".to_owned()),
        Just("TABLE".to_owned()),
        Just("1starts_with_digit".to_owned()),
        Just("a".repeat(64)),
        Just(String::new()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn identifiers_are_refused_or_safe(name in hostile()) {
        match Ident::new(&name) {
            Ok(id) => {
                prop_assert!(name.len() <= 63);
                prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
                prop_assert!(!name.as_bytes()[0].is_ascii_digit());
                prop_assert_eq!(id.quoted(Dialect::Postgres), format!("\"{name}\""));
                prop_assert_eq!(id.quoted(Dialect::MySql), format!("`{name}`"));
            }
            Err(e) => {
                prop_assert_eq!(e.kind(), backfill_core::ErrorKind::Permanent);
                prop_assert!(e.to_string().contains("invalid identifier"));
            }
        }
    }

    #[test]
    fn qualified_names_are_refused_or_safe(schema in hostile(), table in hostile()) {
        let name = format!("{schema}.{table}");
        match QualifiedName::parse(&name) {
            Ok(q) => {
                // Both parts passed Ident's rules; each is quoted on its own.
                let (s, t) = (Ident::new(&schema).unwrap(), Ident::new(&table).unwrap());
                prop_assert_eq!(q.to_string(), name);
                prop_assert_eq!(q.quoted(Dialect::Postgres), format!("{}.{}", s.quoted(Dialect::Postgres), t.quoted(Dialect::Postgres)));
                prop_assert_eq!(q.quoted(Dialect::MySql), format!("`{schema}`.`{table}`"));
                prop_assert_eq!(q.quoted(Dialect::Sqlite), format!("\"{schema}__{table}\""));
            }
            Err(e) => {
                prop_assert!(Ident::new(&schema).is_err() || Ident::new(&table).is_err() || table.contains('.') || schema.contains('.'));
                prop_assert_eq!(e.kind(), backfill_core::ErrorKind::Permanent);
            }
        }
    }

    #[test]
    fn quoting_never_ends_early(name in any::<String>()) {
        for d in [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite] {
            let q = d.quote(&name);
            let quote = if d == Dialect::MySql { '`' } else { '"' };
            let inner = &q[1..q.len() - 1];
            // Every quote character inside is doubled, so the literal cannot be closed from inside.
            prop_assert_eq!(inner.replace(&format!("{quote}{quote}"), "").matches(quote).count(), 0);
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct R {
    a: String,
}
impl backfill_core::digest::OutputRow for R {
    fn partition(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(&self.a)
    }
}

#[tokio::test]
async fn hostile_target_and_column_names_are_refused_before_any_sql() {
    for engine in common::engines() {
        let ns = engine.namespace("hostile");
        let pool: SqlPool = ns.pool().await;
        static GOOD_COLS: &[backfill_sql::Column] =
            &[backfill_sql::Column::new("a", SqlType::Text)];
        for bad in [
            "t\"; DROP TABLE bf_runs; --",
            "t`; DROP TABLE bf_runs; --",
            "ta ble",
            "",
            "ü",
            "1t",
        ] {
            let err = SqlSink::<R>::with_schema(
                pool.clone(),
                bad,
                backfill_sql::RowSchema::new(GOOD_COLS, "a"),
            )
            .await
            .unwrap_err();
            assert!(
                err.to_string().contains("invalid identifier"),
                "{}: {err}",
                engine.name
            );
        }
        static BAD_COLS: &[backfill_sql::Column] = &[backfill_sql::Column::new(
            "a\"; DROP TABLE bf_runs; --",
            SqlType::Text,
        )];
        let err = SqlSink::<R>::with_schema(
            pool.clone(),
            "fine",
            backfill_sql::RowSchema::new(BAD_COLS, "a\"; DROP TABLE bf_runs; --"),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("invalid identifier"));
        // Reserved words are fine: they are always quoted.
        static RESERVED_COLS: &[backfill_sql::Column] =
            &[backfill_sql::Column::new("a", SqlType::Text)];
        for reserved in ["select", "order", "table", "key"] {
            let sink = SqlSink::<R>::with_schema(
                pool.clone(),
                reserved,
                backfill_sql::RowSchema::new(RESERVED_COLS, "a"),
            )
            .await
            .unwrap();
            let run = backfill_core::ids::RunId::from("bf-r");
            let ctx = backfill_core::context::TransformContext::fixed(
                run.clone(),
                backfill_core::context::ExecutionMode::Backfill,
                chrono::Utc::now(),
            );
            use backfill_core::sink::StagingSink;
            use futures::StreamExt;
            let receipt = sink
                .stage(
                    backfill_core::sink::StageRequest {
                        run_id: &run,
                        chunk_id: &"c".into(),
                        attempt: 1,
                        lineage: ctx.lineage(),
                    },
                    futures::stream::iter([Ok(vec![R { a: "x".into() }])]).boxed(),
                )
                .await
                .unwrap();
            assert_eq!(receipt.rows, 1, "{}: {reserved}", engine.name);
        }
        // The store's tables are all still there.
        let store = backfill_sql::SqlStore::new(pool.clone()).await.unwrap();
        use backfill_core::store::RunStore;
        assert!(store.run(&"nope".into()).await.unwrap().is_none());
        ns.drop().await;
    }
}
