//! An Iceberg restatement end to end, with no server: a month-partitioned Iceberg table of daily
//! order amounts per region on an embedded SQLite catalog, six months of accepted history, a
//! restatement of three months by write-audit-publish, the evidence, and a rollback.
//!
//! Run it with `cargo run -p backfill-examples --example iceberg_restatement` (add
//! `-- --warehouse DIR` for another place than `./iceberg-warehouse`).
//!
//! 1. Creates `sales.daily_region_amounts` (partitioned by `month(order_date)`, lineage columns
//!    included) in the warehouse `DIR`, whose SQL catalog is `DIR/catalog.db` under the catalog name
//!    `backfill`; the run store is `DIR/runs.db`.
//! 2. Publishes `daily-region-amounts` 1.4.0 over January to June 2025 as accepted history
//!    (`append_with_run_id`).
//! 3. Restates February to April with 1.5.0, which no longer counts voided orders (the POS feed
//!    marked them `VOID` in those months only, and 1.4.0 kept them, including whole days of voided
//!    training orders): the manifest is approved by the data owner, the executor stages and
//!    validates, the business delta waits for the owner's review, and the publisher replaces the
//!    three partitions by write-audit-publish: one `overwrite` snapshot on the branch `bf-<run>`,
//!    audited there (rows and digests per partition against the ledger), then `main`
//!    fast-forwarded and the branch dropped.
//! 4. Prints old against new per restated month (read back from the two snapshots), and the
//!    restatement's evidence.
//! 5. Rolls the restatement back: `main` points at the history's snapshot again; the restatement's
//!    snapshot stays in the table's history.
//!
//! Running it again on the same warehouse publishes nothing: both runs are found in the run store
//! in their final states (history `published`, restatement `rolled_back`), the program says
//! `nothing republished` and prints the same evidence and table state again. Use a fresh
//! `--warehouse` (or `--table`) for a new table.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use backfill_core::evidence::EvidenceRecord;
use backfill_core::prelude::*;
use backfill_core::runner::{ProgressListener, RunEvent};
use backfill_core::validate::{AcceptedValues, BusinessDelta, UniqueKey};
use backfill_iceberg::iceberg::spec::{
    NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec,
};
use backfill_iceberg::iceberg::table::Table;
use backfill_iceberg::iceberg::TableIdent;
use backfill_iceberg::refs::{self, RUN_ID_PROPERTY};
use backfill_iceberg::{
    lineage_fields, ArrowRows, IcebergCatalog, IcebergPublisher, IcebergStagingSink, PublishFlow,
    SerdeRows,
};
use backfill_sql::SqlStore;
use chrono::{Datelike, Days, NaiveDate, TimeZone, Utc, Weekday};
use clap::Parser;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

/// The table the example writes unless told otherwise.
pub const TABLE: &str = "sales.daily_region_amounts";
/// The accepted history: 1.4.0 over January to June 2025.
pub const HISTORY_RUN: &str = "region-amounts-2025h1-v1-4";
/// The restatement: 1.5.0 over February to April 2025.
pub const RESTATEMENT_RUN: &str = "region-amounts-2025feb-apr-v1-5";
/// The months the restatement replaces.
pub const RESTATED: [&str; 3] = ["2025-02", "2025-03", "2025-04"];
/// The regions of the order feed.
pub const REGIONS: [&str; 3] = ["amer", "apac", "emea"];
const TRANSFORM: &str = "daily-region-amounts";
const REQUESTER: &str = "sales-analytics";
const OWNER: &str = "finance-data-owner";
const SNAPSHOT: &str = "pos-extract-2025-07-02";

/// What the example needs.
#[derive(Debug, Clone)]
pub struct RestatementConfig {
    /// The warehouse directory: data and metadata files, `catalog.db` (the SQL catalog, name
    /// `backfill`) and `runs.db` (the run store).
    pub warehouse: PathBuf,
    /// The table, `namespace.table`.
    pub table: String,
}

