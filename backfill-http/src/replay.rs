//! Replay: a stored capture read back page by page, as the chunk's records.

use std::collections::HashSet;
use std::sync::Arc;

use backfill_core::plan::PlannedChunk;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::capture::{Capture, CapturedPage};
use crate::error::HttpError;
use crate::fetch::{key_before, key_of, parse_err, records_of};
use crate::scan::{ChunkState, Scan};
use crate::source::{Inner, Shape};

/// Which records of a page belong to the chunk.
enum Keep {
    All,
    Window {
        field: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    Ids {
        from: u64,
        to: u64,
    },
    Before(String),
}

impl Keep {
    fn of(state: &ChunkState, shape: &Shape) -> Self {
        match (state, &shape.scan) {
            (
                ChunkState::Window {
                    from, to_exclusive, ..
                },
                Scan::Window { cursor_field, .. },
            ) => Self::Window {
                field: cursor_field.clone(),
                from: *from,
                to: *to_exclusive,
            },
            (
                ChunkState::IdRange {
                    from, to_exclusive, ..
                }
                | ChunkState::Snapshot {
                    from, to_exclusive, ..
                },
                _,
            ) => Self::Ids {
                from: *from,
                to: *to_exclusive,
            },
            (ChunkState::Cursor { to_exclusive, .. }, _) => Self::Before(to_exclusive.clone()),
            _ => Self::All,
        }
    }

    fn admits(&self, record: &Value, key: &str) -> Result<bool, String> {
        match self {
            Self::All => Ok(true),
            Self::Window { field, from, to } => {
                let at = record
                    .get(field)
                    .and_then(Value::as_str)
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .ok_or_else(|| format!("record {key} has no RFC 3339 `{field}`"))?
                    .with_timezone(&Utc);
                Ok(*from <= at && at < *to)
            }
            Self::Ids { from, to } => {
                let id: u64 = key
                    .parse()
                    .map_err(|_| format!("record key {key} is not a decimal id"))?;
                Ok(*from <= id && id < *to)
            }
            Self::Before(end) => Ok(key_before(key, end)),
        }
    }
}

/// Replays a capture page by page: one batch per page that keeps any record, de-duplicated by key.
pub(crate) fn replay<I: DeserializeOwned + Send + 'static>(
    inner: Arc<Inner>,
    chunk: PlannedChunk,
    capture: Capture,
) -> BoxStream<'static, backfill_core::Result<Vec<I>>> {
    let keep = match chunk.state.parse::<ChunkState>() {
        Ok(s) => Keep::of(&s, &inner.shape),
        Err(e) => return stream::once(async move { Err(e) }).boxed(),
    };
    let start = (inner, capture, keep, HashSet::<String>::new(), 0usize);
    stream::try_unfold(start, move |(inner, capture, keep, mut seen, mut at)| {
        let chunk_id = chunk.id.to_string();
        async move {
            while at < capture.pages.len() {
                let r = &capture.pages[at];
                at += 1;
                let bytes = inner.store.get_blob(&capture.key, &r.digest).await?;
                if hex::encode(Sha256::digest(&bytes)) != r.digest {
                    return Err(
                        HttpError::capture(&r.digest, "blob does not match its digest").into(),
                    );
                }
                let page: CapturedPage =
                    serde_json::from_slice(&bytes).map_err(|e| HttpError::capture(&r.digest, e))?;
                let body: Value = serde_json::from_str(&page.body)
                    .map_err(|e| parse_err(&chunk_id, &page, e.to_string()))?;
                let records = records_of(&body, &inner.shape.records_at)
                    .ok_or_else(|| parse_err(&chunk_id, &page, "no records array".into()))?;
                let mut batch = Vec::with_capacity(records.len());
                for rec in records {
                    let k = key_of(rec, &inner.shape.key_field)
                        .ok_or_else(|| parse_err(&chunk_id, &page, "a record has no key".into()))?;
                    let admitted = keep
                        .admits(rec, &k)
                        .map_err(|d| parse_err(&chunk_id, &page, d))?;
                    if !admitted || !seen.insert(k.clone()) {
                        continue;
                    }
                    let item = I::deserialize(rec)
                        .map_err(|e| parse_err(&chunk_id, &page, format!("record {k}: {e}")))?;
                    batch.push(item);
                }
                if !batch.is_empty() {
                    return Ok(Some((batch, (inner, capture, keep, seen, at))));
                }
            }
            Ok(None)
        }
    })
    .boxed()
}
