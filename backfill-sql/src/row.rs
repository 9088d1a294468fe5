//! Mapping user row types to columns, through serde: no SQL per row type.
//!
//! A row type lists its columns once ([`SqlRow::COLUMNS`], in field order); values are taken from its
//! `Serialize` implementation field by field, without building intermediate maps, and rows are read
//! back through its `Deserialize` implementation. Fields must be scalars: strings, integers, floats,
//! booleans, `Option`s of those, unit enum variants (stored as their name), and dates/timestamps
//! (chrono's serde forms) in [`SqlType::Date`]/[`SqlType::Timestamp`] columns.

use std::borrow::Cow;
use std::fmt;

use backfill_core::digest::OutputRow;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::de::DeserializeOwned;
use serde::ser::{self, Impossible, Serialize};

use crate::dialect::Dialect;

/// The SQL type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// Text (`TEXT`; `VARCHAR(255)` on MySQL/MariaDB so it can be a key or the partition column:
    /// a longer value is refused there with an error naming the column).
    Text,
    /// Text of any length that is never a key (`TEXT`; `LONGTEXT` on MySQL/MariaDB).
    LongText,
    /// 64-bit integer.
    BigInt,
    /// 64-bit float.
    Double,
    /// Boolean.
    Boolean,
    /// Calendar date (`YYYY-MM-DD` in serde).
    Date,
    /// Instant in UTC (RFC 3339 in serde).
    Timestamp,
}

impl SqlType {
    /// The DDL type name in a dialect.
    pub fn ddl(self, d: Dialect) -> &'static str {
        match (self, d) {
            (Self::Text, Dialect::MySql) => "VARCHAR(255)",
            (Self::Text, _) => "TEXT",
            (Self::LongText, Dialect::MySql) => "LONGTEXT",
            (Self::LongText, _) => "TEXT",
            (Self::BigInt, Dialect::Sqlite) => "INTEGER",
            (Self::BigInt, _) => "BIGINT",
            (Self::Double, Dialect::Postgres) => "DOUBLE PRECISION",
            (Self::Double, Dialect::MySql) => "DOUBLE",
            (Self::Double, Dialect::Sqlite) => "REAL",
            (Self::Boolean, Dialect::Sqlite) => "INTEGER",
            (Self::Boolean, _) => "BOOLEAN",
            (Self::Date, Dialect::Sqlite) => "TEXT",
            (Self::Date, _) => "DATE",
            (Self::Timestamp, Dialect::Postgres) => "TIMESTAMPTZ",
            (Self::Timestamp, Dialect::MySql) => "DATETIME(6)",
            (Self::Timestamp, Dialect::Sqlite) => "TEXT",
        }
    }
}

/// One column of a row type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Column (and serde field) name.
    pub name: &'static str,
    /// SQL type.
    pub ty: SqlType,
    /// Whether it may be NULL (an `Option` field).
    pub nullable: bool,
}

impl Column {
    /// A NOT NULL column.
    pub const fn new(name: &'static str, ty: SqlType) -> Self {
        Self {
            name,
            ty,
            nullable: false,
        }
    }

    /// A nullable column.
    pub const fn nullable(name: &'static str, ty: SqlType) -> Self {
        Self {
            name,
            ty,
            nullable: true,
        }
    }
}

/// The column layout of a row type: its columns in serde field order and the partition column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowSchema {
    /// Columns in serde field order.
    pub columns: &'static [Column],
    /// The column holding [`OutputRow::partition`].
    pub partition_column: &'static str,
}

impl RowSchema {
    /// A schema from a column list and the partition column.
    pub const fn new(columns: &'static [Column], partition_column: &'static str) -> Self {
        Self {
            columns,
            partition_column,
        }
    }

    /// The schema a [`SqlRow`] declares.
    pub const fn of<R: SqlRow>() -> Self {
        Self::new(R::COLUMNS, R::PARTITION_COLUMN)
    }

