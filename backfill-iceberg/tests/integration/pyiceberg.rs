//! PyIceberg as an independent reader: the core executor publishes into a month-partitioned table
//! on an embedded SQLite catalog (run A appends three months directly, run B restates two of them by
//! replace-partitions through write-audit-publish, then B is rolled back), and after each step
//! PyIceberg (`tests/pyiceberg_check.py`, run with the interpreter in `BACKFILL_TEST_PYICEBERG`)
//! reads the table and checks rows per month partition, the current snapshot's `backfill.run-id`,
//! the `produced_by_run_id` lineage column, and after the rollback that `main` is A's snapshot again.

use crate::common;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use backfill_core::memory::{MemorySource, MemoryStore};
use backfill_core::prelude::*;
use backfill_iceberg::iceberg::spec::{
    NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec,
};
use backfill_iceberg::iceberg::{NamespaceIdent, TableIdent};
use backfill_iceberg::{
    lineage_fields, IcebergCatalog, IcebergPublisher, IcebergStagingSink, PublishFlow,
};
use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The PyIceberg interpreter; panics under BACKFILL_REQUIRE_SERVICES=1 when unset.
fn pyiceberg() -> Option<String> {
    match std::env::var("BACKFILL_TEST_PYICEBERG") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var("BACKFILL_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "BACKFILL_TEST_PYICEBERG is not set but BACKFILL_REQUIRE_SERVICES=1"
            );
            eprintln!(
                "SKIPPED: no PyIceberg (set BACKFILL_TEST_PYICEBERG to a python with \
                 pyiceberg[sql-sqlite,pyarrow]; scripts/services.sh's services_pyiceberg installs one)"
            );
            None
        }
    }
}

/// Runs the check script; returns what PyIceberg saw, panicking with its report on a mismatch.
fn check(python: &str, dir: &Path, table: &TableIdent, expected: &Value) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pyiceberg_check.py");
    let out = Command::new(python)
        .arg(script)
        .arg(dir.join("catalog.db"))
        .arg(dir)
        .arg(table.to_string())
        .arg(expected.to_string())
        .output()
        .expect("running the PyIceberg check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "PyIceberg disagrees (exit {:?}):\n{stderr}\nsaw: {stdout}\nexpected: {expected}",
        out.status.code()
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A sale: the table's user columns (the lineage columns follow them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sale {
    id: String,
    event_date: NaiveDate,
    amount: i64,
}

impl OutputRow for Sale {
    fn partition(&self) -> Cow<'_, str> {
        Cow::Owned(self.event_date.format("%Y-%m").to_string())
    }
}

/// One input record: a day, a sequence number in the day.
#[derive(Debug, Clone)]
struct Order {
    day: NaiveDate,
    n: u32,
    cents: i64,
}

/// v1 keeps every order; v2 drops every third order of a day (test orders v1 kept) and adds a fee,
/// so the restated months have other row counts and amounts.
#[derive(Debug)]
struct Sales {
    version: &'static str,
}

impl DeterministicTransform for Sales {
    type Input = Order;
    type Output = Sale;

    fn name(&self) -> &str {
        "sales"
    }

    fn version(&self) -> &str {
        self.version
    }

    fn apply(
        &self,
        o: &Order,
        ctx: &TransformContext,
        out: &mut Vec<Sale>,
    ) -> Result<(), TransformError> {
        if let Some(amount) = amount(self.version, o) {
            out.push(Sale {
                id: ctx.output_id(&[&o.day.to_string(), &o.n.to_string()]),
                event_date: o.day,
                amount,
            });
        }
        Ok(())
    }
}

/// The amount `version` makes of an order, `None` when it drops it.
fn amount(version: &str, o: &Order) -> Option<i64> {
    if version.starts_with('2') {
        (!o.n.is_multiple_of(3)).then_some(o.cents + 25)
    } else {
        Some(o.cents)
    }
}

fn day(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, m, d).expect("date")
}

