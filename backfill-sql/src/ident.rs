//! SQL identifiers: validated, then always quoted. Names are never spliced from input unchecked.

use std::fmt;

use crate::dialect::Dialect;
use crate::error::Error;

/// Longest identifier accepted (PostgreSQL truncates at 63 bytes, MySQL refuses over 64).
pub(crate) const MAX_LEN: usize = 63;

/// A validated SQL identifier: ASCII letter or `_` first, then ASCII letters, digits or `_`, at most
/// 63 bytes. It is always quoted where it is used, so reserved words (`select`, `key`, `order`) are
/// fine as names.
///
/// ```
/// use backfill_sql::{Dialect, Ident};
/// assert!(Ident::new("case_sla_daily").is_ok());
/// assert!(Ident::new("x\"; DROP TABLE runs; --").is_err());
/// assert_eq!(Ident::new("select").unwrap().quoted(Dialect::MySql), "`select`");
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