    /// The partition column's position.
    pub(crate) fn partition_index(&self) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name == self.partition_column)
    }
}

/// A row type that declares its own [`RowSchema`] (the convenient way; a schema can also be passed
/// to the sink and publisher constructors for types you cannot implement this trait for).
///
/// # Contract
/// 1. `COLUMNS` lists the struct's serialized fields in declaration order, with their SQL types.
/// 2. `PARTITION_COLUMN` names the column holding [`OutputRow::partition`] (a [`SqlType::Text`] column
///    whose value equals the partition key).
/// 3. Deserializing a row from its columns gives back an equal row.
///
/// ```
/// use std::borrow::Cow;
/// use backfill_core::digest::OutputRow;
/// use backfill_sql::{Column, SqlRow, SqlType};
///
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// struct CaseSla { case_id: String, month: String, due: chrono::NaiveDate, breached: bool, days: i64 }
/// impl OutputRow for CaseSla {
///     fn partition(&self) -> Cow<'_, str> { Cow::Borrowed(&self.month) }
/// }
/// impl SqlRow for CaseSla {
///     const COLUMNS: &'static [Column] = &[
///         Column::new("case_id", SqlType::Text),
///         Column::new("month", SqlType::Text),
///         Column::new("due", SqlType::Date),
///         Column::new("breached", SqlType::Boolean),
///         Column::new("days", SqlType::BigInt),
///     ];
///     const PARTITION_COLUMN: &'static str = "month";
/// }
/// ```
pub trait SqlRow: OutputRow + DeserializeOwned {
    /// Columns in serde field order.
    const COLUMNS: &'static [Column];
    /// The column holding the partition key.
    const PARTITION_COLUMN: &'static str;
}

/// A scalar value taken from a row, for binding.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Date(NaiveDate),
    Timestamp(DateTime<Utc>),
}

/// Receives a row's fields one by one, already checked against their column.
pub(crate) trait FieldSink {
    fn null(&mut self, col: &Column);
    fn bool(&mut self, col: &Column, v: bool);
    fn int(&mut self, col: &Column, v: i64);
    fn float(&mut self, col: &Column, v: f64);
    fn text(&mut self, col: &Column, v: &str);
    fn date(&mut self, col: &Column, v: NaiveDate);
    fn timestamp(&mut self, col: &Column, v: DateTime<Utc>);
}

/// A row that does not fit its declared columns.
#[derive(Debug)]
pub(crate) struct RowError(pub(crate) String);

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RowError {}

impl ser::Error for RowError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

pub(crate) fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

/// Feeds the fields of `row` to `sink`, checking them against `R::COLUMNS`.
pub(crate) fn encode<R: Serialize, S: FieldSink>(
    row: &R,
    columns: &'static [Column],
    sink: &mut S,
) -> Result<(), RowError> {
    let mut scratch = String::new();
    let mut ser = RowSer {
        sink,
        columns,
        idx: 0,
        scratch: &mut scratch,
    };
    row.serialize(&mut ser)?;
    if ser.idx != columns.len() {
        return Err(RowError(format!(
            "serialized {} fields but the schema lists {}",
            ser.idx,
            columns.len()
        )));
    }
    Ok(())
}

/// Collects values for binding.
#[derive(Debug, Default)]
pub(crate) struct Values(pub(crate) Vec<Value>);

impl FieldSink for Values {
    fn null(&mut self, _: &Column) {
        self.0.push(Value::Null);
    }
    fn bool(&mut self, _: &Column, v: bool) {
        self.0.push(Value::Bool(v));
    }
    fn int(&mut self, _: &Column, v: i64) {
        self.0.push(Value::Int(v));
    }
    fn float(&mut self, _: &Column, v: f64) {
        self.0.push(Value::Float(v));
    }
    fn text(&mut self, _: &Column, v: &str) {
        self.0.push(Value::Text(v.to_owned()));
    }
    fn date(&mut self, _: &Column, v: NaiveDate) {
        self.0.push(Value::Date(v));
    }
    fn timestamp(&mut self, _: &Column, v: DateTime<Utc>) {
        self.0.push(Value::Timestamp(v));
    }
}

