//! [`HttpSourceBuilder`]: how an [`HttpSource`] is put together.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::auth::TokenProvider;
use crate::capture::{CaptureStore, MemoryCaptureStore};
use crate::client::{Client, RetryPolicy, Vendor};
use crate::error::{HttpError, Result};
use crate::scan::Scan;
use crate::source::{HttpSource, Inner, Shape};

/// The planning clock.
pub(crate) type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Builds an [`HttpSource`].
///
/// Defaults fit a typical JSON API (and [`backfill_testkit::http`]'s scripted one): records under
/// `/data`, the listing's total under `/total`, key field `id`, pages of 100 by `offset` and
/// `limit`, five requests a second, captures in memory.
///
/// ```
/// use backfill_http::{HttpSource, RetryPolicy, Scan, Vendor};
///
/// # #[allow(dead_code)]
/// #[derive(Debug, serde::Deserialize)]
/// struct Item { id: u64, name: String }
///
/// let source = HttpSource::<Item>::builder("items-api", "http://127.0.0.1:8080", "/items", Scan::id_range(1_000))
///     .vendor(Vendor::new("acme", 10))
///     .retry(RetryPolicy::default().with_storm_limit(20))
///     .page_size(50)
///     .build()
///     .expect("valid configuration");
/// # let _ = source;
/// ```
///
/// [`backfill_testkit::http`]: https://docs.rs/backfill-testkit
pub struct HttpSourceBuilder<I> {
    name: String,
    base: String,
    shape: Shape,
    vendor: Option<Vendor>,
    retry: RetryPolicy,
    auth: Option<Arc<dyn TokenProvider>>,
    store: Option<Arc<dyn CaptureStore>>,
    keep_headers: Vec<String>,
    clock: Clock,
    http: Option<reqwest::Client>,
    _records: PhantomData<fn() -> I>,
}

impl<I> fmt::Debug for HttpSourceBuilder<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSourceBuilder")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

impl<I> HttpSource<I> {
    /// A builder for a source called `name` reading `base` + `path` (for a snapshot scan the path
    /// names the export as `{export_id}`, such as `/exports/{export_id}`).
    pub fn builder(
        name: impl Into<String>,
        base: impl Into<String>,
        path: impl Into<String>,
        scan: Scan,
    ) -> HttpSourceBuilder<I> {
        HttpSourceBuilder {
            name: name.into(),
            base: base.into(),
            shape: Shape {
                path: path.into(),
                scan,
                offset_param: "offset".into(),
                limit_param: "limit".into(),
                page_size: 100,
                records_at: "/data".into(),
                total_at: Some("/total".into()),
                key_field: "id".into(),
                recheck_first_page: false,
                extra_query: Vec::new(),
                max_captures: 3,
                max_pages: 100_000,
            },
            vendor: None,
            retry: RetryPolicy::default(),
            auth: None,
            store: None,
            keep_headers: vec!["content-type".into(), "etag".into(), "last-modified".into()],
            clock: Arc::new(Utc::now),
            http: None,
            _records: PhantomData,
        }
    }
}

impl<I> HttpSourceBuilder<I> {
    /// The vendor whose rate limit the source shares (default: its own, five requests a second).
    pub fn vendor(mut self, vendor: Vendor) -> Self {
        self.vendor = Some(vendor);
        self
    }

    /// How requests are retried.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Bearer tokens for every request.
    pub fn auth(mut self, auth: Arc<dyn TokenProvider>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Where captures live (default: in memory, so replays last as long as the process).
    pub fn capture_store(mut self, store: Arc<dyn CaptureStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Records a page asks for (`limit`).
    pub fn page_size(mut self, rows: u32) -> Self {
        self.shape.page_size = rows.max(1);
        self
    }

    /// The paging parameters (default `offset`, `limit`).
    pub fn offset_params(mut self, offset: impl Into<String>, limit: impl Into<String>) -> Self {
        self.shape.offset_param = offset.into();
        self.shape.limit_param = limit.into();
        self
    }

    /// JSON pointer of the records array in a page (default `/data`).
    pub fn records_at(mut self, pointer: impl Into<String>) -> Self {
        self.shape.records_at = pointer.into();
        self
    }

    /// JSON pointer of the listing's total (default `/total`); `None` when the API gives none, in
    /// which case turn on [`recheck_first_page`](Self::recheck_first_page). With a total, a chunk
    /// pages until it is reached and must hold exactly that many records; without one, it pages
    /// until an empty page (one request more), since an API may serve shorter pages than asked.
    pub fn total_at(mut self, pointer: Option<&str>) -> Self {
        self.shape.total_at = pointer.map(str::to_owned);
        self
    }

    /// The record field that is its primary key (default `id`).
    pub fn key_field(mut self, field: impl Into<String>) -> Self {
        self.shape.key_field = field.into();
        self
    }

    /// Fetches the first page again after the last and compares its keys: a changed first page is
    /// drift. One request per chunk; for APIs without totals.
    pub fn recheck_first_page(mut self, on: bool) -> Self {
        self.shape.recheck_first_page = on;
        self
    }

    /// A fixed query parameter sent with every data request.
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.shape.extra_query.push((name.into(), value.into()));
        self
    }

    /// Captures a chunk takes while its listing drifts before the read fails as transient
    /// (default 3).
    pub fn max_captures(mut self, n: u32) -> Self {
        self.shape.max_captures = n.max(1);
        self
    }

    /// The response headers a capture keeps (default `content-type`, `etag`, `last-modified`).
    /// Keep only headers that do not change between identical answers (not `date`), or equal
    /// reads get different capture digests.
    pub fn keep_headers(mut self, names: &[&str]) -> Self {
        self.keep_headers = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        self
    }

    /// The planning clock (for the window scan's settle lag).
    pub fn clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// A preconfigured `reqwest` client (proxies, TLS roots, default headers).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Checks the configuration and builds the source.
    pub fn build(self) -> Result<HttpSource<I>> {
        if !(self.base.starts_with("http://") || self.base.starts_with("https://")) {
            return Err(HttpError::Config(format!(
                "source {}: base address `{}` is not http:// or https://",
                self.name, self.base
            )));
        }
        if !self.shape.path.starts_with('/') {
            return Err(HttpError::Config(format!(
                "source {}: path `{}` must start with /",
                self.name, self.shape.path
            )));
        }
        let http = match self.http {
            Some(c) => c,
            None => reqwest::Client::builder()
                .build()
                .map_err(|e| HttpError::Config(format!("source {}: {e}", self.name)))?,
        };
        let vendor = self
            .vendor
            .unwrap_or_else(|| Vendor::new(self.name.clone(), 5));
        Ok(HttpSource {
            inner: Arc::new(Inner {
                client: Client {
                    http,
                    base: self.base,
                    vendor,
                    retry: self.retry,
                    auth: self.auth,
                    keep_headers: self.keep_headers,
                },
                name: self.name,
                shape: self.shape,
                store: self
                    .store
                    .unwrap_or_else(|| Arc::new(MemoryCaptureStore::new())),
                clock: self.clock,
            }),
            _records: PhantomData,
        })
    }
}
