//! Declared rates: what the operator says a record, a gigabyte and a run cost and how fast they go.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// A non-negative, finite number (records per second, US dollars per unit).
///
/// Refused when negative, infinite or NaN, so two rates compare as equal numbers and the
/// manifest's digest is stable (written in `serde_json`'s shortest round-trip form).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Default)]
#[serde(transparent)]
pub struct Rate(f64);

// A `Rate` is never NaN (refused by `new` and by deserialization), so equality is total.
impl Eq for Rate {}

impl Rate {
    /// A rate, or `None` when `value` is negative, infinite or NaN.
    pub fn new(value: f64) -> Option<Self> {
        (value.is_finite() && value >= 0.0).then_some(Self(value))
    }

    /// The number.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        Self::new(v).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "a rate must be a finite number of at least 0, not {v}"
            ))
        })
    }
}

impl JsonSchema for Rate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Rate".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "number",
            "minimum": 0,
            "description": "A finite number of at least 0."
        })
    }
}

/// Rates the operator declares for this pipeline (`safety.cost_model`): the estimate before
/// approval derives duration and cost from them, and the runner the cost of the records read so
/// far (`safety.max_cost_usd` holds against both).
///
/// Every rate is optional; what is not declared is not estimated. Records are input records (as
/// the source counts them), bytes are input bytes (as the source sizes them), a GB is 10^9 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CostModel {
    /// Input records one chunk worker reads, transforms and stages per second.
    #[serde(alias = "rowsPerSecond", skip_serializing_if = "Option::is_none")]
    pub rows_per_second: Option<Rate>,
    /// Input bytes one chunk worker reads per second.
    #[serde(alias = "bytesPerSecond", skip_serializing_if = "Option::is_none")]
    pub bytes_per_second: Option<Rate>,
    /// US dollars per million input records (compute, source read load).
    #[serde(alias = "usdPerMillionRows", skip_serializing_if = "Option::is_none")]
    pub usd_per_million_rows: Option<Rate>,
    /// US dollars per GB of input read (egress, scanned bytes).
    #[serde(alias = "usdPerGb", skip_serializing_if = "Option::is_none")]
    pub usd_per_gb: Option<Rate>,
    /// US dollars the run costs whatever its size (clusters started, a warehouse resumed).
    #[serde(alias = "usdFixed", skip_serializing_if = "Option::is_none")]
    pub usd_fixed: Option<Rate>,
}

impl CostModel {
    /// Whether any price is declared (a cost can be estimated).
    pub fn prices(&self) -> bool {
        self.usd_per_million_rows.is_some() || self.usd_per_gb.is_some() || self.usd_fixed.is_some()
    }

    /// Cost in US dollars of `records` input records and `bytes` input bytes, fixed part included.
    pub fn cost(&self, records: u64, bytes: u64) -> f64 {
        let r = |x: Option<Rate>| x.map_or(0.0, Rate::get);
        r(self.usd_fixed)
            + records as f64 / 1e6 * r(self.usd_per_million_rows)
            + bytes as f64 / 1e9 * r(self.usd_per_gb)
    }
}

/// Whether a cost (US dollars) is over a ceiling in whole dollars, and the cost rounded up to the
/// whole dollars [`Error::LimitExceeded`](crate::Error::LimitExceeded) reports.
pub(crate) fn over(cost: f64, max_usd: u64) -> Option<u64> {
    (cost > max_usd as f64).then(|| {
        let up = cost.ceil();
        if up >= u64::MAX as f64 {
            u64::MAX
        } else {
            (up as u64).max(max_usd.saturating_add(1))
        }
    })
}
