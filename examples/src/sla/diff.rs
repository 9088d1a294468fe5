//! The diff of a restatement against the accepted output: per month, per jurisdiction, and every
//! changed case-month in a CSV file the data owner can open.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use async_trait::async_trait;
use backfill_core::validate::{ValidationContext, ValidationOutcome, Validator};
use chrono::NaiveDate;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::transform::CaseSlaMonth;

/// Old against new for one month.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthDiff {
    /// Partition.
    pub month: String,
    /// Rows in the accepted output.
    pub old_rows: u64,
    /// Rows staged by this run.
    pub new_rows: u64,
    /// Breaches in the month, accepted output.
    pub old_breaches: u64,
    /// Breaches in the month, this run.
    pub new_breaches: u64,
    /// Case-months whose due date, status or breach changed (or that appear or disappear).
    pub changed_rows: u64,
}

/// Breaches by jurisdiction and month, old against new.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JurisdictionDiff {
    /// Jurisdiction code.
    pub jurisdiction: String,
    /// Partition.
    pub month: String,
    /// Breaches in the accepted output.
    pub old_breaches: u64,
    /// Breaches in this run.
    pub new_breaches: u64,
}

/// The diff of a restatement, as kept in evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaDiff {
    /// Per month.
    pub months: Vec<MonthDiff>,
    /// Per jurisdiction and month.
    pub by_jurisdiction: Vec<JurisdictionDiff>,
    /// A few changed cases: `month/case: old due -> new due`.
    pub samples: Vec<String>,
    /// The CSV file with every changed case-month, and its sha256.
    #[serde(default)]
    pub csv: Option<String>,
}

/// What identifies a row's business content across runs.
type Facts = (Option<NaiveDate>, String, bool, bool);

fn facts(r: &CaseSlaMonth) -> Facts {
    (r.due_on, r.status.clone(), r.breached, r.breached_in_month)
}

/// Computes the diff of the staged rows against the accepted output, per month and per jurisdiction,
/// and writes every changed case-month to a CSV file when given a path. Always passes: it is evidence
/// for the owner, and the thresholds live in the business-delta check.
#[derive(Debug, Default)]
pub struct DiffAgainstAccepted {
    csv: Option<PathBuf>,
}

impl DiffAgainstAccepted {
    /// The validator's name; its outcome's details deserialize into [`SlaDiff`].
    pub const NAME: &'static str = "diff_against_accepted";

    /// A diff that also writes every changed case-month to `path` (its sha256 goes into evidence).
    pub fn writing_csv(path: impl Into<PathBuf>) -> Self {
        Self {
            csv: Some(path.into()),
        }
    }
}

fn show(f: Option<&(String, Facts)>) -> [String; 4] {
    match f {
        None => ["-".into(), "-".into(), "-".into(), "-".into()],
        Some((_, (due, status, breached, in_month))) => [
            due.map_or("none".into(), |d| d.to_string()),
            status.clone(),
            breached.to_string(),
            in_month.to_string(),
        ],
    }
}

const CSV_HEADER: &str = "month,case_id,jurisdiction,change,old_due_on,new_due_on,old_status,new_status,old_breached,new_breached,old_breached_in_month,new_breached_in_month\n";

#[async_trait]
impl Validator<CaseSlaMonth> for DiffAgainstAccepted {
    fn name(&self) -> &str {
        Self::NAME
    }

    async fn validate(
        &self,
        cx: &ValidationContext<'_, CaseSlaMonth>,
    ) -> backfill_core::Result<ValidationOutcome> {
        type Side = BTreeMap<(String, String), (String, Facts)>;
        let mut new: Side = BTreeMap::new();
        cx.for_each_staged(|r| {
            new.insert(
                (r.month.clone(), r.case_id.clone()),
                (r.jurisdiction.clone(), facts(r)),
            );
        })
        .await?;
        let mut old: Side = BTreeMap::new();
        for p in cx.partitions() {
            let mut rows = cx.current.read_current(&p);
            while let Some(batch) = rows.try_next().await? {
                for r in &batch {
                    old.insert(
                        (r.month.clone(), r.case_id.clone()),
                        (r.jurisdiction.clone(), facts(r)),
                    );
                }
            }
        }
        let mut months = BTreeMap::<String, MonthDiff>::new();
        let mut by_j = BTreeMap::<(String, String), JurisdictionDiff>::new();
        let mut samples = Vec::new();
        let mut csv = String::from(CSV_HEADER);
        let keys: BTreeSet<_> = old.keys().chain(new.keys()).cloned().collect();
        for key in keys {
            let (month, case) = &key;
            let m = months.entry(month.clone()).or_insert_with(|| MonthDiff {
                month: month.clone(),
                ..MonthDiff::default()
            });
            let (o, n) = (old.get(&key), new.get(&key));
            let j = o.or(n).map(|(j, _)| j.clone()).unwrap_or_default();
            let jd = by_j
                .entry((j.clone(), month.clone()))
                .or_insert_with(|| JurisdictionDiff {
                    jurisdiction: j,
                    month: month.clone(),
                    ..JurisdictionDiff::default()
                });
            if let Some((_, f)) = o {
                m.old_rows += 1;
                m.old_breaches += u64::from(f.3);
                jd.old_breaches += u64::from(f.3);
            }
            if let Some((_, f)) = n {
                m.new_rows += 1;
                m.new_breaches += u64::from(f.3);
                jd.new_breaches += u64::from(f.3);
            }
            if o.map(|x| &x.1) != n.map(|x| &x.1) {
                m.changed_rows += 1;
                let change = match (o, n) {
                    (None, _) => "added",
                    (_, None) => "removed",
                    _ => "changed",
                };
                let ([od, os, ob, om], [nd, ns, nb, nm]) = (show(o), show(n));
                let jur = o.or(n).map_or("", |(j, _)| j.as_str());
                let _ = writeln!(
                    csv,
                    "{month},{case},{jur},{change},{od},{nd},{os},{ns},{ob},{nb},{om},{nm}"
                );
                if samples.len() < 8 {
                    let due = |x: Option<&(String, Facts)>| {
                        x.map_or("-".to_owned(), |(_, f)| {
                            f.0.map_or("none".to_owned(), |d| d.to_string())
                        })
                    };
                    samples.push(format!("{month}/{case}: due {} -> {}", due(o), due(n)));
                }
            }
        }
        let mut diff = SlaDiff {
            months: months.into_values().collect(),
            by_jurisdiction: by_j.into_values().collect(),
            samples,
            csv: None,
        };
        if let Some(path) = &self.csv {
            std::fs::write(path, &csv).map_err(|e| backfill_core::Error::Adapter {
                adapter: "sla-diff",
                source: format!("run {}: writing {}: {e}", cx.run_id, path.display()).into(),
            })?;
            let sha = hex::encode(Sha256::digest(csv.as_bytes()));
            diff.csv = Some(format!("{} sha256:{sha}", path.display()));
        }
        let changed: u64 = diff.months.iter().map(|m| m.changed_rows).sum();
        let touched = diff.months.iter().filter(|m| m.changed_rows > 0).count();
        Ok(ValidationOutcome::pass(
            self.name(),
            format!("{changed} case-months changed in {touched} months"),
            serde_json::to_value(&diff).unwrap_or_default(),
        ))
    }
}
