//! The catalog: Iceberg's SQL catalog on a SQLite file (embedded, no server) or on PostgreSQL, a
//! warehouse directory, and the one commit point every publisher goes through.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use backfill_core::Result;
use iceberg::io::{LocalFsStorageFactory, StorageFactory};
use iceberg::spec::{Schema, UnboundPartitionSpec};
use iceberg::table::Table;
use iceberg::{Catalog, CatalogBuilder, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalog, SqlCatalogBuilder};

use crate::commit::{CatalogPool, MetadataPointer};
use crate::error::{ice, sql};

/// The catalog name the example and the docs use (`catalog_name` in `iceberg_tables`); every client of
/// one catalog database must use the same name (PyIceberg: `SqlCatalog("backfill", ...)`).
pub const DEFAULT_CATALOG_NAME: &str = "backfill";

/// An Iceberg SQL catalog with its warehouse, as backfill-iceberg's parts share it.
///
/// Cloning is cheap (the catalog and the pool are shared).
///
/// ```no_run
/// # async fn demo() -> backfill_core::Result<()> {
/// use backfill_iceberg::IcebergCatalog;
/// // SQLite catalog at ./wh/catalog.db, data and metadata under ./wh: no server.
/// let catalog = IcebergCatalog::embedded("./wh").await?;
/// // The same catalog layout on PostgreSQL, warehouse on the local filesystem.
/// let pg = IcebergCatalog::builder("postgres://u:p@db/iceberg", "file:///srv/warehouse")
///     .connect()
///     .await?;
/// # let _ = (catalog, pg); Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct IcebergCatalog {
    name: String,
    catalog: Arc<SqlCatalog>,
    pointer: MetadataPointer,
    warehouse: String,
}

/// Builds an [`IcebergCatalog`].
#[derive(Debug)]
pub struct CatalogBuilderOptions {
    uri: String,
    warehouse: String,
    name: String,
    storage: Arc<dyn StorageFactory>,
    props: HashMap<String, String>,
}

impl CatalogBuilderOptions {
    /// Names the catalog (default [`DEFAULT_CATALOG_NAME`]).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Where data and metadata files go: the local filesystem by default; pass an object store's
    /// factory (such as `iceberg_storage_opendal::OpenDalStorageFactory`) to write elsewhere.
    pub fn storage(mut self, factory: Arc<dyn StorageFactory>) -> Self {
        self.storage = factory;
        self
    }

    /// Storage through Apache OpenDAL (feature `opendal`): `OpenDalStorageFactory::S3 { .. }` for
    /// S3-compatible object stores (credentials and endpoint as `s3.*` properties through
    /// [`prop`](Self::prop)), `OpenDalStorageFactory::Fs` for local paths.
    #[cfg(feature = "opendal")]
    pub fn opendal(self, factory: iceberg_storage_opendal::OpenDalStorageFactory) -> Self {
        self.storage(Arc::new(factory))
    }

    /// A catalog or storage property (credentials, pool sizes), passed through to the iceberg crate.
    pub fn prop(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.props.insert(key.into(), value.into());
        self
    }

    /// Opens the catalog, creating its tables when missing.
    pub async fn connect(self) -> Result<IcebergCatalog> {
        let postgres = self.uri.starts_with("postgres://") || self.uri.starts_with("postgresql://");
        // Two processes opening a fresh catalog database at once race on its `CREATE TABLE IF NOT
        // EXISTS` (PostgreSQL answers one of them with a duplicate-type error): try again.
        let mut attempt = 0;
        let catalog = loop {
            attempt += 1;
            let opened = SqlCatalogBuilder::default()
                .uri(self.uri.clone())
                .warehouse_location(self.warehouse.clone())
                .sql_bind_style(if postgres {
                    SqlBindStyle::DollarNumeric
                } else {
                    SqlBindStyle::QMark
                })
                .with_storage_factory(Arc::clone(&self.storage))
                .load(self.name.clone(), self.props.clone())
                .await;
            match opened {
                Ok(c) => break c,
                Err(e) if attempt < 5 => {
                    tracing::debug!(error = %e.message(), attempt, "opening the SQL catalog again");
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => {
                    return Err(ice(
                        format!("opening the SQL catalog at {}", redact(&self.uri)),
                        e,
                    ))
                }
            }
        };
        let pool = CatalogPool::connect(&self.uri)
            .await
            .map_err(|e| sql(format!("connecting to {}", redact(&self.uri)), e))?;
        Ok(IcebergCatalog {
            pointer: MetadataPointer::new(pool, self.name.clone()),
            name: self.name,
            catalog: Arc::new(catalog),
            warehouse: self.warehouse,
        })
    }
}

impl IcebergCatalog {
    /// A catalog at `uri` (`sqlite:PATH`, `postgres://…`) over the warehouse location `warehouse`
    /// (`file:///dir` or a path).
    pub fn builder(uri: impl Into<String>, warehouse: impl Into<String>) -> CatalogBuilderOptions {
        CatalogBuilderOptions {
            uri: uri.into(),
            warehouse: warehouse.into(),
            name: DEFAULT_CATALOG_NAME.to_owned(),
            storage: Arc::new(LocalFsStorageFactory),
            props: HashMap::new(),
        }
    }

