//! A file landing area as a backfill source.
//!
//! Files land under `landing/YYYY/MM/`, optionally with a producer manifest per month at
//! `manifest/YYYY/MM/manifest.json` ([`PeriodManifest`]). [`FileSource`] plans a manifest's
//! business-date range into chunks whose source state is the sorted, hashed file list
//! ([`FilesState`]); reading verifies every file's size and sha256 before decoding a row (CSV or
//! JSON lines; Parquet with the `parquet` feature) into [`FileRow`]s that carry their [`Lineage`].
//!
//! The [`ImportLedger`] remembers imported contents by sha256 (the path an attribute); at planning
//! the manifest's `source.duplicate_files` policy [`decide`]s what a re-landed or copied file is.
//! After the run is published, [`Importer::commit`] writes the decisions to the ledger and only
//! then archives the files.
//!
//! | the file | `ignore` | `reprocess` | `correction` | `reject` |
//! |---|---|---|---|---|
//! | new path, new content | process | process | process | process |
//! | same path, same content | skip | skip | skip | skip |
//! | same path, new content | skip | reprocess | correction (supersedes) | reject |
//! | known content, new path | skip | reprocess | skip | reject |
//!
//! The landing area is a [`Landing`]: a local directory ([`LocalLanding`]), or any object store
//! with the `object-store` feature (`ObjectStoreLanding`).
//!
//! With the `sql` feature, backfill-sql's `FileLedger` is an
//! [`ImportLedger`] (SQLite, PostgreSQL, MariaDB).

mod decode;
mod import;
mod landing;
pub mod layout;
mod ledger;
#[cfg(feature = "object-store")]
mod object;
mod source;
#[cfg(feature = "sql")]
mod sql;
mod state;

pub use decode::{FileRow, Format, Lineage, MalformedRow};
pub use import::{ImportReport, Importer};
pub use landing::{LandedObject, Landing, LocalLanding};
pub use layout::{ManifestFile, PeriodManifest};
pub use ledger::{decide, ImportLedger, ImportRecord, ImportStatus, MemoryLedger};
#[cfg(feature = "object-store")]
pub use object::ObjectStoreLanding;
pub use source::{FileSource, Period};
pub use state::{snapshot_of, Decision, FileEntry, FilesState};
