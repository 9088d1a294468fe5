//! Hostile values (the bad-input campaign): quotes, SQL keywords and comments, backslashes, control
//! characters, non-ASCII, a 100 KB string and hostile partition values are staged and published
//! under every mutation on every engine and read back exactly, through the publisher and through
//! the engine's own command-line client. A NUL character, which PostgreSQL's text cannot hold, is
//! a typed error naming the run and chunk there and round-trips elsewhere.

use crate::common;
use crate::publishing;

use std::borrow::Cow;

use backfill_core::digest::{OutputRow, PartitionDigests};
use backfill_core::prelude::*;
use backfill_core::sink::StageRequest;
use backfill_sql::{Column, SqlRow, SqlType};
use futures::stream::{self, StreamExt};
use publishing::{manifest, mutations, Parts, Sla};

/// A row whose note may be any length: [`SqlType::LongText`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Doc {
    case_id: String,
    month: String,
    breached: bool,
    version: i64,
    note: Option<String>,
}

impl OutputRow for Doc {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.month)
    }
}

impl SqlRow for Doc {
    const COLUMNS: &'static [Column] = &[
        Column::new("case_id", SqlType::Text),
        Column::new("month", SqlType::Text),
        Column::new("breached", SqlType::Boolean),
        Column::new("version", SqlType::BigInt),
        Column::nullable("note", SqlType::LongText),
    ];
    const PARTITION_COLUMN: &'static str = "month";
}

/// Values an attacker, a broken upstream or an unlucky user may put in a text column.
fn hostile() -> Vec<String> {
    vec![
        "'".into(),
        "\"".into(),
        "`".into(),
        "\\".into(),
        "\\'".into(),
        "'); DROP TABLE bf_runs; --".into(),
        "x\"; DROP TABLE bf_runs; --".into(),
        "/* comment */ SELECT 1".into(),
        "SELECT".into(),
        "NULL".into(),
        "%_".into(),
        "a\nb\r\nc\td".into(),
        "\u{7}\u{1b}[31m".into(),
        "ünïcødé 🦀 中文".into(),
        String::new(),
        "x".repeat(100_000),
    ]
}

/// Months, one of them hostile: partition values are bound, never spliced into SQL.
const MONTHS: [&str; 2] = ["2025-01", "m'); DELETE FROM bf_runs; --"];

fn rows() -> Vec<Doc> {
    let mut v = Vec::new();
    for month in MONTHS {
        for (i, value) in hostile().into_iter().enumerate() {
            v.push(Doc {
                case_id: format!("{i:02}:{}", value.chars().take(40).collect::<String>()),
                month: month.to_owned(),
                breached: i % 2 == 0,
                version: 1,
                note: Some(value),
            });
        }
    }
    v
}