    /// The embedded layout: the catalog in `DIR/catalog.db` (SQLite), tables under `DIR`, catalog
    /// name [`DEFAULT_CATALOG_NAME`]. Creates the directory.
    pub async fn embedded(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| {
            backfill_core::Error::adapter(
                crate::error::ADAPTER,
                format!("creating the warehouse directory {}: {e}", dir.display()),
            )
        })?;
        let dir = dir.canonicalize().map_err(|e| {
            backfill_core::Error::adapter(
                crate::error::ADAPTER,
                format!("resolving {}: {e}", dir.display()),
            )
        })?;
        let db = dir.join("catalog.db");
        Self::builder(
            format!("sqlite:{}?mode=rwc", db.display()),
            format!("file://{}", dir.display()),
        )
        .connect()
        .await
    }

    /// The catalog name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The warehouse location.
    pub fn warehouse(&self) -> &str {
        &self.warehouse
    }

    /// The iceberg crate's catalog, for everything this crate does not wrap.
    pub fn inner(&self) -> &SqlCatalog {
        &self.catalog
    }

    /// Loads a table's current metadata.
    pub async fn load(&self, table: &TableIdent) -> Result<Table> {
        self.catalog
            .load_table(table)
            .await
            .map_err(|e| ice(format!("loading table {table}"), e))
    }

    /// Creates the table (and its namespace) unless it exists; returns it either way. An existing
    /// table is returned as it is, even when its schema differs (see the sink's schema check).
    pub async fn ensure_table(
        &self,
        table: &TableIdent,
        schema: Schema,
        spec: UnboundPartitionSpec,
    ) -> Result<Table> {
        let ns = table.namespace();
        if !self
            .catalog
            .namespace_exists(ns)
            .await
            .map_err(|e| ice(format!("looking up namespace {}", ns.join(".")), e))?
        {
            match self.catalog.create_namespace(ns, HashMap::new()).await {
                Ok(_) => {}
                // Another process created it first.
                Err(_) if self.namespace_exists(ns).await? => {}
                Err(e) => return Err(ice(format!("creating namespace {}", ns.join(".")), e)),
            }
        }
        if self
            .catalog
            .table_exists(table)
            .await
            .map_err(|e| ice(format!("looking up table {table}"), e))?
        {
            return self.load(table).await;
        }
        let creation = TableCreation::builder()
            .name(table.name().to_owned())
            .schema(schema)
            .partition_spec(spec)
            .build();
        match self.catalog.create_table(ns, creation).await {
            Ok(t) => Ok(t),
            Err(e) => {
                if self.catalog.table_exists(table).await.unwrap_or(false) {
                    self.load(table).await
                } else {
                    Err(ice(format!("creating table {table}"), e))
                }
            }
        }
    }

    async fn namespace_exists(&self, ns: &NamespaceIdent) -> Result<bool> {
        self.catalog
            .namespace_exists(ns)
            .await
            .map_err(|e| ice(format!("looking up namespace {}", ns.join(".")), e))
    }

    pub(crate) fn pointer(&self) -> &MetadataPointer {
        &self.pointer
    }
}

/// A URI without its password, for messages.
fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &uri[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &uri[..s + 3], &creds[..c], &uri[at..]),
                None => uri.to_owned(),
            }
        }
        _ => uri.to_owned(),
    }
}