/// Old against new in one restated month, read back from the table's snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthChange {
    /// The month partition (`YYYY-MM`).
    pub month: String,
    /// The month in the history's snapshot.
    pub before: MonthTotals,
    /// The month in the restatement's snapshot.
    pub after: MonthTotals,
}

/// What a month partition holds at a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonthTotals {
    /// Rows (one per day and region with orders).
    pub rows: u64,
    /// Orders.
    pub orders: i64,
    /// Amount in cents.
    pub amount_cents: i64,
    /// The `transform_version` lineage values of its rows.
    pub versions: Vec<String>,
    /// The `produced_by_run_id` lineage values of its rows.
    pub runs: Vec<String>,
}

/// What a finished example reports.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The table, `namespace.table`.
    pub table: String,
    /// The warehouse directory (absolute).
    pub warehouse: PathBuf,
    /// What this invocation did, one line per step.
    pub steps: Vec<String>,
    /// Whether this invocation published or rolled back anything (false on a second run).
    pub changed: bool,
    /// The history's snapshot.
    pub history_snapshot: i64,
    /// The restatement's snapshot (still in the table's history after the rollback).
    pub restatement_snapshot: i64,
    /// Where `main` points now.
    pub main_snapshot: Option<i64>,
    /// The run id in the summary of `main`'s snapshot.
    pub main_run: Option<String>,
    /// The table's refs (branches and tags).
    pub refs: Vec<String>,
    /// Old against new per restated month.
    pub restated: Vec<MonthChange>,
    /// Every month of `main` now.
    pub current: BTreeMap<String, MonthTotals>,
    /// The restatement's evidence trail, one line per record.
    pub evidence: Vec<String>,
    /// The runs and their states.
    pub states: Vec<(RunId, RunState)>,
}

mod data;
mod report;

pub use data::*;
use report::{describe, months_at};
pub use report::{main, print};