macro_rules! serde_not_a_struct {
    () => {
        fn serialize_bool(self, _: bool) -> Result<(), RowError> {
            Err(not_struct())
        }
        fn serialize_i8(self, _: i8) -> Result<(), RowError> {
            Err(not_struct())
        }
        fn serialize_i16(self, _: i16) -> Result<(), RowError> {
            Err(not_struct())
        }
        fn serialize_i32(self, _: i32) -> Result<(), RowError> {
            Err(not_struct())
        }
        fn serialize_i64(self, _: i64) -> Result<(), RowError> {
            Err(not_struct())
        }
        fn serialize_u8(self, _: u8) -> Result<(), RowError> {
            Err(not_struct())
        }
        fn serialize_u16(self, _: u16) -> Result<(), RowError> {
            Err(not_struct())
        }
        fn serialize_u32(self, _: u32) -> Result<(), RowError> {
            Err(not_struct())
        }
        fn serialize_u64(self, _: u64) -> Result<(), RowError> {
            Err(not_struct())
        }
        fn serialize_f32(self, _: f32) -> Result<(), RowError> {
            Err(not_struct())
        }
        fn serialize_f64(self, _: f64) -> Result<(), RowError> {
            Err(not_struct())
        }
        fn serialize_char(self, _: char) -> Result<(), RowError> {
            Err(not_struct())
        }
        fn serialize_str(self, _: &str) -> Result<(), RowError> {
            Err(not_struct())
        }
        fn serialize_bytes(self, _: &[u8]) -> Result<(), RowError> {
            Err(not_struct())
        }
        fn serialize_none(self) -> Result<(), RowError> {
            Err(not_struct())
        }
        fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), RowError> {
            Err(not_struct())
        }
        fn serialize_unit(self) -> Result<(), RowError> {
            Err(not_struct())
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<(), RowError> {
            Err(not_struct())
        }
        fn serialize_unit_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
        ) -> Result<(), RowError> {
            Err(not_struct())
        }
        fn serialize_newtype_variant<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<(), RowError> {
            Err(not_struct())
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, RowError> {
            Err(not_struct())
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, RowError> {
            Err(not_struct())
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, RowError> {
            Err(not_struct())
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, RowError> {
            Err(not_struct())
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, RowError> {
            Err(not_struct())
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, RowError> {
            Err(not_struct())
        }
    };
}

struct RowSer<'a, S> {
    sink: &'a mut S,
    columns: &'static [Column],
    idx: usize,
    scratch: &'a mut String,
}

impl<S: FieldSink> ser::Serializer for &mut RowSer<'_, S> {
    type Ok = ();
    type Error = RowError;
    type SerializeSeq = Impossible<(), RowError>;
    type SerializeTuple = Impossible<(), RowError>;
    type SerializeTupleStruct = Impossible<(), RowError>;
    type SerializeTupleVariant = Impossible<(), RowError>;
    type SerializeMap = Impossible<(), RowError>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), RowError>;

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, RowError> {
        Ok(self)
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), RowError> {
        v.serialize(self)
    }

    serde_not_a_struct!();
}

fn not_struct() -> RowError {
    RowError("a SQL row must serialize as a struct".into())
}

impl<S: FieldSink> ser::SerializeStruct for &mut RowSer<'_, S> {
    type Ok = ();
    type Error = RowError;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), RowError> {
        let Some(col) = self.columns.get(self.idx) else {
            return Err(RowError(format!("field `{key}` is not in COLUMNS")));
        };
        if col.name != key {
            return Err(RowError(format!(
                "field `{key}` is serialized where COLUMNS lists `{}`",
                col.name
            )));
        }
        self.idx += 1;
        value.serialize(FieldSer {
            sink: self.sink,
            col,
            scratch: self.scratch,
        })
    }

    fn end(self) -> Result<(), RowError> {
        Ok(())
    }
}

