//! The three SQL dialects: quoting, placeholders and type names.

use std::borrow::Cow;

/// Which database a pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
    /// SQLite.
    Sqlite,
}

impl Dialect {
    /// Short name used in logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::MySql => "mysql",
            Self::Sqlite => "sqlite",
        }
    }

    /// Quotes an identifier. Callers pass only validated [`Ident`](crate::Ident)s; quote characters are
    /// doubled anyway, so even a mistake cannot end the quoted name.
    pub fn quote(self, ident: &str) -> String {
        match self {
            Self::MySql => format!("`{}`", ident.replace('`', "``")),
            _ => format!("\"{}\"", ident.replace('"', "\"\"")),
        }
    }

    /// Rewrites `?` placeholders to `$1, $2, ...` for PostgreSQL. Our SQL never has `?` in literals.
    pub fn sql(self, q: &str) -> Cow<'_, str> {
        if self != Self::Postgres || !q.contains('?') {
            return Cow::Borrowed(q);
        }
        let mut out = String::with_capacity(q.len() + 16);
        let mut n = 0;
        for c in q.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        Cow::Owned(out)
    }

    /// Type for short keys (ids, states): indexable on every engine.
    pub fn key_type(self) -> &'static str {
        match self {
            Self::MySql => "VARCHAR(191)",
            _ => "TEXT",
        }
    }

    /// Table options every `CREATE TABLE` ends with: on MySQL/MariaDB the full UTF-8 character set
    /// (4-byte characters such as emoji; the server's default `utf8mb3` refuses them). Its default
    /// collation folds case, as MySQL's collations do: keys that differ only in case are one key
    /// there (a binary collation would compare exactly, but sqlx then reads text as bytes).
    pub fn table_options(self) -> &'static str {
        match self {
            Self::MySql => " DEFAULT CHARSET=utf8mb4",
            _ => "",
        }
    }

    /// Type for long text (JSON documents).
    pub fn long_text(self) -> &'static str {
        match self {
            Self::MySql => "LONGTEXT",
            _ => "TEXT",
        }
    }

    /// Most placeholders one statement may carry.
    pub fn max_params(self) -> usize {
        match self {
            Self::Postgres | Self::MySql => 65_535,
            Self::Sqlite => 32_766,
        }
    }
}
