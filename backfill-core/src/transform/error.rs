//! A transform's failure. A leaf module: it depends on nothing in the crate.

/// A transform's failure on one input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}{}", input.as_ref().map(|i| format!(" (input {i})")).unwrap_or_default())]
pub struct TransformError {
    /// What went wrong.
    pub message: String,
    /// A key naming the input (never the whole record: it may hold personal data).
    pub input: Option<String>,
    /// Whether retrying may succeed. Pure transforms are rarely retryable.
    pub retryable: bool,
}

impl TransformError {
    /// A permanent failure.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            input: None,
            retryable: false,
        }
    }

    /// Names the input that failed.
    pub fn for_input(mut self, key: impl Into<String>) -> Self {
        self.input = Some(key.into());
        self
    }
}
