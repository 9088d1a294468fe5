//! The crate's errors, sorted into the kinds the runner acts on.

use backfill_core::ErrorKind;

/// Adapter name in errors and evidence.
pub(crate) const ADAPTER: &str = "http";

/// `Result` with [`HttpError`] as the default error type.
pub type Result<T, E = HttpError> = std::result::Result<T, E>;

/// What went wrong talking to an API, naming the chunk and the request.
///
/// Converts into [`backfill_core::Error`]: 429, 408, 5xx, timeouts, lost connections and pagination
/// drift are [`ErrorKind::Transient`]; a storm of 429s longer than the retry schedule is
/// [`ErrorKind::Paused`]; the rest is [`ErrorKind::Permanent`] or [`ErrorKind::Config`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The API answered with a status the source does not retry, or retries ran out.
    #[error("chunk {chunk}: {request}: status {status}: {body}")]
    Status {
        /// The chunk (its id, or `plan`/`reconcile`).
        chunk: String,
        /// Method, path and query (never credentials).
        request: String,
        /// HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The request did not get an answer (connect error, timeout, reset).
    #[error("chunk {chunk}: {request}: {source}")]
    Transport {
        /// The chunk.
        chunk: String,
        /// Method, path and query.
        request: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// Still `401` after one token refresh.
    #[error("chunk {chunk}: {request}: unauthorized after a token refresh")]
    Unauthorized {
        /// The chunk.
        chunk: String,
        /// Method, path and query.
        request: String,
    },
    /// More consecutive `429`s than the retry schedule allows: the run should pause, not fail.
    #[error("chunk {chunk}: {request}: {count} consecutive 429 responses outlasted the schedule of {limit}")]
    Storm {
        /// The chunk.
        chunk: String,
        /// Method, path and query.
        request: String,
        /// 429s in a row.
        count: u32,
        /// How many the schedule allows.
        limit: u32,
    },
    /// A response that is not the JSON the endpoint is configured for.
    #[error("chunk {chunk}: {request}: response does not parse: {detail}")]
    Parse {
        /// The chunk.
        chunk: String,
        /// Method, path and query.
        request: String,
        /// What is wrong.
        detail: String,
    },
    /// The listing changed while it was paged (totals moved, a row came twice, the first page
    /// changed): the capture is thrown away and the chunk read again from a fresh capture.
    #[error("chunk {chunk}: pagination drift: {detail}")]
    Drift {
        /// The chunk.
        chunk: String,
        /// What moved.
        detail: String,
    },
    /// The token endpoint failed.
    #[error("token endpoint {url}: {detail}")]
    Token {
        /// Token endpoint.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The capture store failed or holds something unreadable.
    #[error("capture {key}: {detail}")]
    Capture {
        /// The capture or blob concerned.
        key: String,
        /// What went wrong.
        detail: String,
    },
    /// The source's configuration cannot serve this manifest or chunk.
    #[error("{0}")]
    Config(String),
}

impl HttpError {
    /// What the runner should do about this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Status { status, .. } if is_retryable_status(*status) => ErrorKind::Transient,
            Self::Transport { .. } | Self::Drift { .. } => ErrorKind::Transient,
            Self::Token { .. } => ErrorKind::Transient,
            Self::Storm { .. } => ErrorKind::Paused,
            Self::Config(_) => ErrorKind::Config,
            Self::Status { .. }
            | Self::Unauthorized { .. }
            | Self::Parse { .. }
            | Self::Capture { .. } => ErrorKind::Permanent,
        }
    }

    pub(crate) fn capture(key: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self::Capture {
            key: key.into(),
            detail: detail.to_string(),
        }
    }
}

/// Statuses that may pass: 408, 429, 5xx.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// The one place a storm becomes a pause request to the runner.
pub(crate) fn storm_pause(reason: String) -> backfill_core::Error {
    backfill_core::Error::paused(ADAPTER, reason)
}

impl From<HttpError> for backfill_core::Error {
    fn from(e: HttpError) -> Self {
        match e.kind() {
            ErrorKind::Paused => storm_pause(e.to_string()),
            ErrorKind::Transient => Self::transient(ADAPTER, e),
            _ => Self::adapter(ADAPTER, e),
        }
    }
}
