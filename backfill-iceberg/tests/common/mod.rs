//! Shared test fixtures: catalogs on SQLite (a fresh directory per use) and on PostgreSQL (the test
//! server from scripts/test.sh, a fresh namespace per use), and the tables the suites write.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use backfill_iceberg::{lineage_fields, IcebergCatalog};
use iceberg::spec::{NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec};
use iceberg::{NamespaceIdent, TableIdent};

/// Which catalog database a suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// The PostgreSQL URL of the test server; panics under BACKFILL_REQUIRE_SERVICES=1 when unset.
pub fn pg_url() -> Option<String> {
    match std::env::var("BACKFILL_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("BACKFILL_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "BACKFILL_TEST_PG_URL is not set but BACKFILL_REQUIRE_SERVICES=1"
            );
            eprintln!("SKIPPED: no PostgreSQL (set BACKFILL_TEST_PG_URL)");
            None
        }
    }
}

/// A fresh directory that outlives the test (inspect it after a failure).
pub fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "backfill-iceberg-{}-{}-{}",
        std::process::id(),
        tag.replace(['/', ':'], "_"),
        uuid_like()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A catalog on `engine` with its own warehouse directory.
pub async fn catalog(engine: Engine, tag: &str) -> backfill_core::Result<IcebergCatalog> {
    let dir = fresh_dir(tag);
    match engine {
        Engine::Sqlite => IcebergCatalog::embedded(&dir).await,
        Engine::Postgres => {
            let url = pg_url().ok_or_else(|| {
                backfill_core::Error::adapter(
                    "iceberg-test",
                    "no PostgreSQL: set BACKFILL_TEST_PG_URL",
                )
            })?;
            // One catalog name per use: tables of the same name in other uses stay apart.
            IcebergCatalog::builder(url, format!("file://{}", dir.display()))
                .name(format!("t{}", uuid_like()))
                .connect()
                .await
        }
    }
}

/// `ns<pid>_<tag>.<name>`: unique per process and use.
pub fn ident(tag: &str, name: &str) -> TableIdent {
    let clean: String = tag
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    TableIdent::new(
        NamespaceIdent::new(format!("ns{}_{clean}_{}", std::process::id(), uuid_like())),
        name.to_owned(),
    )
}

/// The testkit's `TestRow` as an Iceberg table partitioned by identity(partition), lineage included.
pub fn test_row_schema() -> (Schema, UnboundPartitionSpec) {
    let mut fields = vec![
        NestedField::required(1, "id", Type::Primitive(PrimitiveType::String)).into(),
        NestedField::required(2, "partition", Type::Primitive(PrimitiveType::String)).into(),
        NestedField::required(3, "key", Type::Primitive(PrimitiveType::String)).into(),
        NestedField::required(4, "value", Type::Primitive(PrimitiveType::Long)).into(),
        NestedField::optional(5, "note", Type::Primitive(PrimitiveType::String)).into(),
    ];
    fields.extend(lineage_fields(6));
    let schema = Schema::builder()
        .with_schema_id(0)
        .with_fields(fields)
        .build()
        .expect("schema");
    let spec = UnboundPartitionSpec::builder()
        .add_partition_field(2, "partition", Transform::Identity)
        .expect("spec")
        .build();
    (schema, spec)
}

/// A sale: the input events and the output rows of the scenario tests (month-partitioned).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sale {
    pub id: String,
    pub day: chrono::NaiveDate,
    pub region: String,
    pub amount: i64,
}

impl backfill_core::digest::OutputRow for Sale {
    fn partition(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Owned(self.day.format("%Y-%m").to_string())
    }
}

/// `Sale` as an Iceberg table partitioned by month(day), lineage included.
pub fn sale_schema() -> (Schema, UnboundPartitionSpec) {
    let mut fields = vec![
        NestedField::required(1, "id", Type::Primitive(PrimitiveType::String)).into(),
        NestedField::required(2, "day", Type::Primitive(PrimitiveType::Date)).into(),
        NestedField::required(3, "region", Type::Primitive(PrimitiveType::String)).into(),
        NestedField::required(4, "amount", Type::Primitive(PrimitiveType::Long)).into(),
    ];
    fields.extend(lineage_fields(5));
    let schema = Schema::builder()
        .with_schema_id(0)
        .with_fields(fields)
        .build()
        .expect("schema");
    let spec = UnboundPartitionSpec::builder()
        .add_partition_field(2, "day_month", Transform::Month)
        .expect("spec")
        .build();
    (schema, spec)
}

/// `n` sales spread over January to April 2025.
pub fn sales(n: usize) -> Vec<Sale> {
    let start = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).expect("date");
    (0..n)
        .map(|i| Sale {
            id: format!("s{i:05}"),
            day: start + chrono::Duration::days((i * 7 % 120) as i64),
            region: ["eu", "us", "apac"][i % 3].to_owned(),
            amount: (i as i64 * 37) % 1000,
        })
        .collect()
}