/// Orders of January to March 2025: 2, 3 and 4 a day.
fn orders() -> Vec<Order> {
    let mut out = Vec::new();
    let mut d = day(1, 1);
    while d < day(4, 1) {
        let per_day = match d.format("%m").to_string().as_str() {
            "01" => 2,
            "02" => 3,
            _ => 4,
        };
        for n in 0..per_day {
            out.push(Order {
                day: d,
                n,
                cents: 1_000 + i64::from(n) * 10,
            });
        }
        d = d.succ_opt().expect("next day");
    }
    out
}

fn schema() -> (Schema, UnboundPartitionSpec) {
    let mut fields = vec![
        NestedField::required(1, "id", Type::Primitive(PrimitiveType::String)).into(),
        NestedField::required(2, "event_date", Type::Primitive(PrimitiveType::Date)).into(),
        NestedField::required(3, "amount", Type::Primitive(PrimitiveType::Long)).into(),
    ];
    fields.extend(lineage_fields(4));
    let schema = Schema::builder()
        .with_schema_id(0)
        .with_fields(fields)
        .build()
        .expect("schema");
    let spec = UnboundPartitionSpec::builder()
        .add_partition_field(2, "event_month", Transform::Month)
        .expect("spec")
        .build();
    (schema, spec)
}

const OWNER: &str = "sales-owner";

fn manifest(
    run_id: &str,
    version: &str,
    table: &TableIdent,
    mutation: Mutation,
    months: &[u32],
) -> RunManifest {
    let kind = match mutation {
        Mutation::ReplacePartitions => RunKind::Restatement,
        _ => RunKind::Backfill,
    };
    let first = *months.first().expect("months");
    let last = *months.last().expect("months");
    let mut m = RunManifest::new(run_id, kind, ExecutionMode::Backfill);
    m.reason = "pyiceberg cross-check".into();
    m.requested_by = "sales-platform".into();
    m.source = SourceSpec {
        kind: "memory".into(),
        name: "bronze.orders".into(),
        snapshot: Some("orders-1".into()),
        range: Some(InputRange::Dates {
            from: day(first, 1),
            to_exclusive: day(last + 1, 1),
        }),
        ..SourceSpec::default()
    };
    m.transform.name = "sales".into();
    m.transform.version = version.into();
    m.target = TargetSpec {
        kind: "iceberg_table".into(),
        name: table.to_string(),
        mutation: Some(mutation),
        partitions: months
            .iter()
            .map(|mo| PartitionKey::from(format!("2025-{mo:02}")))
            .collect(),
        ..TargetSpec::default()
    };
    m.safety.side_effects = Some(SideEffectPolicy::default());
    m.validation = Some(ValidationPlan {
        checksum_required: true,
        ..ValidationPlan::default()
    });
    m
}

