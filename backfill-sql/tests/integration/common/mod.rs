//! Engines under test and per-test namespaces.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::clone_on_ref_ptr)]

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use backfill_sql::{Column, ConnectOptions, Ident, RowSchema, SqlPool, SqlType};

/// Columns of the testkit's `TestRow`.
static TEST_ROW: &[Column] = &[
    Column::new("id", SqlType::Text),
    Column::new("partition", SqlType::Text),
    Column::new("key", SqlType::Text),
    Column::new("value", SqlType::BigInt),
    Column::nullable("note", SqlType::Text),
];

/// The schema of the testkit's `TestRow`, partitioned by `partition`.
pub fn test_row_schema() -> RowSchema {
    RowSchema::new(TEST_ROW, "partition")
}

/// One database engine to run a test against.
#[derive(Debug, Clone)]
pub struct Engine {
    pub name: &'static str,
    /// Base URL (PostgreSQL/MariaDB server) or a directory for SQLite files.
    base: String,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh namespace on an engine: a schema, a database or a SQLite file.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub engine: Engine,
    pub ident: Ident,
    pub url: String,
    pub opts: ConnectOptions,
}

impl Namespace {
    /// The server URL (for PostgreSQL and MariaDB) the namespace lives on.
    pub fn engine_base(&self) -> &str {
        &self.engine.base
    }

    pub async fn pool(&self) -> SqlPool {
        SqlPool::connect_with(&self.url, &self.opts)
            .await
            .expect("connect")
    }

    pub async fn pool_with(&self, max: u32) -> SqlPool {
        SqlPool::connect_with(&self.url, &self.opts.clone().with_max_connections(max))
            .await
            .expect("connect")
    }

    pub async fn drop(&self) {
        if self.engine.name != "sqlite" {
            SqlPool::drop_namespace(&self.engine.base, &self.ident)
                .await
                .expect("drop namespace");
        }
    }
}

impl Engine {
    /// A uniquely named namespace for `test`.
    pub fn namespace(&self, test: &str) -> Namespace {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let name = format!("bt_{}_{}_{}", &test[..test.len().min(30)], pid, n);
        let ident = Ident::new(&name).expect("valid namespace");
        match self.name {
            "sqlite" => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                let _ = std::fs::remove_file(&path);
                Namespace {
                    engine: self.clone(),
                    ident,
                    url: format!("sqlite:{}", path.display()),
                    opts: ConnectOptions::default(),
                }
            }
            _ => Namespace {
                engine: self.clone(),
                url: self.base.clone(),
                opts: ConnectOptions::namespaced(ident.clone()),
                ident,
            },
        }
    }
}

fn required(var: &str, engine: &str) -> Option<String> {
    backfill_testkit::services::service(var, engine)
}

/// SQLite always; PostgreSQL and MariaDB when their URLs are set (required when CI=true).
pub fn engines() -> Vec<Engine> {
    let mut v = vec![Engine {
        name: "sqlite",
        base: String::new(),
    }];
    if let Some(url) = required("BACKFILL_TEST_PG_URL", "PostgreSQL") {
        v.push(Engine {
            name: "postgres",
            base: url,
        });
    }
    if let Some(url) = required("BACKFILL_TEST_MYSQL_URL", "MariaDB") {
        v.push(Engine {
            name: "mysql",
            base: url,
        });
    }
    v
}

/// The engine of this name, if provisioned (panics when required and missing).
pub fn engine(name: &str) -> Option<Engine> {
    engines().into_iter().find(|e| e.name == name)
}

/// Runs one SQL query through the engine's command-line client, when it is installed.
pub fn cli(ns: &Namespace, sql: &str) -> Option<String> {
    let out = match ns.engine.name {
        "sqlite" => Command::new("sqlite3")
            // Pools just dropped may still be closing their connections.
            .args(["-cmd", ".timeout 10000"])
            .arg(ns.url.trim_start_matches("sqlite:"))
            .arg(sql)
            .output(),
        "postgres" => Command::new("psql")
            .arg(ns.engine_base())
            .args(["-At", "-c"])
            .arg(format!("SET search_path TO {}; {sql}", ns.ident))
            .output(),
        _ => {
            let url = ns.engine_base().trim_start_matches("mysql://");
            let (auth, rest) = url.split_once('@')?;
            let (user, password) = auth.split_once(':')?;
            let (hostport, _) = rest.split_once('/')?;
            let (host, port) = hostport.split_once(':')?;
            Command::new("mariadb")
                .args([
                    "--no-defaults",
                    "-N",
                    "-B",
                    "-h",
                    host,
                    "-P",
                    port,
                    "-u",
                    user,
                ])
                .arg(format!("-p{password}"))
                .arg(ns.ident.as_str())
                .args(["-e", sql])
                .output()
        }
    };
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            Some(
                text.lines()
                    .filter(|l| !l.is_empty() && *l != "SET")
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        }
        Ok(o) => panic!(
            "{}: {sql}: {}",
            ns.engine.name,
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) if std::env::var_os("BACKFILL_REQUIRE_SERVICES").is_some() => panic!(
            "the {} command-line client is needed as the independent reader: {e}",
            ns.engine.name
        ),
        Err(e) => {
            eprintln!(
                "SKIPPING the {} CLI cross-check: the client is not installed ({e})",
                ns.engine.name
            );
            None
        }
    }
}
