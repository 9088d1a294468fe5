//! Keyset pages over one chunk's bounds, the chunk digest, and the verifying read stream.

use std::sync::Arc;

use backfill_core::Error as CoreError;
use chrono::{Datelike as _, NaiveDate};
use futures::stream::{self, BoxStream, StreamExt};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::{changed, Inner, Relation, SqlChunkState, SqlSource};
use crate::bind::{bind_value, read_value};
use crate::dialect::Dialect;
use crate::error::{db, ADAPTER};
use crate::pool::with_pool;
use crate::row::{decode, Value};

/// The half-open bounds of a chunk on the chunk column, as bound to the query.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Bounds {
    /// A `DATE` column.
    Dates(NaiveDate, NaiveDate),
    /// A column of epoch seconds.
    Epoch(i64, i64),
    /// An integer key column.
    Keys(i64, i64),
}

/// Count and running sha256 of rows in key order.
#[derive(Clone)]
struct RowHasher {
    rows: u64,
    h: Sha256,
}

impl RowHasher {
    fn new() -> Self {
        Self {
            rows: 0,
            h: Sha256::new(),
        }
    }

    fn row(&mut self, values: &[Value]) {
        self.rows += 1;
        let h = &mut self.h;
        for v in values {
            match v {
                Value::Null => h.update([0]),
                Value::Bool(b) => h.update([1, u8::from(*b)]),
                Value::Int(i) => {
                    h.update([2]);
                    h.update(i.to_be_bytes());
                }
                Value::Float(f) => {
                    h.update([3]);
                    h.update(f.to_bits().to_be_bytes());
                }
                Value::Text(s) => {
                    h.update([4]);
                    h.update((s.len() as u64).to_be_bytes());
                    h.update(s.as_bytes());
                }
                Value::Date(d) => {
                    h.update([5]);
                    h.update(d.num_days_from_ce().to_be_bytes());
                }
                Value::Timestamp(t) => {
                    h.update([6]);
                    h.update(t.timestamp_micros().to_be_bytes());
                }
            }
        }
        h.update([0xff]);
    }

    fn state(&self) -> SqlChunkState {
        SqlChunkState {
            rows: self.rows,
            digest: format!("sha256:{}", hex::encode(self.h.clone().finalize())),
        }
    }
}

/// Pages through one chunk in key order.
pub(crate) struct Scan {
    inner: Arc<Inner>,
    bounds: Bounds,
    first: String,
    next: String,
}

