//! Privacy before replay: a source's data may be old enough to be out of retention, collected for
//! another purpose, or about people who asked to be forgotten. Historical availability is not
//! permission to replay.
//!
//! Three parts work together:
//!
//! 1. **The manifest answers the questions.** A source holding personal data says
//!    `privacy.personal_data: true` and then must answer `purpose`, `retained_from`,
//!    `target_classification`, `masked_fields`, `access_role` and `forgotten_registry`; an
//!    unanswered one is a blocking finding (`privacy_question_unanswered`, naming the field), so
//!    the manifest cannot be approved. An input range that starts before `retained_from` is
//!    blocking too (`privacy_retention_exceeded`).
//! 2. **The source owner states a [`PrivacyPolicy`]**: whether the source holds personal data,
//!    its legal retention window, the purposes it may be processed for, its classification (the
//!    target must be at least as strict), the fields that must be masked and the roles that may
//!    read it. [`PrivacyPolicy::findings`] compares a manifest with it.
//! 3. **A [`Withheld`] source enforces both.** It wraps any [`BackfillSource`](crate::source::BackfillSource):
//!    `plan` refuses a manifest the policy finds fault with ([`Error::BlockingFindings`](crate::Error),
//!    each finding naming its field) or that names another deletion registry; `read` refuses a
//!    chunk that fell out of the retention window since planning, and drops every record whose
//!    subject the [`ForgottenSubjects`] registry names, looking subjects up once per batch. The
//!    count withheld is the chunk's evidence (`{"withheld": n, "registry": …,
//!    "registry_version": …}`, merged into the inner source's), and is added to the
//!    `backfill_withheld_records_total` counter.
//!
//! # When the registry changes
//! A registry only grows: a forgotten subject stays forgotten. Every read consults the registry
//! as it is then (never the state at planning time), so a re-read, a retry or a resume on another
//! worker never brings back a subject forgotten in between. A read notes the registry's version
//! when it starts and again when it ends; if a subject was forgotten meanwhile, the read fails as
//! transient (the runner retries the chunk), so the rows a chunk staged and its withheld count
//! always stand on one registry version, which the evidence records. The same chunk read against
//! the same registry version withholds the same records.
//!
//! ```
//! use std::sync::Arc;
//! use backfill_core::memory::MemorySource;
//! use backfill_core::privacy::{DataClass, MemoryForgotten, PrivacyPolicy, Withheld};
//!
//! #[derive(Clone)]
//! struct Visit { day: chrono::NaiveDate, patient: String }
//!
//! let registry = Arc::new(MemoryForgotten::new("erasure-requests"));
//! registry.forget("patient-17");
//! let policy = PrivacyPolicy::personal_data()
//!     .retention_days(3 * 365)
//!     .purposes(["clinical reporting"])
//!     .classification(DataClass::Restricted)
//!     .must_mask(["patient_name"])
//!     .readers(["reporting-etl"]);
//! let visits: Vec<Visit> = Vec::new();
//! let source = Withheld::new(
//!     MemorySource::by_date(visits, |v: &Visit| v.day),
//!     policy,
//!     registry,
//!     |v: &Visit| Some(v.patient.clone()),
//! );
//! # let _ = source;
//! ```

mod registry;
mod withheld;

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Duration, NaiveTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::finding::{Finding, Severity};
use crate::manifest::{InputRange, RunManifest};

pub use registry::{ForgottenSubjects, MemoryForgotten};
pub use withheld::{PrivacyError, SubjectOf, Withheld, WITHHELD_RECORDS_TOTAL};

/// The checklist question privacy findings answer.
pub const QUESTION: &str = "Is privacy/retention policy satisfied?";

/// How sensitive data is, from least to most: a target must be classified at least as strictly
/// as the data written into it. Read in upper case too (`RESTRICTED`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DataClass {
    /// Anyone may read it.
    #[serde(alias = "PUBLIC")]
    Public,
    /// Inside the organisation.
    #[serde(alias = "INTERNAL")]
    Internal,
    /// Named teams only.
    #[serde(alias = "CONFIDENTIAL")]
    Confidential,
    /// Personal or regulated data under the strictest controls.
    #[serde(alias = "RESTRICTED")]
    Restricted,
}

impl fmt::Display for DataClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Public => "public",
            Self::Internal => "internal",
            Self::Confidential => "confidential",
            Self::Restricted => "restricted",
        })
    }
}

/// What the owner of a source allows a replay of it to do. Empty sets allow anything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrivacyPolicy {
    /// Whether the source holds personal data (then the manifest must say so and answer every
    /// privacy question).
    pub personal_data: bool,
    /// The legal retention window: input older than this (from now) may not be processed.
    pub retention: Option<Duration>,
    /// The purposes the data may be processed for.
    pub purposes: BTreeSet<String>,
    /// The source's classification; the target's must be at least as strict.
    pub classification: Option<DataClass>,
    /// Fields the transform must mask before they reach the target.
    pub must_mask: BTreeSet<String>,
    /// Roles that may read the source.
    pub readers: BTreeSet<String>,
}

