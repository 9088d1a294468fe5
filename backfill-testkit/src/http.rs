//! Scripted HTTP APIs on a real loopback server, for testing API sources against the faults live
//! vendors show: tokens that expire after a few requests, bursts of `429 Too Many Requests` with
//! `Retry-After`, rows inserted at the head of a listing while a client pages through it, and deletes
//! the API never reports.
//!
//! [`ScriptedApi::start`] runs a [`wiremock`] server (a real hyper server on a random local port) that
//! speaks a small, typical JSON API over a list of [`ApiRow`]s:
//!
//! | endpoint | answers |
//! |---|---|
//! | `POST /oauth/token` | with HTTP Basic client credentials: `{"access_token", "token_type": "bearer", "expires_in"}`; a token lives [`ApiScript::token_lifetime`] data requests |
//! | `GET /items` | rows filtered by `updated_since` (inclusive) / `updated_before` (exclusive, RFC 3339) and `id_from` (inclusive) / `id_to` (exclusive), paged by `offset` and `limit`: `{"data": [...], "total": n}` |
//! | `GET /events` | rows as an event log ordered by id, after the cursor `after` (exclusive): `{"data": [...], "next": "<last id>" or null}` |
//! | `GET /exports/{id}` | the rows as they were when the server started, paged like `/items`; 404 for an unknown export |
//! | `GET /ids` | ids only, filtered and paged like `/items`: `{"data": [1, 2], "total": n}` |
//!
//! Faults, set at any time: [`ScriptedApi::storm`] (429s with `Retry-After`),
//! [`ScriptedApi::fail_next`] (5xx), [`ScriptedApi::insert_after_pages`] (rows at the head while a
//! client pages), [`ScriptedApi::delete_hidden`] (deletes no endpoint reports), and a token lifetime
//! counted in requests ([`ApiScript::token_lifetime`]).
//!
//! Listings are newest first (id descending) unless [`ApiScript::oldest_first`], so rows inserted
//! during paging land at the head and shift every later page. Every request is logged
//! ([`ScriptedApi::requests`]) with its arrival time and the status it got, so tests can count what a
//! restarted source sent and check the spacing of requests after a `Retry-After`.
//!
//! ```no_run
//! # #[allow(dead_code)]
//! # async fn demo() {
//! use backfill_testkit::http::{ApiRow, ApiScript, ScriptedApi};
//!
//! let api = ScriptedApi::start(ApiScript::new(ApiRow::series(1..=100)).token_lifetime(3)).await;
//! api.storm(20, 1); // the next twenty data requests get 429 with `Retry-After: 1`
//! let base = api.uri(); // http://127.0.0.1:<port>
//! // ... run your source against `base`, then:
//! # let _ = base;
//! assert_eq!(api.count("/items", Some(429)), 20);
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// One row of the scripted API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiRow {
    /// Primary key.
    pub id: u64,
    /// Last change; the `updated_since` filter and the time-window cursor.
    pub updated_at: DateTime<Utc>,
    /// A name.
    pub name: String,
    /// An amount in cents.
    pub amount: i64,
}

impl ApiRow {
    /// Rows with the given ids, one minute apart from 2025-01-01T00:00:00Z (id `n` at minute `n`).
    pub fn series(ids: impl IntoIterator<Item = u64>) -> Vec<Self> {
        ids.into_iter().map(Self::numbered).collect()
    }

    /// Row `id` of [`series`](Self::series).
    pub fn numbered(id: u64) -> Self {
        let start = Utc
            .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        Self {
            id,
            updated_at: start + chrono::Duration::minutes(i64::try_from(id).unwrap_or(0)),
            name: format!("row-{id}"),
            amount: i64::try_from(id % 997).unwrap_or(0) * 100,
        }
    }
}

/// What a [`ScriptedApi`] starts with.
#[derive(Debug, Clone)]
pub struct ApiScript {
    rows: Vec<ApiRow>,
    token_lifetime: Option<u32>,
    token_expires_in: u64,
    newest_first: bool,
    max_limit: usize,
    export_id: String,
}

