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

/// One day of one region in the POS extract.
#[derive(Debug, Clone)]
pub struct RegionDay {
    /// The business day.
    pub day: NaiveDate,
    /// The region.
    pub region: &'static str,
    /// Orders, voided ones included.
    pub orders: i64,
    /// Gross amount in cents, voided orders included.
    pub gross_cents: i64,
    /// Orders the POS marked `VOID` (February to April 2025 only).
    pub voided_orders: i64,
    /// Their amount in cents.
    pub voided_cents: i64,
}

/// A row of the table: daily order amount of one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyAmount {
    /// Deterministic output id.
    pub id: String,
    /// The business day.
    pub order_date: NaiveDate,
    /// The region.
    pub region: String,
    /// Orders counted.
    pub orders: i64,
    /// Amount in cents.
    pub amount_cents: i64,
}

impl OutputRow for DailyAmount {
    fn partition(&self) -> std::borrow::Cow<'_, str> {
        // The table's partition value of the row: month(order_date) in Iceberg's human form.
        std::borrow::Cow::Owned(self.order_date.format("%Y-%m").to_string())
    }
}

/// A row as it is read back: the user columns and two lineage columns the staging sink filled.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredAmount {
    order_date: NaiveDate,
    orders: i64,
    amount_cents: i64,
    transform_version: String,
    produced_by_run_id: String,
}

/// `daily-region-amounts`: 1.4.0 counts every order of the extract; 1.5.0 leaves out voided orders
/// and emits no row for a day whose orders were all voided.
#[derive(Debug)]
pub struct RegionAmounts {
    version: &'static str,
}

impl RegionAmounts {
    /// The accepted version.
    pub fn v1_4_0() -> Self {
        Self { version: "1.4.0" }
    }

    /// The corrected version.
    pub fn v1_5_0() -> Self {
        Self { version: "1.5.0" }
    }
}

impl DeterministicTransform for RegionAmounts {
    type Input = RegionDay;
    type Output = DailyAmount;

    fn name(&self) -> &str {
        TRANSFORM
    }

    fn version(&self) -> &str {
        self.version
    }

    fn apply(
        &self,
        d: &RegionDay,
        ctx: &TransformContext,
        out: &mut Vec<DailyAmount>,
    ) -> Result<(), TransformError> {
        let (orders, amount_cents) = if self.version == "1.4.0" {
            (d.orders, d.gross_cents)
        } else {
            (d.orders - d.voided_orders, d.gross_cents - d.voided_cents)
        };
        if orders == 0 {
            return Ok(());
        }
        out.push(DailyAmount {
            id: ctx.output_id(&[d.region, &d.day.to_string()]),
            order_date: d.day,
            region: d.region.to_owned(),
            orders,
            amount_cents,
        });
        Ok(())
    }
}

fn date(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, m, d).unwrap_or_default()
}

/// The POS extract: every day of January to June 2025 for every region. From February to April
/// some orders of every day are voided, and on Sundays APAC's stores only rang up training orders,
/// all voided.
pub fn extract() -> Vec<RegionDay> {
    let mut out = Vec::new();
    let mut day = date(1, 1);
    while day < date(7, 1) {
        let doy = i64::from(day.ordinal());
        for (r, region) in (0i64..).zip(REGIONS) {
            let void_months = (2..=4).contains(&day.month());
            let training = void_months && region == "apac" && day.weekday() == Weekday::Sun;
            let orders = if training {
                5
            } else {
                20 + (doy * 7 + r * 13) % 30
            };
            let avg = 2_500 + ((doy * 31 + r * 17) % 40) * 25;
            let voided_orders = match (training, void_months) {
                (true, _) => orders,
                (false, true) => 1 + (doy + r) % 3,
                (false, false) => 0,
            };
            out.push(RegionDay {
                day,
                region,
                orders,
                gross_cents: orders * avg,
                voided_orders,
                voided_cents: voided_orders * avg,
            });
        }
        day = day + Days::new(1);
    }
    out
}

fn table_ident(name: &str) -> Result<TableIdent, Error> {
    TableIdent::from_strs(name.split('.')).map_err(|e| {
        Error::adapter(
            "example",
            format!("--table {name}: expected namespace.table: {e}"),
        )
    })
}

