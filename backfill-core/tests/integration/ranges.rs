//! Range containment is exact across date and timestamp bounds: dates are whole UTC days.

use backfill_core::manifest::InputRange;
use chrono::{NaiveDate, TimeZone, Utc};

fn dates(a: (i32, u32, u32), b: (i32, u32, u32)) -> InputRange {
    let d = |(y, m, d): (i32, u32, u32)| NaiveDate::from_ymd_opt(y, m, d).unwrap();
    InputRange::Dates {
        from: d(a),
        to_exclusive: d(b),
    }
}

fn instants(a: (u32, u32), b: (u32, u32)) -> InputRange {
    // (day of January 2025, hour)
    let t = |(d, h): (u32, u32)| Utc.with_ymd_and_hms(2025, 1, d, h, 0, 0).unwrap();
    InputRange::Timestamps {
        from: t(a),
        to_exclusive: t(b),
    }
}

#[test]
fn timestamps_inside_dates_must_end_by_the_excluded_midnight() {
    let jan_1_to_3 = dates((2025, 1, 1), (2025, 1, 3));
    assert_eq!(jan_1_to_3.contains(&instants((1, 0), (3, 0))), Some(true));
    // Five hours into the excluded day is outside, although its date equals `to_exclusive`.
    assert_eq!(jan_1_to_3.contains(&instants((1, 0), (3, 5))), Some(false));
    assert_eq!(jan_1_to_3.contains(&instants((1, 6), (2, 23))), Some(true));
}

#[test]
fn dates_inside_timestamps_must_fit_whole_days() {
    let from_noon = instants((1, 12), (5, 0));
    // January 1 starts before noon: not inside.
    assert_eq!(
        from_noon.contains(&dates((2025, 1, 1), (2025, 1, 3))),
        Some(false)
    );
    assert_eq!(
        from_noon.contains(&dates((2025, 1, 2), (2025, 1, 5))),
        Some(true)
    );
    assert_eq!(
        from_noon.contains_date(NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()),
        Some(false)
    );
    assert_eq!(
        from_noon.contains_date(NaiveDate::from_ymd_opt(2025, 1, 4).unwrap()),
        Some(true)
    );
    let to_noon = instants((1, 0), (4, 12));
    // January 4 ends after noon: not inside.
    assert_eq!(
        to_noon.contains_date(NaiveDate::from_ymd_opt(2025, 1, 4).unwrap()),
        Some(false)
    );
    assert_eq!(
        to_noon.contains_date(NaiveDate::from_ymd_opt(2025, 1, 3).unwrap()),
        Some(true)
    );
}
