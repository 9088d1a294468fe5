//! [`IcebergStagingSink`]: a chunk's output as Parquet data files of the target table, invisible
//! until a publisher commits a snapshot that references them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Schema as ArrowSchema, SchemaRef};
use async_trait::async_trait;
use backfill_core::digest::OutputRow;
use backfill_core::ids::RunId;
use backfill_core::sink::{
    SinkDescriptor, StageReceipt, StageRequest, StagedArtifact, StagingSink,
};
use backfill_core::{Error, Result};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use iceberg::arrow::{schema_to_arrow_schema, RecordBatchPartitionSplitter};
use iceberg::spec::{DataFileFormat, PartitionSpec, Schema};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::TableIdent;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::catalog::IcebergCatalog;
use crate::error::{arrow, ice, IcebergError};
use crate::files::{self, StagedFile, StagedFiles};
use crate::partition::partition_label;
use crate::rows::{ArrowRows, SerdeRows};
use crate::staging::StagingRecords;

/// Stages each chunk as Parquet data files under the table's data location, named
/// `bf-<run>-<chunk>-a<attempt>-<uuid>`, with the lineage columns the table declares filled on
/// every row. The chunk's file list (Iceberg's own data-file JSON, with partition and row counts) is
/// the artifact the ledger records and the publisher commits; the catalog database keeps the
/// latest complete attempt of each chunk and fences older attempts.
///
/// ```no_run
/// # async fn demo() -> backfill_core::Result<()> {
/// use backfill_iceberg::{IcebergCatalog, IcebergStagingSink};
/// # #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)] struct Row { id: i64 }
/// # impl backfill_core::digest::OutputRow for Row {
/// #     fn partition(&self) -> std::borrow::Cow<'_, str> { "all".into() } }
/// let catalog = IcebergCatalog::embedded("./wh").await?;
/// let table = iceberg::TableIdent::from_strs(["silver", "case_sla"]).unwrap();
/// let sink: IcebergStagingSink<Row> = IcebergStagingSink::new(catalog, table);
/// # let _ = sink; Ok(()) }
/// ```
pub struct IcebergStagingSink<R, C = SerdeRows<R>> {
    catalog: IcebergCatalog,
    table: TableIdent,
    codec: Arc<C>,
    compression: Compression,
    _rows: PhantomData<fn() -> R>,
}

impl<R, C> fmt::Debug for IcebergStagingSink<R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IcebergStagingSink")
            .field("table", &self.table.to_string())
            .field("catalog", &self.catalog.name())
            .finish_non_exhaustive()
    }
}

impl<R: OutputRow + serde::de::DeserializeOwned> IcebergStagingSink<R, SerdeRows<R>> {
    /// A sink for `table` of `catalog`, rows converted through serde.
    pub fn new(catalog: IcebergCatalog, table: TableIdent) -> Self {
        Self::with_codec(catalog, table, SerdeRows::new())
    }
}

impl<R: OutputRow, C: ArrowRows<R>> IcebergStagingSink<R, C> {
    /// A sink with a hand-written row conversion.
    pub fn with_codec(catalog: IcebergCatalog, table: TableIdent, codec: C) -> Self {
        Self {
            catalog,
            table,
            codec: Arc::new(codec),
            compression: Compression::ZSTD(ZstdLevel::default()),
            _rows: PhantomData,
        }
    }

    /// Parquet compression (default zstd).
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    fn records(&self) -> StagingRecords {
        StagingRecords::new(&self.catalog, &self.table)
    }

