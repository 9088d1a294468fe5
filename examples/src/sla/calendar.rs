//! Jurisdictions and their versioned business calendars (the run's reference data).
//!
//! A business day is a weekday that is not a holiday of the case's jurisdiction. Calendars are
//! versioned: `v2025-01` is what the SLA job used when the 2025 reports were first produced;
//! `v2026-06-restated` is the corrected calendar, which adds São Paulo's Consciência Negra holiday
//! (2025-11-20) that the first version missed.

use std::collections::BTreeSet;

use chrono::{Datelike, NaiveDate, Weekday};
use chrono_tz::Tz;

/// The reference data set's name in manifests and lineage.
pub const CALENDAR_NAME: &str = "jurisdiction_calendar";
/// The calendar version the original 2025 reports used.
pub const CALENDAR_AS_RECORDED: &str = "v2025-01";
/// The corrected calendar version the restatement uses.
pub const CALENDAR_RESTATED: &str = "v2026-06-restated";

/// A jurisdiction: where a case is handled, in which time zone, with which SLA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jurisdiction {
    /// Short code, such as `US-NY`.
    pub code: &'static str,
    /// The jurisdiction's time zone: business dates are local dates.
    pub tz: Tz,
    /// Business days from opening to the SLA due date.
    pub sla_business_days: u32,
}

/// The jurisdictions the example knows, in a fixed order.
pub const JURISDICTIONS: [Jurisdiction; 5] = [
    Jurisdiction {
        code: "US-NY",
        tz: chrono_tz::America::New_York,
        sla_business_days: 20,
    },
    Jurisdiction {
        code: "US-IL",
        tz: chrono_tz::America::Chicago,
        sla_business_days: 15,
    },
    Jurisdiction {
        code: "US-CA",
        tz: chrono_tz::America::Los_Angeles,
        sla_business_days: 25,
    },
    Jurisdiction {
        code: "BR-SP",
        tz: chrono_tz::America::Sao_Paulo,
        sla_business_days: 30,
    },
    Jurisdiction {
        code: "UK",
        tz: chrono_tz::Europe::London,
        sla_business_days: 20,
    },
];

/// Looks a jurisdiction up by code.
pub fn jurisdiction(code: &str) -> Option<&'static Jurisdiction> {
    JURISDICTIONS.iter().find(|j| j.code == code)
}

const US: &[&str] = &[
    "2024-12-25",
    "2025-01-01",
    "2025-01-20",
    "2025-02-17",
    "2025-05-26",
    "2025-06-19",
    "2025-07-04",
    "2025-09-01",
    "2025-11-11",
    "2025-11-27",
    "2025-12-25",
];
const US_IL: &[&str] = &["2025-02-12"];
const US_CA: &[&str] = &["2025-03-31", "2025-11-28"];
const UK: &[&str] = &[
    "2024-12-25",
    "2024-12-26",
    "2025-01-01",
    "2025-04-18",
    "2025-04-21",
    "2025-05-05",
    "2025-05-26",
    "2025-08-25",
    "2025-12-25",
    "2025-12-26",
];
const BR_SP: &[&str] = &[
    "2024-12-25",
    "2025-01-01",
    "2025-03-03",
    "2025-03-04",
    "2025-04-18",
    "2025-04-21",
    "2025-05-01",
    "2025-06-19",
    "2025-07-09",
    "2025-12-25",
];
/// Added by the restated calendar.
const BR_SP_RESTATED: &[&str] = &["2025-11-20"];

/// One version of the business calendar of every jurisdiction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessCalendar {
    version: &'static str,
    holidays: Vec<(&'static str, BTreeSet<NaiveDate>)>,
}

impl BusinessCalendar {
    /// The calendar of a known version, or `None`.
    pub fn version(version: &str) -> Option<Self> {
        let restated = match version {
            CALENDAR_AS_RECORDED => false,
            CALENDAR_RESTATED => true,
            _ => return None,
        };
        let dates = |lists: &[&[&str]]| -> BTreeSet<NaiveDate> {
            lists
                .iter()
                .flat_map(|l| l.iter())
                .filter_map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                .collect()
        };
        let br: &[&[&str]] = if restated {
            &[BR_SP, BR_SP_RESTATED]
        } else {
            &[BR_SP]
        };
        Some(Self {
            version: if restated {
                CALENDAR_RESTATED
            } else {
                CALENDAR_AS_RECORDED
            },
            holidays: vec![
                ("US-NY", dates(&[US])),
                ("US-IL", dates(&[US, US_IL])),
                ("US-CA", dates(&[US, US_CA])),
                ("BR-SP", dates(br)),
                ("UK", dates(&[UK])),
            ],
        })
    }

    /// The version string, such as `v2026-06-restated`.
    pub fn version_name(&self) -> &'static str {
        self.version
    }

    /// Holidays of a jurisdiction (empty for an unknown one).
    pub fn holidays<'a>(&'a self, code: &'a str) -> impl Iterator<Item = NaiveDate> + 'a {
        self.holidays
            .iter()
            .filter(move |(c, _)| *c == code)
            .flat_map(|(_, h)| h.iter().copied())
    }

    /// Whether `day` is a business day in the jurisdiction.
    pub fn is_business_day(&self, code: &str, day: NaiveDate) -> bool {
        if matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
            return false;
        }
        !self
            .holidays
            .iter()
            .any(|(c, h)| *c == code && h.contains(&day))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restated_calendar_adds_one_sao_paulo_holiday() {
        let old = BusinessCalendar::version(CALENDAR_AS_RECORDED).unwrap();
        let new = BusinessCalendar::version(CALENDAR_RESTATED).unwrap();
        let d = NaiveDate::from_ymd_opt(2025, 11, 20).unwrap();
        assert!(old.is_business_day("BR-SP", d));
        assert!(!new.is_business_day("BR-SP", d));
        assert!(new.is_business_day("US-NY", d));
        assert!(BusinessCalendar::version("v1999").is_none());
    }

    #[test]
    fn weekends_and_holidays_are_not_business_days() {
        let c = BusinessCalendar::version(CALENDAR_RESTATED).unwrap();
        let sat = NaiveDate::from_ymd_opt(2025, 1, 4).unwrap();
        let new_year = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        let lincoln = NaiveDate::from_ymd_opt(2025, 2, 12).unwrap();
        assert!(!c.is_business_day("UK", sat));
        assert!(!c.is_business_day("UK", new_year));
        assert!(!c.is_business_day("US-IL", lincoln));
        assert!(c.is_business_day("US-NY", lincoln));
    }
}
