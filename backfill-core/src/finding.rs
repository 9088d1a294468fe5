//! One answer of the design checklist. A leaf module: it depends on nothing in the crate, so the
//! error type can carry findings without an import circle.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record.
    Info,
    /// Worth an answer; does not stop approval.
    Warning,
    /// The manifest cannot be approved or run.
    Blocking,
}

/// One answer to a checklist question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable code, such as `input_scope_missing`.
    pub code: String,
    /// How much it matters.
    pub severity: Severity,
    /// The checklist question it answers.
    pub question: String,
    /// The manifest field concerned, as a dotted path.
    pub field: String,
    /// What was found.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:?}] {} ({}): {}",
            self.severity, self.code, self.field, self.message
        )
    }
}