    /// Encodes one incoming batch into per-partition record batches, checking each row's partition
    /// against the table's spec.
    fn encode(
        &self,
        rows: &[R],
        enc: &Encoding,
        lineage: &backfill_core::context::OutputLineage,
    ) -> Result<Vec<(iceberg::spec::PartitionKey, RecordBatch)>> {
        // Rows by publish partition, borrowed (a batch of one partition, the usual case for chunks
        // cut along partitions, is one group without a map).
        let mut groups: BTreeMap<Cow<'_, str>, Vec<&R>> = BTreeMap::new();
        for r in rows {
            let p = r.partition();
            match groups.get_mut(p.as_ref()) {
                Some(g) => g.push(r),
                None => {
                    let mut g = Vec::with_capacity(rows.len());
                    g.push(r);
                    groups.insert(p, g);
                }
            }
        }
        let mut out = Vec::with_capacity(groups.len());
        for (label, group) in groups {
            let user = self
                .codec
                .encode(&group, &enc.user)
                .map_err(|e| arrow(&self.table, e))?;
            let batch = enc.with_lineage(&user, lineage, &self.table)?;
            match &enc.splitter {
                None => {
                    if label != crate::partition::UNPARTITIONED {
                        return Err(mismatch(
                            &self.table,
                            label.into_owned(),
                            crate::partition::UNPARTITIONED,
                        ));
                    }
                    out.push((enc.unpartitioned_key(), batch));
                }
                Some(splitter) => {
                    for (key, part) in splitter
                        .split(&batch)
                        .map_err(|e| ice(format!("partitioning rows of {}", self.table), e))?
                    {
                        let found = partition_label(&enc.spec, &enc.schema, key.data())?;
                        if found != label {
                            return Err(mismatch(&self.table, label.into_owned(), &found));
                        }
                        out.push((key, part));
                    }
                }
            }
        }
        Ok(out)
    }
}

fn mismatch(table: &TableIdent, row: String, found: &str) -> Error {
    IcebergError::PartitionMismatch {
        table: table.to_string(),
        row,
        table_partition: found.to_owned(),
    }
    .into()
}

/// What the sink needs of the table's schema for one stage call.
struct Encoding {
    schema: Arc<Schema>,
    spec: Arc<PartitionSpec>,
    full: SchemaRef,
    user: SchemaRef,
    splitter: Option<RecordBatchPartitionSplitter>,
}

impl Encoding {
    fn of(table: &Table) -> Result<Self> {
        let md = table.metadata();
        let schema = Arc::clone(md.current_schema());
        let spec = Arc::clone(md.default_partition_spec());
        let what = || format!("reading the schema of {}", table.identifier());
        let full = Arc::new(schema_to_arrow_schema(&schema).map_err(|e| ice(what(), e))?);
        let user = Arc::new(ArrowSchema::new_with_metadata(
            full.fields()
                .iter()
                .filter(|f| !crate::lineage::is_lineage(f.name()))
                .cloned()
                .collect::<Vec<_>>(),
            full.metadata().clone(),
        ));
        let splitter = if spec.is_unpartitioned() {
            None
        } else {
            Some(
                RecordBatchPartitionSplitter::try_new_with_computed_values(
                    Arc::clone(&schema),
                    Arc::clone(&spec),
                )
                .map_err(|e| ice(what(), e))?,
            )
        };
        Ok(Self {
            schema,
            spec,
            full,
            user,
            splitter,
        })
    }

    fn unpartitioned_key(&self) -> iceberg::spec::PartitionKey {
        iceberg::spec::PartitionKey::new(
            self.spec.as_ref().clone(),
            Arc::clone(&self.schema),
            iceberg::spec::Struct::empty(),
        )
    }

    fn with_lineage(
        &self,
        user: &RecordBatch,
        lineage: &backfill_core::context::OutputLineage,
        table: &TableIdent,
    ) -> Result<RecordBatch> {
        let rows = user.num_rows();
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.full.fields().len());
        let mut next_user = 0;
        for f in self.full.fields() {
            if crate::lineage::is_lineage(f.name()) {
                cols.push(crate::lineage::column(f, lineage, rows).ok_or_else(|| {
                    crate::error::schema(table, format!("unknown lineage column {}", f.name()))
                })?);
            } else {
                cols.push(Arc::clone(user.column(next_user)));
                next_user += 1;
            }
        }
        RecordBatch::try_new(Arc::clone(&self.full), cols).map_err(|e| arrow(table, e))
    }
}

#[async_trait]
impl<R: OutputRow, C: ArrowRows<R>> StagingSink<R> for IcebergStagingSink<R, C> {
    fn descriptor(&self) -> SinkDescriptor {
        SinkDescriptor::internal(format!("{}.staging", self.table), "iceberg_data_files")
    }

