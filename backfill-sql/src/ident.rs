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

/// Separator a schema-qualified name is mapped with on SQLite (`silver.sla` → `silver__sla`).
pub(crate) const SQLITE_SCHEMA_SEPARATOR: &str = "__";

/// A table name, optionally schema-qualified: `case_sla_monthly` or `silver.case_sla_monthly`.
/// Each part is a validated [`Ident`] and is quoted on its own.
///
/// Where the schema lives depends on the engine:
/// - PostgreSQL: a schema (`"silver"."case_sla_monthly"`); [`ensure_schema`](Self::ensure_schema)
///   runs `CREATE SCHEMA IF NOT EXISTS`.
/// - MySQL/MariaDB: a database (`` `silver`.`case_sla_monthly` ``); `ensure_schema` runs
///   `CREATE DATABASE IF NOT EXISTS`.
/// - SQLite: the table `silver__case_sla_monthly` in the main database file. A real SQLite schema
///   is an attached database file, which every pooled connection would have to attach, and a
///   transaction that writes to two files in WAL mode is not atomic across them: publishing from
///   staging into a target while moving the pointer row in the main file must stay one atomic commit.
///   So the schema becomes a name prefix and everything stays in one file.
///
/// ```
/// use backfill_sql::{Dialect, QualifiedName};
/// let t = QualifiedName::parse("silver.case_sla_monthly").unwrap();
/// assert_eq!(t.to_string(), "silver.case_sla_monthly");
/// assert_eq!(t.quoted(Dialect::Postgres), r#""silver"."case_sla_monthly""#);
/// assert_eq!(t.quoted(Dialect::MySql), "`silver`.`case_sla_monthly`");
/// assert_eq!(t.quoted(Dialect::Sqlite), r#""silver__case_sla_monthly""#);
/// assert!(QualifiedName::parse("a.b.c").is_err());
/// assert!(QualifiedName::parse("silver.x; drop").is_err());
/// assert_eq!(QualifiedName::parse("sla").unwrap().schema(), None);
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QualifiedName {
    schema: Option<Ident>,
    name: Ident,
}

impl QualifiedName {
    /// Parses `table` or `schema.table`, validating each part as an [`Ident`].
    pub fn parse(name: &str) -> backfill_core::Result<Self> {
        match name.split_once('.') {
            None => Ok(Self::unqualified(Ident::new(name)?)),
            Some((schema, table)) if !table.contains('.') => {
                Ok(Self::new(Some(Ident::new(schema)?), Ident::new(table)?))
            }
            Some(_) => Err(Error::Identifier {
                ident: name.chars().take(80).collect(),
                reason: "a table name has at most two parts, schema.table",
            }
            .into()),
        }
    }

    /// A name from its parts.
    pub fn new(schema: Option<Ident>, name: Ident) -> Self {
        Self { schema, name }
    }

    /// A name without a schema (the connection's default schema or database).
    pub fn unqualified(name: Ident) -> Self {
        Self { schema: None, name }
    }

    /// The schema, if qualified.
    pub fn schema(&self) -> Option<&Ident> {
        self.schema.as_ref()
    }

    /// The table part.
    pub fn name(&self) -> &Ident {
        &self.name
    }

    /// Another table in the same schema (staging and shadow tables live beside their target).
    pub fn sibling(&self, name: Ident) -> Self {
        Self {
            schema: self.schema.clone(),
            name,
        }
    }

    /// The quoted form for a dialect: each part quoted (`"silver"."sla"`), or on SQLite the one
    /// mapped name (`"silver__sla"`).
    pub fn quoted(&self, dialect: Dialect) -> String {
        match (&self.schema, dialect) {
            (None, _) => self.name.quoted(dialect),
            (Some(s), Dialect::Sqlite) => {
                dialect.quote(&format!("{s}{SQLITE_SCHEMA_SEPARATOR}{}", self.name))
            }
            (Some(s), _) => format!("{}.{}", s.quoted(dialect), self.name.quoted(dialect)),
        }
    }

    /// The name as the engine's catalog lists it: `(schema, table)` where the schema is `None` for
    /// the connection's default; on SQLite `(None, "silver__sla")`.
    pub fn catalog_parts(&self, dialect: Dialect) -> (Option<&str>, String) {
        match (&self.schema, dialect) {
            (None, _) => (None, self.name.to_string()),
            (Some(s), Dialect::Sqlite) => {
                (None, format!("{s}{SQLITE_SCHEMA_SEPARATOR}{}", self.name))
            }
            (Some(s), _) => (Some(s.as_str()), self.name.to_string()),
        }
    }

    /// Creates the schema if it is missing: `CREATE SCHEMA IF NOT EXISTS` on PostgreSQL,
    /// `CREATE DATABASE IF NOT EXISTS` on MySQL/MariaDB, nothing on SQLite (see the type's docs).
    /// The catalog is asked first, so a role without the right to create schemas can use one that
    /// exists. Idempotent and safe to race.
    pub async fn ensure_schema(&self, pool: &crate::SqlPool) -> backfill_core::Result<()> {
        let Some(schema) = &self.schema else {
            return Ok(());
        };
        let d = pool.dialect();
        let (exists, create) = match d {
            Dialect::Postgres => (
                "SELECT nspname::text FROM pg_namespace WHERE nspname = $1",
                format!("CREATE SCHEMA IF NOT EXISTS {}", schema.quoted(d)),
            ),
            Dialect::MySql => (
                "SELECT CAST(schema_name AS CHAR) FROM information_schema.schemata WHERE schema_name = ?",
                format!(
                    "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4",
                    schema.quoted(d)
                ),
            ),
            Dialect::Sqlite => return Ok(()),
        };
        let found = crate::pool::with_pool!(pool, p => {
            sqlx::query_scalar::<_, String>(exists)
                .bind(schema.as_str())
                .fetch_optional(p)
                .await
        })
        .map_err(crate::error::db)?;
        if found.is_some() {
            return Ok(());
        }
        let r = crate::pool::with_pool!(pool, p => sqlx::query(&create).execute(p).await.map(drop));
        match r {
            Ok(()) => Ok(()),
            // Two sessions creating the same schema at once: PostgreSQL's loser sees a unique violation.
            Err(e) if crate::error::is_concurrent_create(&e) => Ok(()),
            Err(e) => Err(crate::error::db(e)),
        }
    }
}

impl From<Ident> for QualifiedName {
    fn from(name: Ident) -> Self {
        Self::unqualified(name)
    }
}

impl std::str::FromStr for QualifiedName {
    type Err = backfill_core::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Debug for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QualifiedName({self})")
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(self.name.as_str()),
        }
    }
}
