//! The landing layout: `landing/YYYY/MM/<files>`, an optional `manifest/YYYY/MM/manifest.json`
//! per month, and `archive/<status>/...` for files the ledger has committed.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// The producer's manifest of one month: `manifest/YYYY/MM/manifest.json`.
///
/// ```json
/// {"manifest_id": "orders-2025-01", "producer_ts": "2025-02-01T03:00:00Z", "schema_version": "v3",
///  "files": [{"path": "landing/2025/01/orders-2025-01-31.csv", "business_date": "2025-01-31",
///             "size": 1234, "sha256": "9f86d0..."}]}
/// ```
///
/// When a month has a manifest, every file landed for that month must be listed in it and every
/// listed file must be there with the listed size and hash; planning refuses the month otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodManifest {
    /// The manifest's id.
    pub manifest_id: String,
    /// When the producer wrote the batch.
    #[serde(default)]
    pub producer_ts: Option<DateTime<Utc>>,
    /// Schema version of every file, unless a file says otherwise.
    #[serde(default)]
    pub schema_version: Option<String>,
    /// The files.
    pub files: Vec<ManifestFile>,
}

/// One file of a [`PeriodManifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Path relative to the landing root, such as `landing/2025/01/a.csv`.
    pub path: String,
    /// The business date the file covers.
    pub business_date: NaiveDate,
    /// Expected size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Expected lower-case hex sha256.
    #[serde(default)]
    pub sha256: Option<String>,
    /// When the producer wrote this file, if not the manifest's time.
    #[serde(default)]
    pub producer_ts: Option<DateTime<Utc>>,
    /// Schema version of this file, if not the manifest's.
    #[serde(default)]
    pub schema_version: Option<String>,
}

/// The directory holding landed files of the month of `date`: `landing/YYYY/MM`.
pub fn landing_dir(date: NaiveDate) -> String {
    format!("landing/{:04}/{:02}", date.year(), date.month())
}

/// The manifest of the month of `date`: `manifest/YYYY/MM/manifest.json`.
pub fn manifest_path(date: NaiveDate) -> String {
    format!(
        "manifest/{:04}/{:02}/manifest.json",
        date.year(),
        date.month()
    )
}

/// Where a file is archived once the ledger has committed it: `archive/<status>/<first 12 hex of
/// its sha256>/<path>` (the hash keeps two contents of one path apart).
pub fn archive_path(status: &str, sha256: &str, path: &str) -> String {
    let short = sha256.get(..12).unwrap_or(sha256);
    format!("archive/{status}/{short}/{path}")
}

/// The business date of a file not listed in a manifest: a `YYYY-MM-DD` in its file name, else
/// the first day of the `landing/YYYY/MM` month it landed in.
pub fn date_from_path(path: &str, month: NaiveDate) -> NaiveDate {
    let name = path.rsplit('/').next().unwrap_or(path);
    let bytes = name.as_bytes();
    for start in 0..bytes.len().saturating_sub(9) {
        let Some(window) = bytes.get(start..start + 10) else {
            break;
        };
        let shaped = window.iter().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                *b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
        if let (true, Some(candidate)) = (shaped, name.get(start..start + 10)) {
            if let Ok(d) = NaiveDate::parse_from_str(candidate, "%Y-%m-%d") {
                return d;
            }
        }
    }
    month
}

/// Whether a landed object is a marker rather than data (`_SUCCESS`, `.partial`): names starting
/// with `.` or `_` are not read.
pub fn is_marker(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with('.') || name.starts_with('_')
}

/// The months overlapping `[from, to_exclusive)`, as their first days.
pub fn months(from: NaiveDate, to_exclusive: NaiveDate) -> Vec<NaiveDate> {
    let mut out = Vec::new();
    let mut m = first_of_month(from);
    while m < to_exclusive {
        out.push(m);
        m = next_month(m);
    }
    out
}

/// The first day of `d`'s month.
pub fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

/// The first day of the month after `m`'s.
pub fn next_month(m: NaiveDate) -> NaiveDate {
    let (y, mo) = if m.month() == 12 {
        (m.year() + 1, 1)
    } else {
        (m.year(), m.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, mo, 1).unwrap_or(NaiveDate::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap_or_default()
    }

    #[test]
    fn a_date_in_the_file_name_wins_over_the_month() {
        let m = d(2025, 1, 1);
        assert_eq!(
            date_from_path("landing/2025/01/orders-2025-01-17.csv", m),
            d(2025, 1, 17)
        );
        assert_eq!(date_from_path("landing/2025/01/orders.csv", m), m);
        assert_eq!(date_from_path("landing/2025/01/2025-13-99.csv", m), m);
        // `%Y` alone would read "-2025-01-1" as a date of the year -2025.
        assert_eq!(
            date_from_path("landing/2025/01/orders-2025-01-10.csv", m),
            d(2025, 1, 10)
        );
    }

    #[test]
    fn months_cover_partial_ranges_and_year_ends() {
        assert_eq!(
            months(d(2024, 12, 15), d(2025, 2, 2)),
            vec![d(2024, 12, 1), d(2025, 1, 1), d(2025, 2, 1)]
        );
        assert!(months(d(2025, 1, 1), d(2025, 1, 1)).is_empty());
    }

    #[test]
    fn archive_paths_keep_contents_apart() {
        assert_eq!(
            archive_path("accepted", "abcdef0123456789", "landing/2025/01/a.csv"),
            "archive/accepted/abcdef012345/landing/2025/01/a.csv"
        );
    }
}