fn sorted(mut v: Vec<Doc>) -> Vec<Doc> {
    v.sort_by(|a, b| a.case_id.cmp(&b.case_id));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_round_trip_under_every_mutation_on_every_engine() {
    for engine in common::engines() {
        for (n, mutation) in mutations().into_iter().enumerate() {
            let ns = engine.namespace("hostile");
            let pool = ns.pool().await;
            let target = format!("hostile_{n}");
            let parts = Parts::<Doc>::of(pool.clone(), &target).await;
            let m = manifest("bf-hostile", &target, mutation.clone(), &MONTHS);
            parts.stage_and_publish(&m, rows(), None).await;
            for month in MONTHS {
                let want: Vec<Doc> = rows().into_iter().filter(|r| r.month == month).collect();
                assert_eq!(
                    sorted(parts.read(month).await),
                    sorted(want),
                    "{} {mutation:?} {month:?}",
                    engine.name
                );
            }
            // The engine's own client: the run store is intact, every row is there, and the longest
            // value kept every character.
            let chars = if engine.name == "mysql" {
                "CHAR_LENGTH"
            } else {
                "LENGTH"
            };
            let table = publishing::view_of(&target, &mutation).unwrap_or_else(|| target.clone());
            if let Some(out) = common::cli(
                &ns,
                &format!("SELECT COUNT(*), MAX({chars}(note)) FROM {table}"),
            ) {
                let out = out.replace('\t', "|");
                assert_eq!(
                    out,
                    format!("{}|100000", rows().len()),
                    "{} {mutation:?}",
                    engine.name
                );
            }
            if let Some(out) = common::cli(&ns, "SELECT COUNT(*) FROM bf_runs") {
                assert_eq!(out, "0", "{}: the store's table is intact", engine.name);
            }
            drop(parts);
            pool.close().await;
            ns.drop().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_is_stored_or_refused_naming_the_run_and_chunk() {
    for engine in common::engines() {
        let ns = engine.namespace("nul");
        let pool = ns.pool().await;
        let parts = Parts::new(pool.clone(), "nul_values").await;
        let run = RunId::from("bf-nul");
        let row = Sla {
            case_id: "C-1".into(),
            month: "2025-01".into(),
            breached: false,
            version: 1,
            note: Some("a\0b".into()),
        };
        let ctx = TransformContext::fixed(run.clone(), ExecutionMode::Backfill, publishing::at());
        let chunk = ChunkId::from("c-nul");
        let staged = parts
            .sink
            .stage(
                StageRequest {
                    run_id: &run,
                    chunk_id: &chunk,
                    attempt: 1,
                    lineage: ctx.lineage(),
                },
                stream::iter([Ok(vec![row.clone()])]).boxed(),
            )
            .await;
        match engine.name {
            "postgres" => {
                let err = staged.expect_err("PostgreSQL text cannot hold NUL");
                let text = err.to_string();
                assert!(
                    text.contains("bf-nul") && text.contains("c-nul"),
                    "the error names the run and chunk: {text}"
                );
                assert_ne!(
                    err.kind(),
                    ErrorKind::Transient,
                    "retrying cannot help: {text}"
                );
            }
            _ => {
                let receipt = staged.expect("stored");
                assert_eq!(receipt.rows, 1);
                let m = manifest(
                    "bf-nul",
                    "nul_values",
                    Mutation::ReplacePartitions,
                    &["2025-01"],
                );
                let artifacts = vec![backfill_core::publish::ChunkArtifact {
                    chunk_id: chunk.clone(),
                    attempt: 1,
                    rows: 1,
                    artifact: receipt.artifact,
                }];
                let digests = PartitionDigests::of_rows(std::slice::from_ref(&row));
                parts
                    .publish_staged(&m, &artifacts, &digests, None)
                    .await
                    .expect("published");
                assert_eq!(
                    parts.read("2025-01").await,
                    vec![row.clone()],
                    "{}",
                    engine.name
                );
            }
        }
        drop(parts);
        pool.close().await;
        ns.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_longer_than_a_mysql_key_column_is_refused_there_naming_the_column() {
    for engine in common::engines() {
        let ns = engine.namespace("long");
        let pool = ns.pool().await;
        let parts = Parts::new(pool.clone(), "long_values").await;
        let run = RunId::from("bf-long");
        let row = Sla {
            case_id: "é".repeat(300),
            month: "2025-01".into(),
            breached: false,
            version: 1,
            note: None,
        };
        let ctx = TransformContext::fixed(run.clone(), ExecutionMode::Backfill, publishing::at());
        let chunk = ChunkId::from("c-long");
        let staged = parts
            .sink
            .stage(
                StageRequest {
                    run_id: &run,
                    chunk_id: &chunk,
                    attempt: 1,
                    lineage: ctx.lineage(),
                },
                stream::iter([Ok(vec![row])]).boxed(),
            )
            .await;
        if engine.name == "mysql" {
            let text = staged.expect_err("VARCHAR(255)").to_string();
            assert!(
                text.contains("bf-long") && text.contains("c-long") && text.contains("`case_id`"),
                "{text}"
            );
        } else {
            assert_eq!(staged.expect("unbounded text").rows, 1, "{}", engine.name);
        }
        drop(parts);
        pool.close().await;
        ns.drop().await;
    }
}