/// The table's schema: the user columns, then the lineage columns; partitioned by
/// `month(order_date)`.
pub fn table_schema() -> Result<(Schema, UnboundPartitionSpec), Error> {
    let ice = |e: backfill_iceberg::iceberg::Error| Error::adapter("example", e);
    let mut fields = vec![
        NestedField::required(1, "id", Type::Primitive(PrimitiveType::String)).into(),
        NestedField::required(2, "order_date", Type::Primitive(PrimitiveType::Date)).into(),
        NestedField::required(3, "region", Type::Primitive(PrimitiveType::String)).into(),
        NestedField::required(4, "orders", Type::Primitive(PrimitiveType::Long)).into(),
        NestedField::required(5, "amount_cents", Type::Primitive(PrimitiveType::Long)).into(),
    ];
    fields.extend(lineage_fields(6));
    let schema = Schema::builder()
        .with_schema_id(0)
        .with_fields(fields)
        .build()
        .map_err(ice)?;
    let spec = UnboundPartitionSpec::builder()
        .add_partition_field(2, "order_month", Transform::Month)
        .map_err(ice)?
        .build();
    Ok((schema, spec))
}

fn months(from: u32, to_inclusive: u32) -> Vec<PartitionKey> {
    (from..=to_inclusive)
        .map(|m| PartitionKey::from(format!("2025-{m:02}")))
        .collect()
}

fn manifest(
    run_id: &str,
    table: &str,
    version: &str,
    mutation: Mutation,
    from: u32,
    to: u32,
) -> RunManifest {
    let restatement = mutation == Mutation::ReplacePartitions;
    let kind = if restatement {
        RunKind::Restatement
    } else {
        RunKind::Backfill
    };
    let mut m = RunManifest::new(run_id, kind, ExecutionMode::Backfill);
    m.reason = if restatement {
        "1.4.0 counted orders the POS feed marked VOID (February to April 2025): restate with 1.5.0"
    } else {
        "load the first half of 2025 into the new Iceberg table"
    }
    .into();
    m.requested_by = REQUESTER.into();
    m.source = SourceSpec {
        kind: "memory".into(),
        name: "bronze.pos_region_days".into(),
        snapshot: Some(SNAPSHOT.into()),
        range: Some(InputRange::Dates {
            from: date(from, 1),
            to_exclusive: date(to + 1, 1),
        }),
        ..SourceSpec::default()
    };
    m.transform.name = TRANSFORM.into();
    m.transform.version = version.into();
    m.transform.git_commit = Some(if restatement { "c0ffee5" } else { "9a1b2c3" }.into());
    m.target = TargetSpec {
        kind: "iceberg_table".into(),
        name: table.into(),
        mutation: Some(mutation),
        partitions: months(from, to),
        consumers: vec!["finance-monthly-close".into(), "sales-dashboard".into()],
        ..TargetSpec::default()
    };
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.safety.max_rows_expected = Some(2_000);
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        business_delta_max_pct: Some(5),
        checks: vec![
            "unique(id)".into(),
            "accepted_values(region)".into(),
            "business_delta(amount_cents)".into(),
        ],
        ..ValidationPlan::default()
    });
    m
}

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

/// Every month partition of `snapshot`, read with the iceberg crate's scan (time travel).
///
/// The columns are selected in the table's schema order: iceberg 0.10.1 returns the selected
/// columns' data in schema order under the names in selection order, so two text columns selected
/// the other way round come back with each other's values.
async fn months_at(table: &Table, snapshot: i64) -> Result<BTreeMap<String, MonthTotals>, Error> {
    let ice = |e: backfill_iceberg::iceberg::Error| Error::adapter("example", e);
    let batches: Vec<_> = table
        .scan()
        .snapshot_id(snapshot)
        .select([
            "order_date",
            "orders",
            "amount_cents",
            "produced_by_run_id",
            "transform_version",
        ])
        .build()
        .map_err(ice)?
        .to_arrow()
        .await
        .map_err(ice)?
        .try_collect()
        .await
        .map_err(ice)?;
    let codec = SerdeRows::<StoredAmount>::new();
    let mut out: BTreeMap<String, MonthTotals> = BTreeMap::new();
    for b in &batches {
        for r in codec.decode(b).map_err(|e| Error::adapter("example", e))? {
            let m = out
                .entry(r.order_date.format("%Y-%m").to_string())
                .or_default();
            m.rows += 1;
            m.orders += r.orders;
            m.amount_cents += r.amount_cents;
            if !m.versions.contains(&r.transform_version) {
                m.versions.push(r.transform_version);
            }
            if !m.runs.contains(&r.produced_by_run_id) {
                m.runs.push(r.produced_by_run_id);
            }
        }
    }
    Ok(out)
}

