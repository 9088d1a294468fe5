//! The `sla-backfill` binary as the tests drive it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use backfill_examples::sla::cli::{CHUNK_DELAY_ENV, CRASH_AFTER_CHUNKS_ENV};
use serde_json::Value;
use sqlx::sqlite::SqlitePool;

use super::text;

/// `examples/manifests`.
pub(crate) fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

pub(crate) fn manifest(name: &str) -> String {
    manifests_dir().join(name).display().to_string()
}

/// The binary pointed at a run store and a warehouse in one directory, nothing inherited that
/// would change what it does.
pub(crate) struct Tool {
    dir: PathBuf,
}

impl Tool {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sla-backfill"));
        c.args(args)
            .current_dir(&self.dir)
            .env("BACKFILL_STORE", self.dir.join("runs.db"))
            .env("BACKFILL_WAREHOUSE", self.dir.join("warehouse.db"))
            .env_remove("BACKFILL_JSON_LOGS")
            .env_remove("RUST_LOG")
            .env_remove(CRASH_AFTER_CHUNKS_ENV)
            .env_remove(CHUNK_DELAY_ENV)
            .stdin(Stdio::null());
        c
    }

    pub(crate) fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let o = self.output(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs a command with `--json` that must succeed; returns its document.
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// Runs a command that must exit with `code`; returns stdout and stderr.
    pub(crate) fn exits(&self, code: i32, args: &[&str]) -> String {
        let o = self.output(args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", text(&o));
        text(&o)
    }

    /// The state `runs` lists for run `id`.
    pub(crate) fn run_state(&self, id: &str) -> Option<String> {
        let runs = self.json(&["runs"]);
        runs.as_array()?
            .iter()
            .find(|r| r["run_id"] == id)
            .and_then(|r| r["state"].as_str())
            .map(str::to_owned)
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    pub(crate) async fn warehouse(&self) -> SqlitePool {
        SqlitePool::connect(&format!("sqlite://{}", self.path("warehouse.db")))
            .await
            .unwrap()
    }
}

pub(crate) fn state(v: &Value) -> &str {
    v["state"].as_str().unwrap_or_default()
}
