//! `manifest new | check | schema | digest`.

use std::path::Path;
use std::process::ExitCode;

use backfill_core::finding::Severity;
use backfill_core::manifest::RunManifest;

use super::CmdResult;
use crate::args::ManifestCmd;
use crate::out::emit;

/// A commented template in the canonical YAML form; `manifest check` lists what is left to fill.
const TEMPLATE: &str = r#"# A backfill run manifest. Fill every field; `backfill manifest check FILE` says what is missing.
schema_version: 1
run_id: {RUN}
# backfill | replay | restatement | reprocessing | correction
kind: restatement
# backfill | replay | dry_run | reconciliation | live
mode: backfill
# Why this run exists (the ticket, the bug, the rule change).
reason: ""
# Who asks for it; someone else approves it.
requested_by: ""
source:
  kind: sql_table
  name: bronze.events
  # Pin what is read: a snapshot id, an export id, a tag.
  snapshot: ""
  range:
    type: dates
    from: 2025-01-01
    to_exclusive: 2025-02-01
transform:
  name: my-transform
  version: 1.0.0
  git_commit: ""
  reference_data: []
target:
  kind: sql_table
  name: silver.my_table
  # replace_partitions | append_with_run_id | merge_by_key | shadow_swap | versioned_output | correction_events
  mutation:
    type: replace_partitions
  partitions: []
  consumers: []
safety:
  side_effects:
    allowed: false
  max_rows_expected: 1000000
  manual_publish: true
  limits:
    max_chunks_in_parallel: 2
validation:
  checksum_required: true
"#;

pub(super) fn run(cmd: &ManifestCmd, json: bool) -> CmdResult {
    match cmd {
        ManifestCmd::New { run } => {
            print!("{}", TEMPLATE.replace("{RUN}", run));
            Ok(ExitCode::SUCCESS)
        }
        ManifestCmd::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&RunManifest::json_schema())?
            );
            Ok(ExitCode::SUCCESS)
        }
        ManifestCmd::Digest { file } => {
            let m = load(file)?;
            let d = m.digest();
            emit(
                json,
                &serde_json::json!({"run_id": m.run_id, "digest": d.as_str()}),
                |_| d.as_str().to_owned(),
            );
            Ok(ExitCode::SUCCESS)
        }
        ManifestCmd::Check { file } => {
            let m = load(file)?;
            let findings = m.check();
            let mut list = findings.0.clone();
            list.sort_by_key(|f| match f.severity {
                Severity::Blocking => 0,
                _ => 1,
            });
            let approvable = !findings.has_blocking();
            emit(
                json,
                &serde_json::json!({
                    "run_id": m.run_id,
                    "digest": m.digest().as_str(),
                    "approvable": approvable,
                    "findings": list,
                }),
                |_| {
                    let mut s = String::new();
                    for f in &list {
                        s.push_str(&format!("{f}\n"));
                    }
                    s.push_str(&if approvable {
                        format!(
                            "{}: approvable ({} findings, none blocking)",
                            m.run_id,
                            list.len()
                        )
                    } else {
                        format!(
                            "{}: NOT approvable: {} blocking findings",
                            m.run_id,
                            findings.blocking().len()
                        )
                    });
                    s
                },
            );
            Ok(if approvable {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

pub(super) fn load(file: &Path) -> Result<RunManifest, backfill_core::Error> {
    RunManifest::load(file)
}