#[derive(Debug)]
struct Progress(&'static str);

impl ProgressListener for Progress {
    fn event(&self, _run: &RunId, event: &RunEvent) {
        match event {
            RunEvent::Planned { total, done } => {
                eprintln!("  {}: {total} chunks planned, {done} already done", self.0)
            }
            RunEvent::ChunkStaged {
                label,
                rows,
                done,
                total,
            } => eprintln!(
                "  {}: chunk {done}/{total} {label}: {rows} rows staged as Parquet",
                self.0
            ),
            RunEvent::ChunkFailed { label, error } => {
                eprintln!("  {}: chunk {label} failed: {error}", self.0)
            }
            RunEvent::State(s) => eprintln!("  {}: -> {s}", self.0),
            _ => {}
        }
    }
}

type Target = IcebergPublisher<DailyAmount>;

struct Parts {
    control: Control,
    sink: Arc<IcebergStagingSink<DailyAmount>>,
    target: Arc<Target>,
}

impl Parts {
    fn executor(&self, t: RegionAmounts) -> Executor<RegionAmounts> {
        let label = if t.version == "1.4.0" {
            "history"
        } else {
            "restatement"
        };
        let source = backfill_core::memory::MemorySource::by_date(extract(), |d: &RegionDay| d.day)
            .snapshot(SNAPSHOT);
        Executor::builder(
            self.control.clone(),
            Arc::new(source),
            Arc::new(t),
            Arc::clone(&self.sink) as Arc<dyn StagingSink<DailyAmount>>,
            Arc::clone(&self.target) as Arc<dyn TargetReader<DailyAmount>>,
        )
        .options(RunnerOptions::worker("iceberg-restatement-example"))
        .validator(Arc::new(UniqueKey::new("id", |r: &DailyAmount| {
            r.id.clone()
        })))
        .validator(Arc::new(AcceptedValues::new(
            "region",
            |r: &DailyAmount| r.region.as_str(),
            REGIONS,
        )))
        .validator(Arc::new(BusinessDelta::new(
            "amount_cents",
            |r: &DailyAmount| r.amount_cents,
        )))
        .progress(Arc::new(Progress(label)))
        .build()
    }
}

fn finished(s: RunState) -> bool {
    matches!(
        s,
        RunState::Published | RunState::Superseded | RunState::RolledBack
    )
}

/// Creates the table (if missing), publishes the history, restates three months by
/// write-audit-publish, rolls the restatement back and reports; on a warehouse where this happened
/// already, changes nothing and reports the same.
pub async fn run(cfg: &RestatementConfig) -> Result<Summary, Error> {
    let catalog = IcebergCatalog::embedded(&cfg.warehouse).await?;
    let warehouse = cfg
        .warehouse
        .canonicalize()
        .map_err(|e| Error::adapter("example", e))?;
    let table = table_ident(&cfg.table)?;
    let (schema, spec) = table_schema()?;
    catalog.ensure_table(&table, schema, spec).await?;
    let url = format!("sqlite://{}", warehouse.join("runs.db").display());
    let store = Arc::new(SqlStore::connect(&url).await?);
    let sink = Arc::new(IcebergStagingSink::<DailyAmount>::new(
        catalog.clone(),
        table.clone(),
    ));
    let target = Arc::new(
        IcebergPublisher::<DailyAmount>::new(catalog.clone(), table.clone())
            .flow(PublishFlow::WriteAuditPublish),
    );
    let control = Control::new(store).with_target(Arc::clone(&target) as Arc<dyn Publisher>)?;
    let parts = Parts {
        control: control.clone(),
        sink,
        target,
    };
    let approved_at = Utc
        .with_ymd_and_hms(2025, 7, 3, 9, 30, 0)
        .single()
        .unwrap_or_default();
    let name = table.to_string();
    let mut steps = Vec::new();
    let mut changed = false;

    // 1. Accepted history.
    let hid = RunId::from(HISTORY_RUN);
    let history = manifest(HISTORY_RUN, &name, "1.4.0", Mutation::AppendWithRunId, 1, 6);
    match control.store().run(&hid).await? {
        Some(r) if finished(r.state) => {
            steps.push(format!(
                "history {hid} is already {}: nothing republished",
                r.state
            ));
        }
        existing => {
            if existing.is_none() {
                control
                    .submit(&history.approve(OWNER, approved_at)?)
                    .await?;
            }
            let r = parts.executor(RegionAmounts::v1_4_0()).run(&hid).await?;
            if r.state != RunState::Published {
                return Err(stuck(&hid, r.state));
            }
            changed = true;
            steps.push(format!(
                "history {hid}: {TRANSFORM} 1.4.0 over 2025-01..2025-06, approved by {OWNER}, \
                 {} rows in {} month partitions -> {} ({})",
                r.output_rows,
                r.digests.0.len(),
                r.state,
                r.receipt.as_ref().map_or("-", |x| x.reference.as_str())
            ));
        }
    }

    // 2. The restatement: a draft by the requester, approved by the owner, run, reviewed, published
    //    by write-audit-publish; 3. rolled back.
    let rid = RunId::from(RESTATEMENT_RUN);
    let restatement = manifest(
        RESTATEMENT_RUN,
        &name,
        "1.5.0",
        Mutation::ReplacePartitions,
        2,
        4,
    );
    let mut state = match control.store().run(&rid).await? {
        Some(r) => r.state,
        None => {
            control.submit_draft(&restatement).await?;
            let r = control.approve(&rid, OWNER).await?;
            changed = true;
            steps.push(format!(
                "restatement {rid}: manifest by {REQUESTER}, approved by {OWNER} (digest {})",
                r.manifest_digest
            ));
            r.state
        }
    };
    if state == RunState::RolledBack {
        steps.push(format!(
            "restatement {rid} is already rolled_back: nothing republished, nothing rolled back again"
        ));
    }
    if matches!(
        state,
        RunState::Draft | RunState::Approved | RunState::Running | RunState::Staged
    ) {
        if state == RunState::Draft {
            control.approve(&rid, OWNER).await?;
        }
        let r = parts.executor(RegionAmounts::v1_5_0()).run(&rid).await?;
        for v in &r.validations {
            steps.push(format!(
                "  validation {:<30} {:?}: {}",
                v.validator, v.verdict, v.summary
            ));
        }
        steps.push(format!(
            "restatement {rid}: {TRANSFORM} 1.5.0 over 2025-02..2025-04, {} rows staged -> {}",
            r.output_rows, r.state
        ));
        state = r.state;
        changed = true;
    }
    if state == RunState::AwaitingReview {
        state = control
            .review(
                &rid,
                true,
                OWNER,
                "voided orders removed as agreed with finance (FIN-2207)",
            )
            .await?;
        steps.push(format!(
            "restatement {rid}: business delta reviewed and accepted by {OWNER} -> {state}"
        ));
        changed = true;
    }
    if state == RunState::Validated {
        let receipt = control.publish(&rid, OWNER).await?;
        steps.push(format!(
            "restatement {rid}: published by write-audit-publish, {} rows in {} partitions: {}; \
             main fast-forwarded to the audited snapshot, the branch dropped",
            receipt.rows,
            receipt.partitions.len(),
            receipt.reference
        ));
        state = RunState::Published;
        changed = true;
    }
    if state == RunState::Published {
        let receipt = control
            .rollback_run(
                &rid,
                OWNER,
                "monthly close keeps the reported figures until the audit signs off",
            )
            .await?;
        steps.push(format!(
            "restatement {rid}: rolled back to {}: {}",
            receipt.run_id, receipt.reference
        ));
        state = RunState::RolledBack;
        changed = true;
    }
    if state != RunState::RolledBack {
        return Err(stuck(&rid, state));
    }

    // 4. The evidence, read back from the table and the run store.
    let table_now = catalog.load(&table).await?;
    let history_snapshot = run_snapshot(&table_now, &hid)?;
    let restatement_snapshot = run_snapshot(&table_now, &rid)?;
    let before = months_at(&table_now, history_snapshot).await?;
    let after = months_at(&table_now, restatement_snapshot).await?;
    let restated = RESTATED
        .iter()
        .map(|m| MonthChange {
            month: (*m).to_owned(),
            before: before.get(*m).cloned().unwrap_or_default(),
            after: after.get(*m).cloned().unwrap_or_default(),
        })
        .collect();
    let main_snapshot = refs::main_head(&table_now);
    let main_run = main_snapshot
        .and_then(|id| table_now.metadata().snapshot_by_id(id))
        .and_then(|s| {
            s.summary()
                .additional_properties
                .get(RUN_ID_PROPERTY)
                .cloned()
        });
    let current = match main_snapshot {
        Some(id) => months_at(&table_now, id).await?,
        None => BTreeMap::new(),
    };
    let evidence = control
        .store()
        .evidence(&rid)
        .await?
        .iter()
        .map(|e| {
            format!(
                "#{:<3} {:<16} by {:<36} {}",
                e.seq,
                e.kind().as_str(),
                e.by,
                describe(&e.record)
            )
        })
        .collect();
    let mut states = Vec::new();
    for id in [&hid, &rid] {
        states.push((id.clone(), control.run(id).await?.state));
    }
    Ok(Summary {
        table: name,
        warehouse,
        steps,
        changed,
        history_snapshot,
        restatement_snapshot,
        main_snapshot,
        main_run,
        refs: refs::refs(&table_now).into_keys().collect(),
        restated,
        current,
        evidence,
        states,
    })
}

fn stuck(run: &RunId, state: RunState) -> Error {
    Error::PublishRefused {
        run_id: run.clone(),
        reason: format!("the run is {state}; see its evidence (the example expects it to publish)"),
    }
}

fn run_snapshot(table: &Table, run: &RunId) -> Result<i64, Error> {
    refs::find_run_snapshot(table, run.as_str()).ok_or_else(|| Error::NotFound {
        run_id: run.clone(),
        what: format!("a snapshot of the run in {}", table.identifier()),
    })
}
