//! What the example prints, and its command line.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Every month partition of `snapshot`, read with the iceberg crate's scan (time travel).
///
/// The columns are selected in the table's schema order: iceberg 0.10.1 returns the selected
/// columns' data in schema order under the names in selection order, so two text columns selected
/// the other way round come back with each other's values.
pub(super) async fn months_at(
    table: &Table,
    snapshot: i64,
) -> Result<BTreeMap<String, MonthTotals>, Error> {
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

pub(super) fn describe(r: &EvidenceRecord) -> String {
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

pub(super) fn euros(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, (cents % 100).abs())
}

pub(super) fn totals(t: &MonthTotals) -> String {
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
pub(super) struct Args {
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