    async fn stage(
        &self,
        req: StageRequest<'_>,
        mut rows: BoxStream<'_, Result<Vec<R>>>,
    ) -> Result<StageReceipt> {
        let records = self.records();
        records.ensure().await?;
        records.claim(&req).await?;
        let table = self.catalog.load(&self.table).await?;
        let enc = Encoding::of(&table)?;
        let md = table.metadata();
        let what = || format!("writing data files of {}", self.table);
        let props = WriterProperties::builder()
            .set_compression(self.compression)
            .build();
        let rolling = RollingFileWriterBuilder::new_with_default_file_size(
            ParquetWriterBuilder::new(props, Arc::clone(&enc.schema)),
            table.file_io().clone(),
            DefaultLocationGenerator::new(md).map_err(|e| ice(what(), e))?,
            DefaultFileNameGenerator::new(
                files::file_prefix(req.run_id, req.chunk_id, req.attempt),
                None,
                DataFileFormat::Parquet,
            ),
        );
        let mut writer = FanoutWriter::new(DataFileWriterBuilder::new(rolling));
        let (mut total, mut batches) = (0u64, 0u64);
        while let Some(batch) = rows.next().await {
            let batch = batch?;
            batches += 1;
            total += batch.len() as u64;
            for (key, part) in self.encode(&batch, &enc, req.lineage)? {
                writer.write(key, part).await.map_err(|e| ice(what(), e))?;
            }
        }
        let data_files = writer.close().await.map_err(|e| ice(what(), e))?;
        let staged = StagedFiles::of(&table, req.attempt, data_files)?;
        if staged.rows() != total {
            return Err(crate::error::corrupt(
                "staged data files",
                format!(
                    "run {} chunk {}: {} rows written, {total} received",
                    req.run_id,
                    req.chunk_id,
                    staged.rows()
                ),
            ));
        }
        let artifact = StagedArtifact::of(&staged)?;
        let replaced = match records.finish(&req, &artifact).await {
            Ok(replaced) => replaced,
            Err(e) => {
                files::delete(table.file_io(), &staged.files).await;
                return Err(e);
            }
        };
        if let Some(old) = replaced {
            files::delete(table.file_io(), &old.files).await;
        }
        Ok(StageReceipt {
            rows: total,
            batches,
            artifact,
        })
    }

    fn read_staged<'a>(&'a self, run_id: &'a RunId) -> BoxStream<'a, Result<Vec<R>>> {
        let load = async move {
            let table = self.catalog.load(&self.table).await?;
            let artifacts = self.records().artifacts(run_id).await?;
            let files: Vec<StagedFile> = artifacts.into_iter().flat_map(|a| a.files).collect();
            Ok::<_, Error>((table, files))
        };
        stream::once(load)
            .map_ok(move |(table, files)| {
                let codec = Arc::clone(&self.codec);
                stream::iter(files).then(move |f| {
                    let (table, codec) = (table.clone(), Arc::clone(&codec));
                    async move { files::read_rows(&table, &f.path, codec.as_ref()).await }
                })
            })
            .try_flatten()
            .boxed()
    }

    async fn discard(&self, run_id: &RunId) -> Result<()> {
        let records = self.records();
        records.ensure().await?;
        let artifacts = records.artifacts(run_id).await?;
        // A write-audit-publish run abandoned after its branch commit leaves `bf-<run>` behind.
        // A published run's branch is gone (dropped in the fast-forward's commit).
        crate::refs::drop_audit_branch(&self.catalog, &self.table, run_id.as_str()).await?;
        let table = self.catalog.load(&self.table).await?;
        // Published files are the table's now: only a run no snapshot names loses its files. (The
        // snapshot of a dropped branch stays in the metadata until snapshot expiry, and its files
        // with it, so time travel to it keeps working.)
        if crate::refs::find_run_snapshot(&table, run_id.as_str()).is_none() {
            for a in &artifacts {
                files::delete(table.file_io(), &a.files).await;
            }
        }
        records.forget(run_id).await
    }
}
