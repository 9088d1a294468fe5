//! SQL identifiers: validated, then always quoted. Names are never spliced from input unchecked.

use std::fmt;

use crate::dialect::Dialect;
use crate::error::Error;

/// Words refused as identifiers even though quoting would make them legal: reserved in at least one
/// of PostgreSQL, MySQL/MariaDB or SQLite, and confusing to people reading the SQL.
const RESERVED: &[&str] = &[
    "all",
    "alter",
    "analyze",
    "and",
    "any",
    "as",
    "asc",
    "between",
    "both",
    "by",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "cross",
    "current_date",
    "current_time",
    "current_timestamp",
    "current_user",
    "database",
    "default",
    "delete",
    "desc",
    "distinct",
    "drop",
    "else",
    "end",
    "except",
    "exists",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "in",
    "index",
    "inner",
    "insert",
    "intersect",
    "into",
    "is",
    "join",
    "key",
    "leading",
    "left",
    "like",
    "limit",
    "natural",
    "not",
    "null",
    "offset",
    "on",
    "or",
    "order",
    "outer",
    "primary",
    "references",
    "replace",
    "right",
    "rows",
    "schema",
    "select",
    "set",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "update",
    "user",
    "using",
    "values",
    "when",
    "where",
    "with",
];

/// Longest identifier accepted (PostgreSQL truncates at 63 bytes, MySQL refuses over 64).
pub(crate) const MAX_LEN: usize = 63;

/// A validated SQL identifier: ASCII letter or `_` first, then ASCII letters, digits or `_`, at most
/// [`MAX_LEN`] bytes, not a reserved word. It is still quoted wherever it is used.
///
/// ```
/// use backfill_sql::Ident;
/// assert!(Ident::new("case_sla_daily").is_ok());
/// assert!(Ident::new("x\"; DROP TABLE runs; --").is_err());
/// assert!(Ident::new("select").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    /// Validates a name.
    pub fn new(name: &str) -> backfill_core::Result<Self> {
        let refuse = |reason| -> backfill_core::Result<Self> {
            Err(Error::Identifier {
                ident: name.chars().take(80).collect(),
                reason,
            }
            .into())
        };
        let mut bytes = name.bytes();
        match bytes.next() {
            None => return refuse("empty"),
            Some(b) if !(b.is_ascii_alphabetic() || b == b'_') => {
                return refuse("must start with a letter or underscore")
            }
            Some(_) => {}
        }
        if name.len() > MAX_LEN {
            return refuse("longer than 63 bytes");
        }
        if !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return refuse("only ASCII letters, digits and underscores are allowed");
        }
        if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
            return refuse("reserved word");
        }
        Ok(Self(name.to_owned()))
    }

    /// A name the crate generated itself (a fixed prefix and hex digits), known to be valid.
    pub(crate) fn generated(prefix: &str, hex: &str) -> Self {
        debug_assert!(prefix
            .bytes()
            .chain(hex.bytes())
            .all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        Self(format!("{prefix}{hex}"))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The quoted form for a dialect (`"name"` or `` `name` ``).
    pub fn quoted(&self, dialect: Dialect) -> String {
        dialect.quote(&self.0)
    }
}

impl fmt::Debug for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ident({})", self.0)
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
