//! PostgreSQL binary `COPY` encoding.
//!
//! Format: the 11-byte signature, a 4-byte flags field and a 4-byte header extension length, then per
//! row a 16-bit field count and per field a 32-bit length (-1 for NULL) and the value in the type's
//! binary send format; a 16-bit -1 ends the stream. Dates are days and timestamps microseconds since
//! 2000-01-01 (UTC).

use chrono::{DateTime, NaiveDate, Utc};

use crate::row::{Column, FieldSink, Value};

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Microseconds from the Unix epoch to PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

/// Appends binary COPY data to a buffer.
#[derive(Debug, Default)]
pub(crate) struct CopyWriter {
    pub(crate) buf: Vec<u8>,
    /// The first column given a text value with a NUL character, which PostgreSQL's text types
    /// cannot store (the server would refuse the whole COPY with an encoding error naming nothing).
    pub(crate) nul_in: Option<&'static str>,
}

impl CopyWriter {
    pub(crate) fn header(&mut self) {
        self.buf.extend_from_slice(SIGNATURE);
        self.buf.extend_from_slice(&0i32.to_be_bytes());
        self.buf.extend_from_slice(&0i32.to_be_bytes());
    }

    pub(crate) fn trailer(&mut self) {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
    }

    pub(crate) fn row_start(&mut self, fields: usize) {
        self.buf
            .extend_from_slice(&i16::try_from(fields).unwrap_or(i16::MAX).to_be_bytes());
    }

    fn field(&mut self, bytes: &[u8]) {
        self.buf
            .extend_from_slice(&i32::try_from(bytes.len()).unwrap_or(i32::MAX).to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    pub(crate) fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
            Value::Bool(b) => self.field(&[u8::from(*b)]),
            Value::Int(i) => self.field(&i.to_be_bytes()),
            Value::Float(f) => self.field(&f.to_bits().to_be_bytes()),
            Value::Text(s) => self.field(s.as_bytes()),
            Value::Date(d) => self.date(*d),
            Value::Timestamp(t) => self.ts(*t),
        }
    }

    fn date(&mut self, d: NaiveDate) {
        let days = d.signed_duration_since(NaiveDate::default()).num_days() - PG_EPOCH_DAYS;
        self.field(&i32::try_from(days).unwrap_or(i32::MAX).to_be_bytes());
    }

    fn ts(&mut self, t: DateTime<Utc>) {
        self.field(&(t.timestamp_micros() - PG_EPOCH_MICROS).to_be_bytes());
    }
}

impl FieldSink for CopyWriter {
    fn null(&mut self, _: &Column) {
        self.value(&Value::Null);
    }
    fn bool(&mut self, _: &Column, v: bool) {
        self.field(&[u8::from(v)]);
    }
    fn int(&mut self, _: &Column, v: i64) {
        self.field(&v.to_be_bytes());
    }
    fn float(&mut self, _: &Column, v: f64) {
        self.field(&v.to_bits().to_be_bytes());
    }
    fn text(&mut self, col: &Column, v: &str) {
        if self.nul_in.is_none() && v.as_bytes().contains(&0) {
            self.nul_in = Some(col.name);
        }
        self.field(v.as_bytes());
    }
    fn date(&mut self, _: &Column, v: NaiveDate) {
        self.date(v);
    }
    fn timestamp(&mut self, _: &Column, v: DateTime<Utc>) {
        self.ts(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs() {
        let mut w = CopyWriter::default();
        w.date(NaiveDate::from_ymd_opt(2000, 1, 2).unwrap());
        assert_eq!(&w.buf[4..], &1i32.to_be_bytes());
        let mut w = CopyWriter::default();
        w.ts(DateTime::from_timestamp(946_684_801, 0).unwrap());
        assert_eq!(&w.buf[4..], &1_000_000i64.to_be_bytes());
    }
}