impl Scan {
    pub(crate) fn new(inner: &Arc<Inner>, bounds: Bounds) -> Self {
        let d = inner.pool.dialect();
        let q = |name: &str| d.quote(name);
        let cols = inner
            .columns
            .iter()
            .map(|c| q(c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let from = match &inner.relation {
            Relation::Table(t) => t.quoted(d),
            Relation::Query(sql) => format!("({sql})"),
        };
        let chunk = SqlSource::<()>::chunk_column(inner).quoted(d);
        let keys: Vec<String> = inner
            .key
            .iter()
            .filter_map(|i| inner.columns.get(*i))
            .map(|c| q(c.name))
            .collect();
        let order = keys.join(", ");
        let marks = vec!["?"; keys.len()].join(", ");
        let base = format!("SELECT {cols} FROM {from} bf_src WHERE {chunk} >= ? AND {chunk} < ?");
        let tail = format!(" ORDER BY {order} LIMIT {}", inner.batch);
        Self {
            first: d.sql(&format!("{base}{tail}")).into_owned(),
            next: d
                .sql(&format!("{base} AND ({order}) > ({marks}){tail}"))
                .into_owned(),
            inner: Arc::clone(inner),
            bounds,
        }
    }

    /// The page after the row whose key values are `after` (the first page for `None`).
    async fn page(&self, after: Option<&[Value]>) -> backfill_core::Result<Vec<Vec<Value>>> {
        let inner = &self.inner;
        let columns = inner.columns;
        let mysql = inner.pool.dialect() == Dialect::MySql;
        let sql = if after.is_some() {
            &self.next
        } else {
            &self.first
        };
        let rows = with_pool!(&inner.pool, p => {
            let mut q = sqlx::query(sql);
            q = match self.bounds {
                Bounds::Dates(a, b) => q.bind(a).bind(b),
                Bounds::Epoch(a, b) | Bounds::Keys(a, b) => q.bind(a).bind(b),
            };
            for (k, v) in inner.key.iter().zip(after.unwrap_or_default()) {
                let ty = columns.get(*k).map_or(crate::row::SqlType::Text, |c| c.ty);
                q = bind_value!(q, ty, v, mysql);
            }
            let rows = q.fetch_all(p).await.map_err(db)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let mut vals = Vec::with_capacity(columns.len());
                for (i, c) in columns.iter().enumerate() {
                    vals.push(read_value!(r, i, c.ty, mysql).map_err(db)?);
                }
                out.push(vals);
            }
            out
        });
        Ok(rows)
    }

    fn key_of(&self, row: &[Value]) -> Vec<Value> {
        self.inner
            .key
            .iter()
            .filter_map(|i| row.get(*i).cloned())
            .collect()
    }

    /// Every page of the chunk, fed to `each` row by row.
    async fn each(&self, mut each: impl FnMut(&[Value])) -> backfill_core::Result<()> {
        let mut after: Option<Vec<Value>> = None;
        loop {
            let page = self.page(after.as_deref()).await?;
            for row in &page {
                each(row);
            }
            match page.last() {
                Some(last) if page.len() >= self.inner.batch => after = Some(self.key_of(last)),
                _ => return Ok(()),
            }
        }
    }

    /// The count and digest of the whole chunk.
    pub(crate) async fn digest(&self) -> backfill_core::Result<SqlChunkState> {
        let mut h = RowHasher::new();
        self.each(|row| h.row(row)).await?;
        Ok(h.state())
    }

    /// Splits integer key bounds into chunks of at least `per_chunk` rows (rows with one key stay
    /// together; the last chunk takes the rest), with each chunk's count and digest. One pass.
    pub(crate) async fn split(
        &self,
        per_chunk: u64,
    ) -> backfill_core::Result<Vec<(i64, i64, SqlChunkState)>> {
        let Bounds::Keys(lo, hi) = self.bounds else {
            return Err(CoreError::adapter(ADAPTER, "key split of a date chunk"));
        };
        let first_key = self.inner.key.first().copied().unwrap_or(0);
        let (mut out, mut start, mut h, mut last) = (Vec::new(), lo, RowHasher::new(), None);
        let mut bad = None;
        self.each(|row| {
            let k = match row.get(first_key) {
                Some(Value::Int(k)) => *k,
                other => {
                    bad = Some(format!("{other:?}"));
                    return;
                }
            };
            if h.rows >= per_chunk && last != Some(k) {
                out.push((start, k, h.state()));
                (start, h) = (k, RowHasher::new());
            }
            h.row(row);
            last = Some(k);
        })
        .await?;
        if let Some(v) = bad {
            return Err(CoreError::adapter(
                ADAPTER,
                format!(
                    "sql source {}: key column holds {v}, not an integer",
                    self.inner.name
                ),
            ));
        }
        out.push((start, hi, h.state()));
        Ok(out)
    }
}

/// Streams a chunk's rows in batches, checking its count and digest against the plan; the stream
/// ends with an error when they differ.
pub(crate) fn read<I: DeserializeOwned + Send + 'static>(
    inner: Arc<Inner>,
    bounds: Bounds,
    planned: SqlChunkState,
    label: String,
) -> BoxStream<'static, backfill_core::Result<Vec<I>>> {
    struct St {
        scan: Scan,
        after: Option<Vec<Value>>,
        h: RowHasher,
        done: bool,
        planned: SqlChunkState,
        label: String,
    }
    impl St {
        fn verify(&self) -> backfill_core::Result<()> {
            let got = self.h.state();
            if got == self.planned {
                Ok(())
            } else {
                Err(changed(
                    &self.scan.inner.name,
                    &self.label,
                    &self.planned,
                    &got,
                ))
            }
        }
    }
    let st = St {
        scan: Scan::new(&inner, bounds),
        after: None,
        h: RowHasher::new(),
        done: false,
        planned,
        label,
    };
    stream::try_unfold(st, |mut st| async move {
        if st.done {
            return st.verify().map(|()| None);
        }
        let page = st.scan.page(st.after.as_deref()).await?;
        let Some(last) = page.last() else {
            return st.verify().map(|()| None);
        };
        st.done = page.len() < st.scan.inner.batch;
        st.after = Some(st.scan.key_of(last));
        for row in &page {
            st.h.row(row);
        }
        if st.h.rows > st.planned.rows {
            return Err(changed(
                &st.scan.inner.name,
                &st.label,
                &st.planned,
                &st.h.state(),
            ));
        }
        let columns = st.scan.inner.columns;
        let batch = page
            .into_iter()
            .map(|v| decode::<I>(columns, v))
            .collect::<Result<Vec<I>, _>>()
            .map_err(|e| {
                CoreError::adapter(
                    ADAPTER,
                    format!("sql source {}: {}: {e}", st.scan.inner.name, st.label),
                )
            })?;
        Ok(Some((batch, st)))
    })
    .boxed()
}
