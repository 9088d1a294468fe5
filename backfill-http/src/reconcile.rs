//! Deletes the API never reports, found by comparing its id listing with the ids a target holds.

use std::collections::{BTreeSet, HashSet};

use serde_json::Value;

use crate::error::{HttpError, Result};
use crate::source::HttpSource;

/// An endpoint listing ids in a range: `GET path?<from>=..&<to>=..&offset=..&limit=..` answering
/// `{"data": [id, ...], "total": n}` (pointers configurable).
#[derive(Debug, Clone)]
pub struct IdListing {
    path: String,
    from_param: String,
    to_param: String,
    page_size: u32,
    ids_at: String,
    total_at: Option<String>,
}

impl IdListing {
    /// A listing at `path` with the parameters `id_from`, `id_to`, `offset`, `limit`, ids under
    /// `/data` and the total under `/total`.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            from_param: "id_from".into(),
            to_param: "id_to".into(),
            page_size: 1_000,
            ids_at: "/data".into(),
            total_at: Some("/total".into()),
        }
    }

    /// Ids a page asks for.
    pub fn page_size(mut self, ids: u32) -> Self {
        self.page_size = ids.max(1);
        self
    }

    /// JSON pointers of the ids array and of the total (`None`: the API gives none).
    pub fn pointers(mut self, ids: impl Into<String>, total: Option<&str>) -> Self {
        self.ids_at = ids.into();
        self.total_at = total.map(str::to_owned);
        self
    }
}

/// The ids in `[from, to_exclusive)` that `known` holds (a target's ids) but the API no longer
/// lists: rows deleted without a trace in any change feed. Sorted ascending.
///
/// The listing goes through the source's vendor limit, retries and credentials. Ids are held in
/// memory (eight bytes each); reconcile a large range in slices. A listing whose total moves while
/// it is paged is taken again (up to three times), then fails as transient: a drifting listing
/// would report live rows as deleted.
pub async fn hidden_deletes<I>(
    source: &HttpSource<I>,
    listing: &IdListing,
    from: u64,
    to_exclusive: u64,
    known: impl IntoIterator<Item = u64>,
) -> Result<Vec<u64>> {
    let mut listed = None;
    for attempt in 1..=3 {
        match list(source, listing, from, to_exclusive).await {
            Ok(ids) => {
                listed = Some(ids);
                break;
            }
            Err(e @ HttpError::Drift { .. }) if attempt < 3 => {
                tracing::warn!(error = %e, "id listing drifted; listing again");
            }
            Err(e) => return Err(e),
        }
    }
    let listed = listed.unwrap_or_default();
    let gone: BTreeSet<u64> = known
        .into_iter()
        .filter(|id| (from..to_exclusive).contains(id) && !listed.contains(id))
        .collect();
    Ok(gone.into_iter().collect())
}

async fn list<I>(
    source: &HttpSource<I>,
    listing: &IdListing,
    from: u64,
    to: u64,
) -> Result<HashSet<u64>> {
    let chunk = format!("reconcile {from}..{to}");
    let client = &source.inner.client;
    let mut ids = HashSet::new();
    let mut first_total = None;
    let mut offset = 0u64;
    loop {
        let q = vec![
            (listing.from_param.clone(), from.to_string()),
            (listing.to_param.clone(), to.to_string()),
            ("offset".to_owned(), offset.to_string()),
            ("limit".to_owned(), listing.page_size.to_string()),
        ];
        let answer = client.get(&chunk, &listing.path, &q).await?;
        let parse = |detail: String| HttpError::Parse {
            chunk: chunk.clone(),
            request: crate::client::describe(&listing.path, &q),
            detail,
        };
        let body: Value = serde_json::from_str(&answer.body).map_err(|e| parse(e.to_string()))?;
        let page = body
            .pointer(&listing.ids_at)
            .and_then(Value::as_array)
            .ok_or_else(|| parse(format!("no array at {}", listing.ids_at)))?;
        let total = match &listing.total_at {
            Some(p) => Some(
                body.pointer(p)
                    .and_then(Value::as_u64)
                    .ok_or_else(|| parse(format!("no count at {p}")))?,
            ),
            None => None,
        };
        if offset == 0 {
            first_total = total;
        } else if total != first_total {
            return Err(HttpError::Drift {
                chunk,
                detail: "the id listing's total moved while it was paged".into(),
            });
        }
        for v in page {
            let id = match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            }
            .ok_or_else(|| parse(format!("id {v} is not a decimal id")))?;
            ids.insert(id);
        }
        let n = page.len() as u64;
        offset += n;
        let last = match total {
            Some(t) => offset >= t || n == 0,
            None => n == 0,
        };
        if last {
            break;
        }
    }
    if let Some(t) = first_total {
        if offset != t || ids.len() as u64 != t {
            return Err(HttpError::Drift {
                chunk,
                detail: format!(
                    "the id listing reported {t} ids but paging returned {offset} ({} distinct)",
                    ids.len()
                ),
            });
        }
    }
    Ok(ids)
}