/// What the transform `version` produces per month of `months`: (rows, amount).
fn expected(version: &str, months: &[u32]) -> BTreeMap<String, (u64, i64)> {
    let mut per: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for o in orders() {
        if !months.contains(&o.day.month()) {
            continue;
        }
        if let Some(a) = amount(version, &o) {
            let e = per.entry(o.day.format("%Y-%m").to_string()).or_default();
            e.0 += 1;
            e.1 += a;
        }
    }
    per
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyiceberg_reads_append_restatement_and_rollback() {
    let Some(python) = pyiceberg() else { return };
    let dir = common::fresh_dir("pyiceberg");
    let catalog = IcebergCatalog::embedded(&dir).await.unwrap();
    assert_eq!(catalog.name(), "backfill");
    let table = TableIdent::new(NamespaceIdent::new("sales".into()), "daily_sales".into());
    let (schema, spec) = schema();
    catalog.ensure_table(&table, schema, spec).await.unwrap();

    let at = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).single().unwrap();
    let store = Arc::new(MemoryStore::new());
    let sink = Arc::new(IcebergStagingSink::<Sale>::new(
        catalog.clone(),
        table.clone(),
    ));
    let direct = Arc::new(IcebergPublisher::<Sale>::new(
        catalog.clone(),
        table.clone(),
    ));
    let wap = Arc::new(
        IcebergPublisher::<Sale>::new(catalog.clone(), table.clone())
            .flow(PublishFlow::WriteAuditPublish),
    );
    // One store, two control planes: A is published directly, B by write-audit-publish.
    let control = |p: &Arc<IcebergPublisher<Sale>>| {
        Control::new(Arc::clone(&store) as Arc<dyn RunStore>)
            .with_clock(Arc::new(FixedClock(at)))
            .with_target(Arc::clone(p) as Arc<dyn Publisher>)
            .unwrap()
    };
    let executor = |c: &Control, p: &Arc<IcebergPublisher<Sale>>, version| {
        let source = MemorySource::by_date(orders(), |o: &Order| o.day).snapshot("orders-1");
        Executor::builder(
            c.clone(),
            Arc::new(source),
            Arc::new(Sales { version }),
            Arc::clone(&sink) as Arc<dyn StagingSink<Sale>>,
            Arc::clone(p) as Arc<dyn TargetReader<Sale>>,
        )
        .options(RunnerOptions::worker("pyiceberg-test"))
        .build()
    };
    let rows = |per: &BTreeMap<String, (u64, i64)>| -> Value {
        per.iter()
            .map(|(m, (n, _))| (m.clone(), json!(n)))
            .collect()
    };
    let amounts = |per: &BTreeMap<String, (u64, i64)>| -> Value {
        per.iter()
            .map(|(m, (_, a))| (m.clone(), json!(a)))
            .collect()
    };
    let lineage = |runs: &[(&str, &str)]| -> Value {
        runs.iter()
            .map(|(m, r)| ((*m).to_owned(), json!([r])))
            .collect()
    };

    // Run A: three months appended on main.
    let (run_a, run_b) = ("bf-sales-a", "bf-sales-b");
    let ca = control(&direct);
    let approved = manifest(
        run_a,
        "1.0.0",
        &table,
        Mutation::AppendWithRunId,
        &[1, 2, 3],
    )
    .approve(OWNER, at)
    .unwrap();
    ca.submit(&approved).await.unwrap();
    let r = executor(&ca, &direct, "1.0.0")
        .run(approved.run_id())
        .await
        .unwrap();
    assert_eq!(r.state, RunState::Published, "{r:?}");
    let v1 = expected("1.0.0", &[1, 2, 3]);
    assert_eq!(v1["2025-01"].0, 62);
    assert_eq!(v1["2025-02"].0, 84);
    assert_eq!(v1["2025-03"].0, 124);
    let after_a = check(
        &python,
        &dir,
        &table,
        &json!({
            "run_id": run_a,
            "operation": "append",
            "refs": ["main"],
            "rows": rows(&v1),
            "partition_rows": rows(&v1),
            "amounts": amounts(&v1),
            "lineage": lineage(&[("2025-01", run_a), ("2025-02", run_a), ("2025-03", run_a)]),
        }),
    );
    let snapshot_a = after_a["snapshot_id"].as_i64().expect("snapshot id");

    // Run B: February and March restated by replace-partitions, through the branch bf-<run>.
    let cb = control(&wap);
    let approved = manifest(run_b, "2.0.0", &table, Mutation::ReplacePartitions, &[2, 3])
        .approve(OWNER, at)
        .unwrap();
    cb.submit(&approved).await.unwrap();
    let r = executor(&cb, &wap, "2.0.0")
        .run(approved.run_id())
        .await
        .unwrap();
    assert_eq!(r.state, RunState::Published, "{r:?}");
    let receipt = r.receipt.expect("receipt");
    assert!(
        receipt.reference.contains("via branch bf-sales-b"),
        "{receipt:?}"
    );
    let v2 = expected("2.0.0", &[2, 3]);
    assert_eq!(v2["2025-02"].0, 56, "other row counts than v1's 84");
    assert_eq!(v2["2025-03"].0, 62, "other row counts than v1's 124");
    let mut restated = v1.clone();
    restated.extend(v2.clone());
    let after_b = check(
        &python,
        &dir,
        &table,
        &json!({
            "run_id": run_b,
            "operation": "overwrite",
            "parent_id": snapshot_a,
            // The audit branch is dropped once main is fast-forwarded.
            "refs": ["main"],
            "rows": rows(&restated),
            "partition_rows": rows(&restated),
            "amounts": amounts(&restated),
            "lineage": lineage(&[("2025-01", run_a), ("2025-02", run_b), ("2025-03", run_b)]),
        }),
    );
    let snapshot_b = after_b["snapshot_id"].as_i64().expect("snapshot id");
    assert_ne!(snapshot_b, snapshot_a);

    // Roll B back through the control plane: main is A's snapshot again.
    let back = cb
        .rollback_run(&RunId::from(run_b), OWNER, "pyiceberg cross-check")
        .await
        .unwrap();
    assert_eq!(back.run_id.as_str(), run_a);
    assert_eq!(
        cb.run(&RunId::from(run_a)).await.unwrap().state,
        RunState::Published
    );
    assert_eq!(
        cb.run(&RunId::from(run_b)).await.unwrap().state,
        RunState::RolledBack
    );
    let after_rollback = check(
        &python,
        &dir,
        &table,
        &json!({
            "snapshot_id": snapshot_a,
            "run_id": run_a,
            "refs": ["main"],
            "rows": rows(&v1),
            "partition_rows": rows(&v1),
            "amounts": amounts(&v1),
            "lineage": lineage(&[("2025-01", run_a), ("2025-02", run_a), ("2025-03", run_a)]),
        }),
    );
    // B's snapshot stays in the history, readable by time travel, just no longer on main.
    let snapshots = after_rollback["snapshots"].as_array().expect("snapshots");
    assert_eq!(snapshots.len(), 2, "{after_rollback}");
    assert_eq!(snapshots[0]["snapshot_id"], json!(snapshot_a));
    assert_eq!(snapshots[1]["snapshot_id"], json!(snapshot_b));
    assert_eq!(snapshots[1]["parent_id"], json!(snapshot_a));
    assert_eq!(snapshots[1]["run_id"], json!(run_b));
    assert_eq!(snapshots[1]["rows"], rows(&restated));

    // A write-audit-publish run abandoned after its branch commit leaves `bf-<run>` behind (made
    // here by PyIceberg, another writer, at A's snapshot). Discarding the run drops the branch and
    // leaves main where it was.
    let abandoned = "bf-sales-c";
    branch(&python, &dir, &table, abandoned, snapshot_a);
    assert!(
        check(
            &python,
            &dir,
            &table,
            &json!({ "snapshot_id": snapshot_a, "refs": [abandoned, "main"] })
        )["refs"]
            .as_array()
            .is_some_and(|r| r.len() == 2),
        "PyIceberg made the branch"
    );
    sink.discard(&RunId::from(abandoned)).await.unwrap();
    check(
        &python,
        &dir,
        &table,
        &json!({ "snapshot_id": snapshot_a, "run_id": run_a, "refs": ["main"], "rows": rows(&v1) }),
    );
    // Discarding again (or a run that never had a branch) changes nothing.
    sink.discard(&RunId::from(abandoned)).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Creates the branch `name` at `snapshot_id` with PyIceberg's own commit path.
fn branch(python: &str, dir: &Path, table: &TableIdent, name: &str, snapshot_id: i64) {
    let script = format!(
        "from pyiceberg.catalog.sql import SqlCatalog\n\
         c = SqlCatalog('backfill', uri='sqlite:///{db}', warehouse='file://{wh}')\n\
         t = c.load_table('{table}')\n\
         t.manage_snapshots().create_branch({snapshot_id}, '{name}').commit()\n",
        db = dir.join("catalog.db").display(),
        wh = dir.display(),
    );
    let out = Command::new(python)
        .args(["-c", &script])
        .output()
        .expect("running PyIceberg");
    assert!(
        out.status.success(),
        "PyIceberg could not create branch {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
