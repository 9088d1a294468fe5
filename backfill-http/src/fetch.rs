//! The first read of a chunk: every page fetched, stored, and checked for drift.

use std::collections::HashSet;

use backfill_core::plan::PlannedChunk;
use serde_json::Value;

use crate::capture::{Capture, CapturedPage, PageRef};
use crate::client::describe;
use crate::error::{HttpError, Result};
use crate::scan::{ChunkState, Scan};
use crate::source::Inner;

impl Inner {
    /// Fetches every page of the chunk into the store and checks the listing held still.
    pub(crate) async fn fetch(
        &self,
        chunk: &PlannedChunk,
        state: &ChunkState,
        key: &str,
        attempt: u32,
    ) -> Result<Capture> {
        let id = chunk.id.to_string();
        let shape = &self.shape;
        let mut path = shape.path.clone();
        let mut query = shape.extra_query.clone();
        match (state, &shape.scan) {
            (
                ChunkState::Window {
                    query_from,
                    to_exclusive,
                    ..
                },
                Scan::Window {
                    since_param,
                    before_param,
                    ..
                },
            ) => {
                query.push((since_param.clone(), query_from.to_rfc3339()));
                query.push((before_param.clone(), to_exclusive.to_rfc3339()));
            }
            (
                ChunkState::IdRange {
                    from, to_exclusive, ..
                },
                Scan::IdRange {
                    from_param,
                    to_param,
                    ..
                },
            ) => {
                query.push((from_param.clone(), from.to_string()));
                query.push((to_param.clone(), to_exclusive.to_string()));
            }
            (
                ChunkState::Snapshot {
                    export_id,
                    from,
                    to_exclusive,
                    ..
                },
                Scan::Snapshot {
                    from_param,
                    to_param,
                    ..
                },
            ) => {
                path = path.replace("{export_id}", export_id);
                query.push((from_param.clone(), from.to_string()));
                query.push((to_param.clone(), to_exclusive.to_string()));
            }
            (
                ChunkState::Cursor {
                    after,
                    to_exclusive,
                    ..
                },
                Scan::Cursor {
                    after_param,
                    next_pointer,
                },
            ) => {
                return self
                    .fetch_cursor(
                        &id,
                        &path,
                        query,
                        (after_param, next_pointer),
                        (after, to_exclusive),
                        key,
                        state.retain_raw(),
                        attempt,
                    )
                    .await;
            }
            _ => {
                return Err(HttpError::Config(format!(
                    "chunk {id}: its state {state:?} was planned by another scan than this source's"
                )))
            }
        }
        let mut pages = Vec::new();
        let mut seen = HashSet::new();
        let mut first_total: Option<u64> = None;
        let mut first_keys: Vec<String> = Vec::new();
        let mut offset: u64 = 0;
        loop {
            let mut q = query.clone();
            q.push((shape.offset_param.clone(), offset.to_string()));
            q.push((shape.limit_param.clone(), shape.page_size.to_string()));
            let (page, body) = self.page(&id, &path, &q).await?;
            let records = records_of(&body, &shape.records_at).ok_or_else(|| {
                parse_err(&id, &page, format!("no array at {}", shape.records_at))
            })?;
            let total = match &shape.total_at {
                Some(p) => Some(
                    body.pointer(p)
                        .and_then(Value::as_u64)
                        .ok_or_else(|| parse_err(&id, &page, format!("no count at {p}")))?,
                ),
                None => None,
            };
            if pages.is_empty() {
                first_total = total;
            } else if total != first_total {
                return Err(drift(
                    &id,
                    attempt,
                    format!(
                        "the listing's total moved from {} to {} at offset {offset}",
                        show(first_total),
                        show(total)
                    ),
                ));
            }
            for r in records {
                let k = key_of(r, &shape.key_field).ok_or_else(|| {
                    parse_err(
                        &id,
                        &page,
                        format!("a record has no key `{}`", shape.key_field),
                    )
                })?;
                if pages.is_empty() {
                    first_keys.push(k.clone());
                }
                if !seen.insert(k.clone()) {
                    return Err(drift(
                        &id,
                        attempt,
                        format!(
                            "record {k} came twice: rows shifted between pages at offset {offset}"
                        ),
                    ));
                }
            }
            let n = records.len() as u64;
            pages.push(self.keep(key, page, n).await?);
            offset += n;
            // With a total, page until it is reached; without one, until an empty page. An API
            // may serve shorter pages than asked for, so a short page never ends a listing.
            let last = match total {
                Some(t) => offset >= t || n == 0,
                None => n == 0,
            };
            if last {
                break;
            }
            if pages.len() as u64 >= u64::from(shape.max_pages) {
                return Err(HttpError::Config(format!(
                    "chunk {id}: more than {} pages; plan smaller chunks",
                    shape.max_pages
                )));
            }
        }
        if let Some(t) = first_total {
            if offset != t {
                return Err(drift(
                    &id,
                    attempt,
                    format!("the listing reported {t} records but paging returned {offset}"),
                ));
            }
        }
        if shape.recheck_first_page {
            let mut q = query.clone();
            q.push((shape.offset_param.clone(), "0".into()));
            q.push((shape.limit_param.clone(), shape.page_size.to_string()));
            let (page, body) = self.page(&id, &path, &q).await?;
            let again: Vec<String> = records_of(&body, &shape.records_at)
                .map(|rs| {
                    rs.iter()
                        .filter_map(|r| key_of(r, &shape.key_field))
                        .collect()
                })
                .ok_or_else(|| {
                    parse_err(&id, &page, format!("no array at {}", shape.records_at))
                })?;
            if again != first_keys {
                return Err(drift(
                    &id,
                    attempt,
                    "the first page changed while the chunk was paged".into(),
                ));
            }
        }
        Ok(Capture::new(
            key.to_owned(),
            pages,
            state.retain_raw(),
            attempt,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_cursor(
        &self,
        id: &str,
        path: &str,
        query: Vec<(String, String)>,
        (after_param, next_pointer): (&String, &String),
        (after, end): (&String, &String),
        key: &str,
        retain_raw: bool,
        attempt: u32,
    ) -> Result<Capture> {
        let shape = &self.shape;
        let mut pages = Vec::new();
        let mut cursor = after.clone();
        loop {
            let mut q = query.clone();
            q.push((after_param.clone(), cursor.clone()));
            q.push((shape.limit_param.clone(), shape.page_size.to_string()));
            let (page, body) = self.page(id, path, &q).await?;
            let records = records_of(&body, &shape.records_at)
                .ok_or_else(|| parse_err(id, &page, format!("no array at {}", shape.records_at)))?;
            let mut reached_end = false;
            for r in records {
                let k = key_of(r, &shape.key_field).ok_or_else(|| {
                    parse_err(
                        id,
                        &page,
                        format!("a record has no key `{}`", shape.key_field),
                    )
                })?;
                reached_end |= !key_before(&k, end);
            }
            let next = match body.pointer(next_pointer) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            let n = records.len() as u64;
            pages.push(self.keep(key, page, n).await?);
            match next {
                Some(next) if !reached_end && n > 0 => {
                    if next == cursor {
                        return Err(drift(
                            id,
                            attempt,
                            format!("the cursor did not advance past {cursor}"),
                        ));
                    }
                    cursor = next;
                }
                _ => break,
            }
            if pages.len() as u64 >= u64::from(shape.max_pages) {
                return Err(HttpError::Config(format!(
                    "chunk {id}: more than {} pages; plan a nearer end key",
                    shape.max_pages
                )));
            }
        }
        Ok(Capture::new(key.to_owned(), pages, retain_raw, attempt))
    }

    async fn page(
        &self,
        chunk: &str,
        path: &str,
        q: &[(String, String)],
    ) -> Result<(CapturedPage, Value)> {
        let answer = self.client.get(chunk, path, q).await?;
        let page = CapturedPage {
            request: describe(path, q),
            status: answer.status,
            headers: answer.headers,
            body: answer.body,
        };
        let body: Value =
            serde_json::from_str(&page.body).map_err(|e| parse_err(chunk, &page, e.to_string()))?;
        Ok((page, body))
    }

    async fn keep(&self, key: &str, page: CapturedPage, records: u64) -> Result<PageRef> {
        let (bytes, digest) = page.encode()?;
        self.store.put_blob(key, &digest, bytes).await?;
        Ok(PageRef { digest, records })
    }
}

fn show(total: Option<u64>) -> String {
    total.map_or_else(|| "none".into(), |t| t.to_string())
}

pub(crate) fn parse_err(chunk: &str, page: &CapturedPage, detail: String) -> HttpError {
    HttpError::Parse {
        chunk: chunk.into(),
        request: page.request.clone(),
        detail,
    }
}

fn drift(chunk: &str, attempt: u32, detail: String) -> HttpError {
    HttpError::Drift {
        chunk: chunk.into(),
        detail: format!("{detail} (capture attempt {attempt})"),
    }
}

/// `key < end`, numerically when both are decimal numbers.
pub(crate) fn key_before(key: &str, end: &str) -> bool {
    match (key.parse::<u64>(), end.parse::<u64>()) {
        (Ok(k), Ok(e)) => k < e,
        _ => key < end,
    }
}

pub(crate) fn key_of(record: &Value, field: &str) -> Option<String> {
    match record.get(field)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(crate) fn records_of<'v>(body: &'v Value, pointer: &str) -> Option<&'v Vec<Value>> {
    body.pointer(pointer)?.as_array()
}