impl ApiScript {
    /// An API over `rows`, without authentication, newest first, at most 100 rows a page.
    pub fn new(rows: Vec<ApiRow>) -> Self {
        Self {
            rows,
            token_lifetime: None,
            token_expires_in: 3600,
            newest_first: true,
            max_limit: 100,
            export_id: "exp-1".into(),
        }
    }

    /// Requires a bearer token from `POST /oauth/token`; each token answers `requests` data requests,
    /// then gets `401`.
    pub fn token_lifetime(mut self, requests: u32) -> Self {
        self.token_lifetime = Some(requests);
        self
    }

    /// The `expires_in` (seconds) the token endpoint announces (default 3600). The server does
    /// not enforce it; it lets a client's proactive refresh be tested.
    pub fn token_expires_in(mut self, seconds: u64) -> Self {
        self.token_expires_in = seconds;
        self
    }

    /// Lists oldest first (id ascending).
    pub fn oldest_first(mut self) -> Self {
        self.newest_first = false;
        self
    }

    /// The largest page the API serves, whatever `limit` asks for.
    pub fn max_limit(mut self, rows: usize) -> Self {
        self.max_limit = rows.max(1);
        self
    }

    /// The id of the export `GET /exports/{id}` serves (default `exp-1`).
    pub fn export_id(mut self, id: impl Into<String>) -> Self {
        self.export_id = id.into();
        self
    }
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// When it arrived.
    pub at: Instant,
    /// `GET`, `POST`.
    pub method: String,
    /// The path, such as `/items`.
    pub path: String,
    /// The query parameters.
    pub query: BTreeMap<String, String>,
    /// The status it was answered with.
    pub status: u16,
}

#[derive(Debug)]
struct State {
    script: ApiScript,
    rows: BTreeMap<u64, ApiRow>,
    export: Vec<ApiRow>,
    tokens_issued: u32,
    token_uses_left: u32,
    storm_left: u32,
    storm_retry_after: u64,
    fail_left: u32,
    fail_status: u16,
    pending_insert: Option<(u32, Vec<ApiRow>)>,
    items_served: u32,
    log: Vec<LoggedRequest>,
}

/// A scripted API on a loopback server. Dropping it hands the server back to wiremock's pool, which
/// may keep the port open for a later test: to test an unreachable API, use a port nobody bound.
pub struct ScriptedApi {
    server: MockServer,
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for ScriptedApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptedApi")
            .field("uri", &self.server.uri())
            .finish_non_exhaustive()
    }
}

impl ScriptedApi {
    /// Starts the server on a random loopback port.
    pub async fn start(script: ApiScript) -> Self {
        let rows: BTreeMap<u64, ApiRow> = script.rows.iter().map(|r| (r.id, r.clone())).collect();
        let state = Arc::new(Mutex::new(State {
            export: rows.values().cloned().collect(),
            rows,
            script,
            tokens_issued: 0,
            token_uses_left: 0,
            storm_left: 0,
            storm_retry_after: 1,
            fail_left: 0,
            fail_status: 503,
            pending_insert: None,
            items_served: 0,
            log: Vec::new(),
        }));
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(Handler(Arc::clone(&state)))
            .mount(&server)
            .await;
        Self { server, state }
    }