struct FieldSer<'a, S> {
    sink: &'a mut S,
    col: &'static Column,
    scratch: &'a mut String,
}

/// `YYYY-MM-DD` without the general-purpose parser (dates are on the staging hot path).
fn parse_date(v: &str) -> Option<NaiveDate> {
    let b = v.as_bytes();
    if b.len() == 10 && b[4] == b'-' && b[7] == b'-' {
        let num = |r: std::ops::Range<usize>| {
            b[r].iter().try_fold(0u32, |n, d| {
                d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
            })
        };
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        return NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d);
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()
}

/// Puts a string into a column of any string-carried type.
fn put_str<S: FieldSink>(sink: &mut S, col: &'static Column, v: &str) -> Result<(), RowError> {
    match col.ty {
        SqlType::Text | SqlType::LongText => sink.text(col, v),
        SqlType::Date => {
            let d = parse_date(v)
                .ok_or_else(|| RowError(format!("column `{}`: `{v}` is not a date", col.name)))?;
            sink.date(col, d);
        }
        SqlType::Timestamp => {
            let t = parse_timestamp(v).ok_or_else(|| {
                RowError(format!(
                    "column `{}`: `{v}` is not an RFC 3339 timestamp",
                    col.name
                ))
            })?;
            sink.timestamp(col, t);
        }
        _ => {
            return Err(RowError(format!(
                "column `{}` is {:?} but the field is a string",
                col.name, col.ty
            )));
        }
    }
    Ok(())
}

impl<S: FieldSink> FieldSer<'_, S> {
    fn mismatch(&self, got: &str) -> RowError {
        RowError(format!(
            "column `{}` is {:?} but the field is {got}",
            self.col.name, self.col.ty
        ))
    }

    fn int(self, v: i64) -> Result<(), RowError> {
        match self.col.ty {
            SqlType::BigInt => self.sink.int(self.col, v),
            SqlType::Double => self.sink.float(self.col, v as f64),
            SqlType::Text | SqlType::LongText => self.sink.text(self.col, &v.to_string()),
            _ => return Err(self.mismatch("an integer")),
        }
        Ok(())
    }
}

