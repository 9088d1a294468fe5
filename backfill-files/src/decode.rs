//! Decoding a verified file into typed rows with lineage: CSV with a header row, and JSON lines.

use backfill_core::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A file's format, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Comma-separated values with a header row (`.csv`); columns are matched to fields by name.
    Csv,
    /// One JSON object per line (`.jsonl`, `.ndjson`); blank lines are skipped.
    JsonLines,
    /// Apache Parquet (`.parquet`), read through Arrow; columns are matched to fields by name and
    /// a row's "line" is its 1-based position in the file. Needs the `parquet` feature.
    Parquet,
}

impl Format {
    /// The format of `path` by its extension, if it is one this crate reads.
    pub fn of(path: &str) -> Option<Self> {
        let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
        match ext.as_str() {
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" => Some(Self::JsonLines),
            "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }
}

/// Where a row came from: the file, its content hash and the line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lineage {
    /// Path of the file, relative to the landing root.
    pub path: String,
    /// sha256 of the file's content (verified before the row was read).
    pub sha256: String,
    /// 1-based line number of the row in the file (for CSV, counting the header as line 1).
    pub line: u64,
}

/// One input record with its lineage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRow<I> {
    /// The decoded record.
    pub record: I,
    /// Where it came from.
    pub lineage: Lineage,
}

/// A row that does not decode (kind `Permanent`: reading it again gives the same row), carried
/// as the source of an [`Error::Adapter`]; downcast to read its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedRow {
    /// The run.
    pub run_id: String,
    /// The file.
    pub path: String,
    /// 1-based line number.
    pub line: u64,
    /// What is wrong with the row.
    pub detail: String,
}

impl std::fmt::Display for MalformedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {}: file {} line {}: malformed row: {}",
            self.run_id, self.path, self.line, self.detail
        )
    }
}

impl std::error::Error for MalformedRow {}

fn malformed(run_id: &str, path: &str, line: u64, detail: impl std::fmt::Display) -> Error {
    Error::adapter(
        "files",
        MalformedRow {
            run_id: run_id.into(),
            path: path.into(),
            line,
            detail: detail.to_string(),
        },
    )
}

/// Decodes the whole of `bytes` (the verified content of `path`) as `format`.
pub(crate) fn decode<I: DeserializeOwned>(
    run_id: &str,
    path: &str,
    sha256: &str,
    format: Format,
    bytes: &[u8],
) -> Result<Vec<FileRow<I>>> {
    let lineage = |line: u64| Lineage {
        path: path.to_owned(),
        sha256: sha256.to_owned(),
        line,
    };
    let mut out = Vec::new();
    match format {
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(bytes);
            let headers = reader
                .headers()
                .map_err(|e| malformed(run_id, path, 1, e))?
                .clone();
            let mut record = csv::StringRecord::new();
            loop {
                match reader.read_record(&mut record) {
                    Ok(false) => break,
                    Ok(true) => {
                        let line = record.position().map_or(0, csv::Position::line);
                        let row: I = record
                            .deserialize(Some(&headers))
                            .map_err(|e| malformed(run_id, path, line, e))?;
                        out.push(FileRow {
                            record: row,
                            lineage: lineage(line),
                        });
                    }
                    Err(e) => {
                        let line = e.position().map_or(0, csv::Position::line);
                        return Err(malformed(run_id, path, line, e));
                    }
                }
            }
        }
        Format::JsonLines => {
            for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
                let n = i as u64 + 1;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let row: I =
                    serde_json::from_slice(line).map_err(|e| malformed(run_id, path, n, e))?;
                out.push(FileRow {
                    record: row,
                    lineage: lineage(n),
                });
            }
        }
        Format::Parquet => return parquet_rows(run_id, path, sha256, bytes),
    }
    Ok(out)
}

#[cfg(feature = "parquet")]
fn parquet_rows<I: DeserializeOwned>(
    run_id: &str,
    path: &str,
    sha256: &str,
    bytes: &[u8],
) -> Result<Vec<FileRow<I>>> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let bad = |line: u64, e: &dyn std::fmt::Display| malformed(run_id, path, line, e);
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(bytes))
        .and_then(|b| b.with_batch_size(8_192).build())
        .map_err(|e| bad(0, &e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad(out.len() as u64 + 1, &e))?;
        let mut json = Vec::new();
        {
            let mut w = arrow_json::LineDelimitedWriter::new(&mut json);
            w.write(&batch).map_err(|e| bad(out.len() as u64 + 1, &e))?;
            w.finish().map_err(|e| bad(out.len() as u64 + 1, &e))?;
        }
        for line in json.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let n = out.len() as u64 + 1;
            let record: I = serde_json::from_slice(line).map_err(|e| bad(n, &e))?;
            out.push(FileRow {
                record,
                lineage: Lineage {
                    path: path.to_owned(),
                    sha256: sha256.to_owned(),
                    line: n,
                },
            });
        }
    }
    Ok(out)
}

#[cfg(not(feature = "parquet"))]
fn parquet_rows<I>(run_id: &str, path: &str, _: &str, _: &[u8]) -> Result<Vec<FileRow<I>>> {
    Err(Error::Unsupported {
        run_id: run_id.into(),
        part: "files source".into(),
        what: format!("read {path}: Parquet needs the `parquet` feature of backfill-files"),
    })
}
