//! Input and publish ranges: always half-open, `[from, to_exclusive)`.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An exact offset range on one log partition.
///
/// Also read with the seed's names: `{"partition": 0, "fromOffset": 9012331,
/// "toOffsetExclusive": 9120000}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OffsetRange {
    /// Log partition number.
    pub partition: i32,
    /// First offset read.
    #[serde(alias = "fromOffset", alias = "from_offset")]
    pub from: i64,
    /// First offset not read.
    #[serde(
        alias = "toExclusive",
        alias = "toOffsetExclusive",
        alias = "to_offset_exclusive"
    )]
    pub to_exclusive: i64,
}

/// A half-open range of input (or of publishable output).
///
/// Written as an object tagged by `type`. Where a manifest holds a range (`source.range`,
/// `publish_range`) the seed's shorthands are read too: `{"eventDateFrom": "2025-01-01",
/// "eventDateTo": "2025-12-31"}` is the dates range `[2025-01-01, 2026-01-01)` (the seed's end date
/// is included), and a bare list of [`OffsetRange`]s is an `offsets` range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum InputRange {
    /// Business or event dates.
    Dates {
        /// First date included.
        from: NaiveDate,
        /// First date excluded.
        #[serde(alias = "toExclusive")]
        to_exclusive: NaiveDate,
    },
    /// Instants.
    Timestamps {
        /// First instant included.
        from: DateTime<Utc>,
        /// First instant excluded.
        #[serde(alias = "toExclusive")]
        to_exclusive: DateTime<Utc>,
    },
    /// Exact offsets per log partition.
    Offsets {
        /// One range per partition.
        partitions: Vec<OffsetRange>,
    },
    /// Lexicographic key range (ids, tenants).
    Keys {
        /// First key included.
        from: String,
        /// First key excluded.
        #[serde(alias = "toExclusive")]
        to_exclusive: String,
    },
}

impl InputRange {
    /// Whether the range contains nothing (or is inverted).
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Dates { from, to_exclusive } => from >= to_exclusive,
            Self::Timestamps { from, to_exclusive } => from >= to_exclusive,
            Self::Offsets { partitions } => partitions.iter().all(|p| p.from >= p.to_exclusive),
            Self::Keys { from, to_exclusive } => from >= to_exclusive,
        }
    }

    /// Whether `inner` lies entirely inside `self`. `None` when the two kinds cannot be compared.
    pub fn contains(&self, inner: &Self) -> Option<bool> {
        match (self, inner) {
            (
                Self::Dates { from, to_exclusive },
                Self::Dates {
                    from: f,
                    to_exclusive: t,
                },
            ) => Some(f >= from && t <= to_exclusive),
            (
                Self::Timestamps { from, to_exclusive },
                Self::Timestamps {
                    from: f,
                    to_exclusive: t,
                },
            ) => Some(f >= from && t <= to_exclusive),
            // Dates are whole UTC days: [from 00:00, to_exclusive 00:00).
            (
                Self::Dates { from, to_exclusive },
                Self::Timestamps {
                    from: f,
                    to_exclusive: t,
                },
            ) => Some(*f >= midnight(*from) && *t <= midnight(*to_exclusive)),
            (
                Self::Timestamps { from, to_exclusive },
                Self::Dates {
                    from: f,
                    to_exclusive: t,
                },
            ) => Some(midnight(*f) >= *from && midnight(*t) <= *to_exclusive),
            (
                Self::Keys { from, to_exclusive },
                Self::Keys {
                    from: f,
                    to_exclusive: t,
                },
            ) => Some(f >= from && t <= to_exclusive),
            (Self::Offsets { partitions }, Self::Offsets { partitions: inner }) => {
                Some(inner.iter().all(|i| {
                    partitions.iter().any(|o| {
                        o.partition == i.partition
                            && i.from >= o.from
                            && i.to_exclusive <= o.to_exclusive
                    })
                }))
            }
            _ => None,
        }
    }

    /// Whether a date lies inside a date range (`None` for other kinds).
    pub fn contains_date(&self, date: NaiveDate) -> Option<bool> {
        match self {
            Self::Dates { from, to_exclusive } => Some(date >= *from && date < *to_exclusive),
            // The whole day [date 00:00, next day 00:00) must lie inside the instants.
            Self::Timestamps { from, to_exclusive } => Some(
                midnight(date) >= *from
                    && date
                        .succ_opt()
                        .is_some_and(|next| midnight(next) <= *to_exclusive),
            ),
            _ => None,
        }
    }
}

/// The first instant of a UTC day.
fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(chrono::NaiveTime::MIN).and_utc()
}

impl fmt::Display for InputRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dates { from, to_exclusive } => write!(f, "dates[{from}, {to_exclusive})"),
            Self::Timestamps { from, to_exclusive } => {
                write!(
                    f,
                    "time[{}, {})",
                    from.to_rfc3339(),
                    to_exclusive.to_rfc3339()
                )
            }
            Self::Offsets { partitions } => {
                f.write_str("offsets")?;
                for p in partitions {
                    write!(f, "[{}:{}..{})", p.partition, p.from, p.to_exclusive)?;
                }
                Ok(())
            }
            Self::Keys { from, to_exclusive } => write!(f, "keys[{from}, {to_exclusive})"),
        }
    }
}
