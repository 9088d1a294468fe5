//! Staged data files: the chunk artifact's shape, and reading and deleting the files it names.

use backfill_core::digest::OutputRow;
use backfill_core::ids::{ChunkId, RunId};
use backfill_core::publish::ChunkArtifact;
use backfill_core::Result;
use iceberg::io::FileIO;
use iceberg::spec::{deserialize_data_file_from_json, serialize_data_file_to_json, DataFile};
use iceberg::table::Table;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use crate::error::{arrow, corrupt, ice};
use crate::partition::partition_label;
use crate::rows::ArrowRows;

/// What one chunk staged: Parquet data files of one table, ready to be committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedFiles {
    /// The table (`namespace.name`).
    pub table: String,
    /// The staging attempt that wrote them.
    pub attempt: u32,
    /// The partition spec the files were written with.
    pub spec_id: i32,
    /// The schema the files were written with.
    pub schema_id: i32,
    /// The files, sorted by path.
    pub files: Vec<StagedFile>,
}

/// One staged data file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedFile {
    /// Its location.
    pub path: String,
    /// Its publish partition.
    pub partition: String,
    /// Rows in it.
    pub rows: u64,
    /// Its size.
    pub bytes: u64,
    /// Iceberg's JSON form of the data file (statistics, partition value), as manifests need it.
    pub data_file: String,
}

impl StagedFiles {
    pub(crate) fn of(table: &Table, attempt: u32, files: Vec<DataFile>) -> Result<Self> {
        let md = table.metadata();
        let spec = md.default_partition_spec();
        let schema = md.current_schema();
        let ptype = spec
            .partition_type(schema)
            .map_err(|e| ice("computing the partition type", e))?;
        let mut out = Vec::with_capacity(files.len());
        for f in files {
            let partition = partition_label(spec, schema, f.partition())?;
            let (path, rows, bytes) = (
                f.file_path().to_owned(),
                f.record_count(),
                f.file_size_in_bytes(),
            );
            let data_file = serialize_data_file_to_json(f, &ptype, md.format_version())
                .map_err(|e| ice("serializing a staged data file", e))?;
            out.push(StagedFile {
                path,
                partition,
                rows,
                bytes,
                data_file,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Self {
            table: table.identifier().to_string(),
            attempt,
            spec_id: spec.spec_id(),
            schema_id: md.current_schema_id(),
            files: out,
        })
    }

    /// Rows in all files.
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
}

/// `bf-<run>-<chunk>-a<attempt>-<uuid>`: unique per attempt, so no attempt overwrites another's
/// files (the local storage truncates existing files, and the writer's counter restarts per process).
pub(crate) fn file_prefix(run: &RunId, chunk: &ChunkId, attempt: u32) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let uuid = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "bf-{}-{}-a{attempt}-{}",
        clean(run.as_str()),
        clean(chunk.as_str()),
        &uuid[..12]
    )
}

/// Best-effort removal of files nothing references (a failed or superseded attempt's).
pub(crate) async fn delete(io: &FileIO, files: &[StagedFile]) {
    for f in files {
        if let Err(e) = io.delete(&f.path).await {
            tracing::warn!(path = %f.path, error = %e.message(), "could not delete a staged data file");
        }
    }
}

/// The data files of every chunk artifact of a publish request, checked against the table.
pub(crate) async fn data_files(
    table: &Table,
    artifacts: &[ChunkArtifact],
) -> Result<Vec<DataFile>> {
    let md = table.metadata();
    let spec = md.default_partition_spec();
    let schema = md.current_schema();
    let ptype = spec
        .partition_type(schema)
        .map_err(|e| ice("computing the partition type", e))?;
    let mut out = Vec::new();
    for a in artifacts {
        let staged: StagedFiles = a.artifact.parse()?;
        if staged.table != table.identifier().to_string() {
            return Err(corrupt(
                "staged artifact",
                format!(
                    "chunk {} staged into {}, not {}",
                    a.chunk_id,
                    staged.table,
                    table.identifier()
                ),
            ));
        }
        if staged.spec_id != spec.spec_id() {
            return Err(crate::error::schema(
                table.identifier(),
                format!(
                    "chunk {} was staged with partition spec {}, the table's is now {}: restage",
                    a.chunk_id,
                    staged.spec_id,
                    spec.spec_id()
                ),
            ));
        }
        if staged.schema_id != md.current_schema_id() {
            compatible(table, staged.schema_id, &a.chunk_id)?;
        }
        for f in &staged.files {
            let exists = table
                .file_io()
                .exists(&f.path)
                .await
                .map_err(|e| ice(format!("looking for staged file {}", f.path), e))?;
            if !exists {
                return Err(corrupt(
                    "staged artifact",
                    format!(
                        "chunk {} (attempt {}) names {}, which no longer exists (was its staging discarded?)",
                        a.chunk_id, a.attempt, f.path
                    ),
                ));
            }
            out.push(
                deserialize_data_file_from_json(&f.data_file, spec.spec_id(), &ptype, schema)
                    .map_err(|e| ice(format!("reading staged file {}", f.path), e))?,
            );
        }
    }
    Ok(out)
}

/// Every row of one data file, decoded.
pub(crate) async fn read_rows<R: OutputRow, C: ArrowRows<R> + ?Sized>(
    table: &Table,
    path: &str,
    codec: &C,
) -> Result<Vec<R>> {
    let bytes = table
        .file_io()
        .new_input(path)
        .map_err(|e| ice(format!("opening {path}"), e))?
        .read()
        .await
        .map_err(|e| ice(format!("reading {path}"), e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.with_batch_size(8192).build())
        .map_err(|e| corrupt(format!("parquet file {path}"), e))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| arrow(table.identifier(), e))?;
        rows.extend(
            codec
                .decode(&batch)
                .map_err(|e| arrow(table.identifier(), e))?,
        );
    }
    Ok(rows)
}

/// Files written with an older schema can be committed when every column they hold still exists
/// with the same id and type, and every column added since is optional (readers fill nulls).
fn compatible(table: &Table, staged: i32, chunk: &ChunkId) -> Result<()> {
    let md = table.metadata();
    let current = md.current_schema();
    let refuse = |detail: String| {
        crate::error::schema(
            table.identifier(),
            format!("chunk {chunk} was staged with schema {staged}: {detail}; restage the run"),
        )
    };
    let old = md
        .schema_by_id(staged)
        .ok_or_else(|| refuse("the table no longer has that schema".into()))?;
    for f in old.as_struct().fields() {
        match current.field_by_id(f.id) {
            Some(now) if now.field_type == f.field_type => {}
            Some(now) => {
                return Err(refuse(format!(
                    "column {} is {} now, {} in the files",
                    f.name, now.field_type, f.field_type
                )))
            }
            None => return Err(refuse(format!("column {} was dropped", f.name))),
        }
    }
    for f in current.as_struct().fields() {
        if f.required && old.field_by_id(f.id).is_none() {
            return Err(refuse(format!("required column {} was added", f.name)));
        }
    }
    Ok(())
}