impl<S: FieldSink> ser::Serializer for FieldSer<'_, S> {
    type Ok = ();
    type Error = RowError;
    type SerializeSeq = Impossible<(), RowError>;
    type SerializeTuple = Impossible<(), RowError>;
    type SerializeTupleStruct = Impossible<(), RowError>;
    type SerializeTupleVariant = Impossible<(), RowError>;
    type SerializeMap = Impossible<(), RowError>;
    type SerializeStruct = Impossible<(), RowError>;
    type SerializeStructVariant = Impossible<(), RowError>;

    fn serialize_bool(self, v: bool) -> Result<(), RowError> {
        match self.col.ty {
            SqlType::Boolean => self.sink.bool(self.col, v),
            _ => return Err(self.mismatch("a boolean")),
        }
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), RowError> {
        self.int(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), RowError> {
        self.int(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), RowError> {
        self.int(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), RowError> {
        self.int(v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), RowError> {
        self.int(i64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), RowError> {
        self.int(i64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), RowError> {
        self.int(i64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), RowError> {
        let v = i64::try_from(v).map_err(|_| {
            RowError(format!(
                "column `{}`: {v} does not fit BIGINT",
                self.col.name
            ))
        })?;
        self.int(v)
    }
    fn serialize_f32(self, v: f32) -> Result<(), RowError> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), RowError> {
        match self.col.ty {
            SqlType::Double => self.sink.float(self.col, v),
            _ => return Err(self.mismatch("a float")),
        }
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), RowError> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), RowError> {
        put_str(self.sink, self.col, v)
    }
    fn collect_str<T: ?Sized + fmt::Display>(self, v: &T) -> Result<(), RowError> {
        use std::fmt::Write as _;
        self.scratch.clear();
        write!(self.scratch, "{v}").map_err(|e| RowError(e.to_string()))?;
        put_str(self.sink, self.col, self.scratch)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), RowError> {
        Err(self.mismatch("bytes"))
    }
    fn serialize_none(self) -> Result<(), RowError> {
        if !self.col.nullable {
            return Err(RowError(format!(
                "column `{}` is NOT NULL but the field is None",
                self.col.name
            )));
        }
        self.sink.null(self.col);
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<(), RowError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), RowError> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), RowError> {
        self.serialize_none()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), RowError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), RowError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), RowError> {
        Err(self.mismatch("an enum with data"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, RowError> {
        Err(self.mismatch("a sequence"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, RowError> {
        Err(self.mismatch("a tuple"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, RowError> {
        Err(self.mismatch("a tuple struct"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, RowError> {
        Err(self.mismatch("an enum with data"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, RowError> {
        Err(self.mismatch("a map"))
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, RowError> {
        Err(self.mismatch("a nested struct"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, RowError> {
        Err(self.mismatch("an enum with data"))
    }
}

/// Decoded column values of one row, turned back into `R` through serde.
pub(crate) fn decode<R: DeserializeOwned>(
    columns: &[Column],
    values: Vec<Value>,
) -> Result<R, RowError> {
    let mut map = serde_json::Map::with_capacity(values.len());
    for (col, v) in columns.iter().zip(values) {
        let j = match v {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(b),
            Value::Int(i) => serde_json::Value::from(i),
            Value::Float(f) => serde_json::Value::from(f),
            Value::Text(s) => serde_json::Value::String(s),
            Value::Date(d) => serde_json::Value::String(d.format("%Y-%m-%d").to_string()),
            Value::Timestamp(t) => {
                serde_json::Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            }
        };
        map.insert(col.name.to_owned(), j);
    }
    serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| RowError(format!("reading back a row: {e}")))
}

/// Lineage columns stored on every staged and published row (seed naming).
pub(crate) const LINEAGE: [(&str, SqlType, bool); 8] = [
    ("produced_by_run_id", SqlType::Text, false),
    ("produced_by_transform", SqlType::Text, false),
    ("transform_version", SqlType::Text, false),
    ("processing_mode", SqlType::Text, false),
    ("input_range", SqlType::Text, false),
    ("input_snapshot_id", SqlType::Text, true),
    ("reference_data_version", SqlType::Text, false),
    ("produced_at", SqlType::Timestamp, false),
];

/// The lineage values of a staging request, in [`LINEAGE`] order.
pub(crate) fn lineage_values(l: &backfill_core::context::OutputLineage) -> [Value; 8] {
    [
        Value::Text(l.run_id.to_string()),
        Value::Text(l.transform_name.clone()),
        Value::Text(l.transform_version.clone()),
        Value::Text(l.mode.as_str().to_owned()),
        Value::Text(l.input_range.clone()),
        l.input_snapshot.clone().map_or(Value::Null, Value::Text),
        Value::Text(l.reference_data.clone()),
        Value::Timestamp(l.produced_at),
    ]
}

/// Column names as a borrowed list, lineage included, for DDL and SELECT lists.
pub(crate) fn all_columns(
    columns: &'static [Column],
) -> impl Iterator<Item = (Cow<'static, str>, SqlType, bool)> {
    columns
        .iter()
        .map(|c| (Cow::Borrowed(c.name), c.ty, c.nullable))
        .chain(
            LINEAGE
                .iter()
                .map(|(n, t, null)| (Cow::Borrowed(*n), *t, *null)),
        )
}