    /// The base address, such as `http://127.0.0.1:43123`.
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `requests` data requests (any endpoint but the token's) get `429` with
    /// `Retry-After: <retry_after_secs>`.
    pub fn storm(&self, requests: u32, retry_after_secs: u64) {
        let mut s = self.state();
        s.storm_left = requests;
        s.storm_retry_after = retry_after_secs;
    }

    /// The next `requests` data requests fail with `status` (such as 500 or 503), without
    /// `Retry-After`.
    pub fn fail_next(&self, requests: u32, status: u16) {
        let mut s = self.state();
        s.fail_left = requests;
        s.fail_status = status;
    }

    /// Ends a storm at once.
    pub fn calm(&self) {
        self.state().storm_left = 0;
    }

    /// Inserts `rows` once `/items` has served `pages` successful pages (counted from now), before
    /// it answers the next one: the rows land at the head of a newest-first listing and shift the
    /// pages a client has not read yet.
    pub fn insert_after_pages(&self, pages: u32, rows: Vec<ApiRow>) {
        let mut s = self.state();
        let at = s.items_served + pages;
        s.pending_insert = Some((at, rows));
    }

    /// Inserts or replaces rows now.
    pub fn upsert(&self, rows: Vec<ApiRow>) {
        let mut s = self.state();
        for r in rows {
            s.rows.insert(r.id, r);
        }
    }

    /// Deletes rows silently: they vanish from every listing, and no endpoint reports the delete.
    pub fn delete_hidden(&self, ids: &[u64]) {
        let mut s = self.state();
        for id in ids {
            s.rows.remove(id);
        }
    }

    /// The ids the API holds now, ascending.
    pub fn ids(&self) -> Vec<u64> {
        self.state().rows.keys().copied().collect()
    }

    /// The rows the API holds now, by id.
    pub fn rows(&self) -> Vec<ApiRow> {
        self.state().rows.values().cloned().collect()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state().log.clone()
    }

    /// Requests to `path`, optionally only those answered with `status`.
    pub fn count(&self, path: &str, status: Option<u16>) -> usize {
        self.state()
            .log
            .iter()
            .filter(|r| r.path == path && status.is_none_or(|s| r.status == s))
            .count()
    }

    /// Data requests (every path but the token's).
    pub fn data_requests(&self) -> usize {
        self.state()
            .log
            .iter()
            .filter(|r| r.path != "/oauth/token")
            .count()
    }

    /// Tokens issued by `POST /oauth/token`.
    pub fn tokens_issued(&self) -> u32 {
        self.state().tokens_issued
    }

    /// Forgets the request log (the rows and faults stay).
    pub fn clear_log(&self) {
        self.state().log.clear();
    }
}

struct Handler(Arc<Mutex<State>>);

impl Respond for Handler {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let path = request.url.path().to_owned();
        let query: BTreeMap<String, String> = request
            .url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let auth = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let response = s.answer(request.method.as_str(), &path, &query, auth.as_deref());
        s.log.push(LoggedRequest {
            at: Instant::now(),
            method: request.method.as_str().to_owned(),
            path,
            query,
            status: response.0,
        });
        let mut template = ResponseTemplate::new(response.0).set_body_json(response.1);
        for (name, value) in response.2 {
            template = template.insert_header(name, value.as_str());
        }
        template
    }
}