impl PrivacyPolicy {
    /// A policy for a source without personal data; add constraints with the builder methods.
    pub fn new() -> Self {
        Self::default()
    }

    /// A policy for a source holding personal data, classified [`DataClass::Restricted`].
    pub fn personal_data() -> Self {
        Self {
            personal_data: true,
            classification: Some(DataClass::Restricted),
            ..Self::default()
        }
    }

    /// Sets the retention window in days.
    pub fn retention_days(mut self, days: u32) -> Self {
        self.retention = Some(Duration::days(i64::from(days)));
        self
    }

    /// Sets the purposes allowed.
    pub fn purposes<S: Into<String>>(mut self, purposes: impl IntoIterator<Item = S>) -> Self {
        self.purposes = purposes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the source's classification.
    pub fn classification(mut self, class: DataClass) -> Self {
        self.classification = Some(class);
        self
    }

    /// Sets the fields that must be masked.
    pub fn must_mask<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.must_mask = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the roles that may read the source.
    pub fn readers<S: Into<String>>(mut self, roles: impl IntoIterator<Item = S>) -> Self {
        self.readers = roles.into_iter().map(Into::into).collect();
        self
    }

    /// The oldest instant the retention window allows at `now`, if there is a window.
    pub fn retained_from(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.retention.map(|r| now - r)
    }

    /// Whether `range` lies inside the retention window at `now`: `Ok(())`, or the reason it does
    /// not (a range that starts too early, or one without dates while a window is set).
    pub fn check_range(&self, range: &InputRange, now: DateTime<Utc>) -> Result<(), String> {
        let Some(cutoff) = self.retained_from(now) else {
            return Ok(());
        };
        let starts = match range {
            InputRange::Dates { from, .. } => from.and_time(NaiveTime::MIN).and_utc(),
            InputRange::Timestamps { from, .. } => *from,
            _ => {
                return Err(format!(
                    "range {range} has no dates, so the retention window (from {cutoff}) cannot be checked"
                ))
            }
        };
        if starts < cutoff {
            return Err(format!(
                "range {range} starts before {cutoff}, the oldest input the retention window allows"
            ));
        }
        Ok(())
    }

    /// What is wrong with `manifest` under this policy at `now`, as blocking findings naming the
    /// manifest field concerned. Empty when the manifest may be replayed.
    pub fn findings(&self, manifest: &RunManifest, now: DateTime<Utc>) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut push = |code: &str, field: &str, message: String| {
            out.push(Finding {
                code: code.into(),
                severity: Severity::Blocking,
                question: QUESTION.into(),
                field: field.into(),
                message,
            })
        };
        let spec = manifest.privacy.clone().unwrap_or_default();
        if self.personal_data {
            if manifest.privacy.is_none() {
                push(
                    "privacy_unanswered",
                    "privacy",
                    "the source holds personal data and the manifest has no privacy section".into(),
                );
            } else if !spec.declares_personal_data() {
                push(
                    "privacy_personal_data_undeclared",
                    "privacy.personal_data",
                    "the source holds personal data; the manifest must say so".into(),
                );
            }
            for field in spec.unanswered() {
                push(
                    "privacy_question_unanswered",
                    &format!("privacy.{field}"),
                    format!("the source holds personal data: `privacy.{field}` must be answered"),
                );
            }
        }
        if !self.purposes.is_empty()
            && !spec.purpose.trim().is_empty()
            && !self.purposes.contains(spec.purpose.trim())
        {
            push(
                "privacy_purpose_not_allowed",
                "privacy.purpose",
                format!(
                    "purpose `{}` is not one the source may be processed for ({})",
                    spec.purpose,
                    list(&self.purposes)
                ),
            );
        }
        if let Some(range) = &manifest.source.range {
            if let Err(why) = self.check_range(range, now) {
                push("privacy_retention_exceeded", "source.range", why);
            }
        }
        if let (Some(source), Some(target)) = (self.classification, spec.target_classification) {
            if target < source {
                push(
                    "privacy_target_classification",
                    "privacy.target_classification",
                    format!("a {target} target cannot receive {source} data"),
                );
            }
        }
        let masked: BTreeSet<&str> = spec
            .masked_fields
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let unmasked: BTreeSet<String> = self
            .must_mask
            .iter()
            .filter(|f| !masked.contains(f.as_str()))
            .cloned()
            .collect();
        if !unmasked.is_empty() {
            push(
                "privacy_masking_missing",
                "privacy.masked_fields",
                format!("the source requires masking {}", list(&unmasked)),
            );
        }
        if !self.readers.is_empty() {
            let role = spec.access_role.as_deref().unwrap_or("").trim();
            if !self.readers.contains(role) {
                push(
                    "privacy_access_denied",
                    "privacy.access_role",
                    format!(
                        "role `{role}` may not read the source (readers: {})",
                        list(&self.readers)
                    ),
                );
            }
        }
        out
    }
}

fn list(set: &BTreeSet<String>) -> String {
    set.iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