fn describe(r: &EvidenceRecord) -> String {
    match r {
        EvidenceRecord::ManifestStored {
            digest, version, ..
        } => format!("manifest v{version} {digest}"),
        EvidenceRecord::Approved(a) => format!("approved {}", a.digest),
        EvidenceRecord::PlanResolved {
            snapshot, chunks, ..
        } => format!(
            "{} chunks at input snapshot {}",
            chunks.len(),
            snapshot.as_deref().unwrap_or("-")
        ),
        EvidenceRecord::Transition(t) => format!("{} -> {}: {}", t.from, t.to, t.reason),
        EvidenceRecord::ChunkStaged {
            chunk_id,
            output,
            digests,
            ..
        } => format!(
            "chunk {chunk_id}: {output} rows in {} Parquet partition(s)",
            digests.0.len()
        ),
        EvidenceRecord::Validation(o) => format!("{}: {:?}", o.validator, o.verdict),
        EvidenceRecord::Review { accept, reason } => format!("accept={accept}: {reason}"),
        EvidenceRecord::Published { receipt, previous } => format!(
            "{} rows, {} partitions, {}, replacing {}",
            receipt.rows,
            receipt.partitions.len(),
            receipt.reference,
            previous.as_ref().map_or("nothing", RunId::as_str)
        ),
        EvidenceRecord::PointerMoved { target, to, .. } => format!("{target} -> {to}"),
        EvidenceRecord::RolledBack {
            to,
            reason,
            receipt,
            ..
        } => format!("back to {to} ({}): {reason}", receipt.reference),
        other => other.kind().as_str().to_owned(),
    }
}

fn euros(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, (cents % 100).abs())
}

fn totals(t: &MonthTotals) -> String {
    format!(
        "{:>3} rows {:>5} orders {:>11} EUR  {}",
        t.rows,
        t.orders,
        euros(t.amount_cents),
        t.versions.join(",")
    )
}

/// Prints a summary: the steps, old against new per restated month, the evidence, the state after
/// the rollback, and last the line `iceberg table <namespace.table>`.
pub fn print(s: &Summary) {
    println!(
        "warehouse {} (SQLite catalog catalog.db, catalog name `backfill`, run store runs.db)",
        s.warehouse.display()
    );
    for line in &s.steps {
        println!("{line}");
    }
    if !s.changed {
        println!("nothing republished: both runs were finished on this warehouse before");
    }
    println!(
        "\nrestated months, history snapshot {} -> restatement snapshot {} (read back from the table):",
        s.history_snapshot, s.restatement_snapshot
    );
    for c in &s.restated {
        println!(
            "  {}  before {}\n           after  {}",
            c.month,
            totals(&c.before),
            totals(&c.after)
        );
    }
    println!("\nevidence of {RESTATEMENT_RUN}:");
    for line in &s.evidence {
        println!("  {line}");
    }
    println!("\nafter the rollback:");
    println!(
        "  main -> snapshot {} (run {}); the history's snapshot is {}; refs: {}",
        s.main_snapshot.map_or("none".into(), |x| x.to_string()),
        s.main_run.as_deref().unwrap_or("-"),
        s.history_snapshot,
        s.refs.join(", ")
    );
    for (run, state) in &s.states {
        println!("  run {run}: {state}");
    }
    for (m, t) in &s.current {
        println!("  {m}  {}", totals(t));
    }
    println!("iceberg table {}", s.table);
}

/// Restate three months of an Iceberg table by write-audit-publish, then roll back; no server.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// The warehouse directory (created when missing): data files, `catalog.db`, `runs.db`.
    #[arg(long, default_value = "./iceberg-warehouse")]
    warehouse: PathBuf,
    /// The table, `namespace.table`.
    #[arg(long, default_value = TABLE)]
    table: String,
}

/// The example's command line: parses the arguments, runs, prints the summary with
/// `iceberg table <namespace.table>` last.
pub async fn main() -> ExitCode {
    let a = Args::parse();
    let cfg = RestatementConfig {
        warehouse: a.warehouse,
        table: a.table,
    };
    match run(&cfg).await {
        Ok(s) => {
            print(&s);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("iceberg_restatement: {e}");
            ExitCode::FAILURE
        }
    }
}