type Answer = (u16, serde_json::Value, Vec<(&'static str, String)>);

fn error(status: u16, message: &str) -> Answer {
    (status, json!({ "error": message }), Vec::new())
}

impl State {
    fn answer(
        &mut self,
        method: &str,
        path: &str,
        q: &BTreeMap<String, String>,
        auth: Option<&str>,
    ) -> Answer {
        if method == "POST" && path == "/oauth/token" {
            if !auth.is_some_and(|a| a.starts_with("Basic ")) {
                return error(401, "client authentication (HTTP Basic) required");
            }
            self.tokens_issued += 1;
            self.token_uses_left = self.script.token_lifetime.unwrap_or(u32::MAX);
            return (
                200,
                json!({
                    "access_token": format!("tok-{}", self.tokens_issued),
                    "token_type": "bearer",
                    "expires_in": self.script.token_expires_in,
                }),
                Vec::new(),
            );
        }
        if method != "GET" {
            return error(405, "method not allowed");
        }
        if self.storm_left > 0 {
            self.storm_left -= 1;
            return (
                429,
                json!({ "error": "rate limited" }),
                vec![("retry-after", self.storm_retry_after.to_string())],
            );
        }
        if self.fail_left > 0 {
            self.fail_left -= 1;
            return error(self.fail_status, "scripted failure");
        }
        if self.script.token_lifetime.is_some() {
            let current = format!("Bearer tok-{}", self.tokens_issued);
            if auth != Some(current.as_str()) || self.tokens_issued == 0 {
                return error(401, "unknown token");
            }
            if self.token_uses_left == 0 {
                return error(401, "token expired");
            }
            self.token_uses_left -= 1;
        }
        let Some(filter) = Filter::parse(q) else {
            return error(400, "bad query");
        };
        match path {
            "/items" => {
                if let Some((at, _)) = &self.pending_insert {
                    if self.items_served >= *at {
                        if let Some((_, rows)) = self.pending_insert.take() {
                            for r in rows {
                                self.rows.insert(r.id, r);
                            }
                        }
                    }
                }
                self.items_served += 1;
                let rows: Vec<ApiRow> = self.rows.values().cloned().collect();
                self.page(&rows, &filter, q, |r| json!(r))
            }
            "/ids" => {
                let rows: Vec<ApiRow> = self.rows.values().cloned().collect();
                self.page(&rows, &filter, q, |r| json!(r.id))
            }
            "/events" => {
                let after = match q.get("after").map(|a| a.parse::<u64>()) {
                    None => 0,
                    Some(Ok(a)) => a,
                    Some(Err(_)) => return error(400, "bad cursor"),
                };
                let limit = self.limit(q);
                let data: Vec<&ApiRow> = self
                    .rows
                    .range(after + 1..)
                    .map(|(_, r)| r)
                    .take(limit)
                    .collect();
                let more = data
                    .last()
                    .is_some_and(|last| self.rows.range(last.id + 1..).next().is_some());
                let next = data.last().filter(|_| more).map(|r| r.id.to_string());
                (200, json!({ "data": data, "next": next }), Vec::new())
            }
            p if p.starts_with("/exports/") => {
                if p["/exports/".len()..] != self.script.export_id {
                    return error(404, "no such export");
                }
                let rows = self.export.clone();
                self.page(&rows, &filter, q, |r| json!(r))
            }
            _ => error(404, "no such endpoint"),
        }
    }

    fn limit(&self, q: &BTreeMap<String, String>) -> usize {
        q.get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(self.script.max_limit)
            .clamp(1, self.script.max_limit)
    }

    fn page(
        &self,
        rows: &[ApiRow],
        filter: &Filter,
        q: &BTreeMap<String, String>,
        show: impl Fn(&ApiRow) -> serde_json::Value,
    ) -> Answer {
        let mut matching: Vec<&ApiRow> = rows.iter().filter(|r| filter.admits(r)).collect();
        if self.script.newest_first {
            matching.reverse();
        }
        let offset = q
            .get("offset")
            .and_then(|o| o.parse::<usize>().ok())
            .unwrap_or(0);
        let data: Vec<serde_json::Value> = matching
            .iter()
            .skip(offset)
            .take(self.limit(q))
            .map(|r| show(r))
            .collect();
        (
            200,
            json!({ "data": data, "total": matching.len() }),
            Vec::new(),
        )
    }
}

struct Filter {
    since: Option<DateTime<Utc>>,
    before: Option<DateTime<Utc>>,
    id_from: Option<u64>,
    id_to: Option<u64>,
}

impl Filter {
    fn parse(q: &BTreeMap<String, String>) -> Option<Self> {
        let time = |k: &str| -> Option<Option<DateTime<Utc>>> {
            match q.get(k) {
                None => Some(None),
                Some(v) => DateTime::parse_from_rfc3339(v)
                    .ok()
                    .map(|t| Some(t.with_timezone(&Utc))),
            }
        };
        let id = |k: &str| -> Option<Option<u64>> {
            match q.get(k) {
                None => Some(None),
                Some(v) => v.parse().ok().map(Some),
            }
        };
        Some(Self {
            since: time("updated_since")?,
            before: time("updated_before")?,
            id_from: id("id_from")?,
            id_to: id("id_to")?,
        })
    }

    fn admits(&self, r: &ApiRow) -> bool {
        self.since.is_none_or(|t| r.updated_at >= t)
            && self.before.is_none_or(|t| r.updated_at < t)
            && self.id_from.is_none_or(|i| r.id >= i)
            && self.id_to.is_none_or(|i| r.id < i)
    }
}
