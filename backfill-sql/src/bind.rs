//! Binding [`Value`]s to queries and reading them back, per engine.

use crate::row::SqlType;

/// Binds `$v` (a `&Value`) of column type `$ty` to query `$q`, with the engine's native types.
/// `$mysql` is true for MySQL/MariaDB (whose DATETIME has no time zone).
macro_rules! bind_value {
    ($q:expr, $ty:expr, $v:expr, $mysql:expr) => {{
        use $crate::row::{SqlType, Value};
        let q = $q;
        match ($v, $ty) {
            (Value::Null, SqlType::Text | SqlType::LongText) => q.bind(None::<String>),
            (Value::Null, SqlType::BigInt) => q.bind(None::<i64>),
            (Value::Null, SqlType::Double) => q.bind(None::<f64>),
            (Value::Null, SqlType::Boolean) => q.bind(None::<bool>),
            (Value::Null, SqlType::Date) => q.bind(None::<chrono::NaiveDate>),
            (Value::Null, SqlType::Timestamp) if $mysql => q.bind(None::<chrono::NaiveDateTime>),
            (Value::Null, SqlType::Timestamp) => q.bind(None::<chrono::DateTime<chrono::Utc>>),
            (Value::Bool(b), _) => q.bind(*b),
            (Value::Int(i), _) => q.bind(*i),
            (Value::Float(f), _) => q.bind(*f),
            (Value::Text(s), _) => q.bind(s.as_str()),
            (Value::Date(d), _) => q.bind(*d),
            (Value::Timestamp(t), _) if $mysql => q.bind(t.naive_utc()),
            (Value::Timestamp(t), _) => q.bind(*t),
        }
    }};
}
pub(crate) use bind_value;

/// Reads column `$i` of `$row` as a [`Value`] of type `$ty`.
macro_rules! read_value {
    ($row:expr, $i:expr, $ty:expr, $mysql:expr) => {{
        use sqlx::Row as _;
        use $crate::row::{SqlType, Value};
        let r = $row;
        let i: usize = $i;
        let v: Result<Value, sqlx::Error> = match $ty {
            SqlType::Text | SqlType::LongText => r
                .try_get::<Option<String>, _>(i)
                .map(|v| v.map_or(Value::Null, Value::Text)),
            SqlType::BigInt => r
                .try_get::<Option<i64>, _>(i)
                .map(|v| v.map_or(Value::Null, Value::Int)),
            SqlType::Double => r
                .try_get::<Option<f64>, _>(i)
                .map(|v| v.map_or(Value::Null, Value::Float)),
            SqlType::Boolean => r
                .try_get::<Option<bool>, _>(i)
                .map(|v| v.map_or(Value::Null, Value::Bool)),
            SqlType::Date => r
                .try_get::<Option<chrono::NaiveDate>, _>(i)
                .map(|v| v.map_or(Value::Null, Value::Date)),
            SqlType::Timestamp if $mysql => r
                .try_get::<Option<chrono::NaiveDateTime>, _>(i)
                .map(|v| v.map_or(Value::Null, |n| Value::Timestamp(n.and_utc()))),
            SqlType::Timestamp => r
                .try_get::<Option<chrono::DateTime<chrono::Utc>>, _>(i)
                .map(|v| v.map_or(Value::Null, Value::Timestamp)),
        };
        v
    }};
}
pub(crate) use read_value;

/// Column types of a row type followed by the lineage columns.
pub(crate) fn types(columns: &'static [crate::row::Column]) -> Vec<SqlType> {
    crate::row::all_columns(columns)
        .map(|(_, t, _)| t)
        .collect()
}
