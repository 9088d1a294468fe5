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
    /// SQLite, with data and metadata files through OpenDAL's storage (the object-store path).
    #[cfg(feature = "opendal")]
    SqliteOpenDal,
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
        #[cfg(feature = "opendal")]
        Engine::SqliteOpenDal => {
            IcebergCatalog::builder(
                format!("sqlite:{}?mode=rwc", dir.join("catalog.db").display()),
                format!("file://{}", dir.display()),
            )
            .opendal(iceberg_storage_opendal::OpenDalStorageFactory::Fs)
            .connect()
            .await
        }
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

/// Stages `rows` as chunk `00000-c` (attempt 1) of `run`; returns the chunk's artifact as the
/// ledger records it, and the rows' digests.
pub async fn stage(
    sink: &backfill_iceberg::IcebergStagingSink<Sale>,
    run: &str,
    rows: Vec<Sale>,
) -> (
    backfill_core::publish::ChunkArtifact,
    backfill_core::digest::PartitionDigests,
) {
    use backfill_core::sink::StagingSink;
    use futures::StreamExt;
    let run_id = backfill_core::ids::RunId::from(run);
    let chunk = backfill_core::ids::ChunkId::from("00000-c");
    let lineage = backfill_core::context::OutputLineage {
        run_id: run_id.clone(),
        mode: backfill_core::mode::ExecutionMode::Backfill,
        transform_name: "t".into(),
        transform_version: "1.0.0".into(),
        input_snapshot: None,
        input_range: "2025-01-01..2025-05-01".into(),
        reference_data: String::new(),
        produced_at: chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 12, 4, 9, 0, 0)
            .unwrap(),
    };
    let digests = backfill_core::digest::PartitionDigests::of_rows(&rows);
    let receipt = sink
        .stage(
            backfill_core::sink::StageRequest {
                run_id: &run_id,
                chunk_id: &chunk,
                attempt: 1,
                lineage: &lineage,
            },
            futures::stream::iter(vec![Ok(rows)]).boxed(),
        )
        .await
        .expect("stage");
    (
        backfill_core::publish::ChunkArtifact {
            chunk_id: chunk,
            attempt: 1,
            rows: receipt.rows,
            artifact: receipt.artifact,
        },
        digests,
    )
}

/// The Iceberg data files a chunk artifact names, for committing them with the iceberg crate's
/// own actions (an independent writer).
pub fn data_files(
    table: &iceberg::table::Table,
    artifact: &backfill_core::publish::ChunkArtifact,
) -> Vec<iceberg::spec::DataFile> {
    let staged: backfill_iceberg::StagedFiles = artifact.artifact.parse().expect("artifact");
    let md = table.metadata();
    let spec = md.default_partition_spec();
    let ptype = spec.partition_type(md.current_schema()).expect("type");
    staged
        .files
        .iter()
        .map(|f| {
            iceberg::spec::deserialize_data_file_from_json(
                &f.data_file,
                spec.spec_id(),
                &ptype,
                md.current_schema(),
            )
            .expect("data file")
        })
        .collect()
}
