//! The SLA restatement as a pipeline binary on [`backfill_cli`]: `sla-backfill` is the operator's
//! `backfill` tool with the SLA transform and target registered, so the restatement can be driven
//! step by step (`docs/runbook.md`).
//!
//! [`registry`] opens the warehouse named by `--warehouse` / `BACKFILL_WAREHOUSE` (a SQLite path or
//! URL, or a PostgreSQL or MariaDB URL; [`DEFAULT_WAREHOUSE`] when unset), loads the generated
//! bronze case events once (the deterministic generator with its default seed), and registers:
//!
//! - one job for [`TRANSFORM_NAME`]: the executor runs `case-sla-transform` in the version the
//!   run's approved manifest names (2.4.1 with the as-recorded calendar, 3.1.0 with the restated
//!   one, or whichever calendar version the manifest pins), with the validators and the
//!   [`QUALITY_GATE`] the main job attaches, as worker [`WORKER`] so that a restarted `run` gives its
//!   predecessor's leases back at once;
//! - the target [`TARGET`]: its [`SqlPublisher`] (also the reader of what readers see), the
//!   [`SqlSink`] that stages it, rows keyed by case within their month partition and compared on the
//!   facts the owner's diff compares (due date, status, breach, breach in the month).
//!
//! The manifests are files in `examples/manifests/` ([`MANIFEST_FILES`]), written from
//! [`history_manifest`], [`dry_run_manifest`] and [`restatement_manifest`] with the snapshot pins of
//! the generated events ([`manifests`]); a test keeps them equal to what the code generates.
//!
//! Two environment variables, read only by this example, let tests interrupt or slow a run:
//! [`CRASH_AFTER_CHUNKS_ENV`] and [`CHUNK_DELAY_ENV`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backfill_cli::{ExecutorJob, Registry, Settings, TypedTarget};
use backfill_core::prelude::*;
use backfill_core::runner::{ProgressListener, RunEvent};
use backfill_core::validate::UniqueKey;
use backfill_sql::{SqlPool, SqlPublisher, SqlSink};

use super::calendar::{BusinessCalendar, CALENDAR_AS_RECORDED, CALENDAR_NAME, CALENDAR_RESTATED};
use super::checks::ActivePopulation;
use super::events::{generate, CaseHistory, GeneratorConfig};
use super::job::{regulatory_gate, restatement_validators};
use super::manifests::{
    dates, dry_run_input_range, dry_run_manifest, history_manifest, input_range, publish_range,
    reconciliation_manifest, restatement_manifest, QUALITY_GATE, TARGET,
};
use super::source::{case_event_source, load, pinned_snapshot, CaseEventSource};
use super::transform::{CaseSlaMonth, CaseSlaTransform, TRANSFORM_NAME};

/// The warehouse when `--warehouse` is not given: a SQLite file in the working directory.
pub const DEFAULT_WAREHOUSE: &str = "sla-warehouse.db";
/// The worker id of every run this binary executes (one host, one worker).
pub const WORKER: &str = "sla-backfill";
/// Exit the process (status 3) right after this many chunks were staged by one `run`: a crash in
/// the middle of a run, for tests and demos of resume.
pub const CRASH_AFTER_CHUNKS_ENV: &str = "BACKFILL_EXAMPLE_CRASH_AFTER_CHUNKS";
/// Sleep this many milliseconds after each staged chunk: a slow run, so that its Prometheus
/// endpoint can be scraped while it goes.
pub const CHUNK_DELAY_ENV: &str = "BACKFILL_EXAMPLE_CHUNK_DELAY_MS";
/// The shipped manifest files (in `examples/manifests/`), in the order the runbook uses them.
pub const MANIFEST_FILES: [&str; 4] = [
    "sla-history.json",
    "sla-dry-run.json",
    "sla-restatement.json",
    "sla-reconciliation.json",
];

fn adapter(message: String) -> Error {
    Error::Adapter {
        adapter: "sla-backfill",
        source: message.into(),
    }
}

/// The warehouse URL of the settings: a bare path is a SQLite file.
pub fn warehouse_url(settings: &Settings) -> String {
    let w = settings.warehouse.as_deref().unwrap_or(DEFAULT_WAREHOUSE);
    if w.contains("://") || w.starts_with("sqlite:") {
        w.to_owned()
    } else {
        format!("sqlite://{w}")
    }
}

/// Where the owner's review files go (the validator's `<run>-diff.csv`): next to a SQLite
/// warehouse, else the working directory.
pub fn review_dir(warehouse_url: &str) -> PathBuf {
    let Some(path) = warehouse_url
        .strip_prefix("sqlite://")
        .or_else(|| warehouse_url.strip_prefix("sqlite:"))
    else {
        return PathBuf::from(".");
    };
    let path = path.split('?').next().unwrap_or(path);
    match std::path::Path::new(path).parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The warehouse with its bronze events loaded, and the case source over them.
#[derive(Debug, Clone)]
pub struct Warehouse {
    /// The warehouse: bronze events, staging and the target.
    pub pool: SqlPool,
    /// The generated cases that were loaded (for the validators' active population).
    pub cases: Arc<Vec<CaseHistory>>,
    /// Case histories over `bronze.case_events`, every event before the end of [`input_range`].
    pub source: Arc<CaseEventSource>,
}

impl Warehouse {
    /// Connects to `url` and loads the generated events unless they are loaded already (other
    /// events in the table are refused).
    pub async fn open(url: &str) -> backfill_core::Result<Self> {
        let pool = SqlPool::connect(url).await?;
        let cases = generate(&GeneratorConfig::default());
        load(&pool, &cases).await?;
        let (_, events_before) = dates(&input_range());
        let source = Arc::new(case_event_source(pool.clone(), events_before)?);
        Ok(Self {
            pool,
            cases: Arc::new(cases),
            source,
        })
    }
}

/// The shipped manifests as the code generates them, pinned to the snapshots of this warehouse's
/// events: `(file name, manifest)` in [`MANIFEST_FILES`] order.
pub async fn manifests(w: &Warehouse) -> backfill_core::Result<Vec<(&'static str, RunManifest)>> {
    let old = CaseSlaTransform::v2_4_1(calendar(CALENDAR_AS_RECORDED)?);
    let new = CaseSlaTransform::v3_1_0(calendar(CALENDAR_RESTATED)?);
    let full = pinned_snapshot(&w.source, &input_range()).await?;
    let subset = pinned_snapshot(&w.source, &dry_run_input_range()).await?;
    Ok(vec![
        (MANIFEST_FILES[0], history_manifest(&old, &full)),
        (MANIFEST_FILES[1], dry_run_manifest(&new, &subset)),
        (MANIFEST_FILES[2], restatement_manifest(&new, &full)),
        (MANIFEST_FILES[3], reconciliation_manifest(&new, &full)),
    ])
}

fn calendar(version: &str) -> backfill_core::Result<BusinessCalendar> {
    BusinessCalendar::version(version)
        .ok_or_else(|| adapter(format!("unknown {CALENDAR_NAME} version {version}")))
}

/// The transform a manifest names: its version, on the calendar version it pins (by default the
/// as-recorded calendar for 2.4.1 and the restated one for 3.1.0).
pub fn transform_for(m: &RunManifest) -> backfill_core::Result<CaseSlaTransform> {
    let pinned = m
        .transform
        .reference_data
        .iter()
        .find(|r| r.name == CALENDAR_NAME)
        .map(|r| r.version.as_str());
    match m.transform.version.as_str() {
        "2.4.1" => Ok(CaseSlaTransform::v2_4_1(calendar(
            pinned.unwrap_or(CALENDAR_AS_RECORDED),
        )?)),
        "3.1.0" => Ok(CaseSlaTransform::v3_1_0(calendar(
            pinned.unwrap_or(CALENDAR_RESTATED),
        )?)),
        other => Err(Error::InvalidManifest {
            run_id: m.run_id.clone(),
            field: "transform.version".into(),
            message: format!(
                "{TRANSFORM_NAME} {other} is not released; this binary has 2.4.1 and 3.1.0"
            ),
        }),
    }
}

/// What the owner's diff compares for one case-month: due date, status, breach, breach in the
/// month (the same facts as [`DiffAgainstAccepted`](super::diff::DiffAgainstAccepted)). Ids,
/// lineage and the restatement reason differ in every run and are left out.
pub fn business_content(r: &CaseSlaMonth) -> String {
    format!(
        "{}|{}|{}|{}",
        r.due_on
            .map_or_else(|| "none".to_owned(), |d| d.to_string()),
        r.status,
        r.breached,
        r.breached_in_month
    )
}

/// Forwards progress to the tool's bar, then applies the test knobs.
#[derive(Debug)]
struct Knobs {
    inner: Arc<dyn ProgressListener>,
    crash_after: Option<usize>,
    delay: Option<Duration>,
    staged: AtomicUsize,
}

impl ProgressListener for Knobs {
    fn event(&self, run_id: &RunId, event: &RunEvent) {
        self.inner.event(run_id, event);
        if let RunEvent::ChunkStaged { .. } = event {
            if let Some(d) = self.delay {
                std::thread::sleep(d);
            }
            let n = self.staged.fetch_add(1, Ordering::SeqCst) + 1;
            if self.crash_after == Some(n) {
                eprintln!("{run_id}: injected crash after {n} chunks ({CRASH_AFTER_CHUNKS_ENV})");
                std::process::exit(3);
            }
        }
    }
}

fn knob<T: std::str::FromStr>(name: &str) -> backfill_core::Result<Option<T>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| adapter(format!("{name}={v}: not a number"))),
        _ => Ok(None),
    }
}

/// The progress listener with the knobs the environment asks for.
fn progress(inner: Arc<dyn ProgressListener>) -> backfill_core::Result<Arc<dyn ProgressListener>> {
    let crash_after = knob::<usize>(CRASH_AFTER_CHUNKS_ENV)?;
    let delay = knob::<u64>(CHUNK_DELAY_ENV)?.map(Duration::from_millis);
    if crash_after.is_none() && delay.is_none() {
        return Ok(inner);
    }
    Ok(Arc::new(Knobs {
        inner,
        crash_after,
        delay,
        staged: AtomicUsize::new(0),
    }))
}

/// The pipeline's registry: see the [module](self).
pub async fn registry(settings: Settings) -> backfill_core::Result<Registry> {
    let url = warehouse_url(&settings);
    let w = Warehouse::open(&url).await?;
    let sink = Arc::new(SqlSink::<CaseSlaMonth>::new(w.pool.clone(), TARGET).await?);
    let publisher = Arc::new(SqlPublisher::<CaseSlaMonth>::new(w.pool.clone(), TARGET).await?);
    let reviews = review_dir(&url);
    let job = {
        let (sink, publisher, source, cases) = (
            Arc::clone(&sink),
            Arc::clone(&publisher),
            Arc::clone(&w.source),
            Arc::clone(&w.cases),
        );
        ExecutorJob::new(
            TRANSFORM_NAME,
            Arc::clone(&w.source) as Arc<dyn BackfillSource<CaseHistory>>,
            move |control, m, listener| {
                let transform = transform_for(m)?;
                let history = transform.version() == "2.4.1";
                let validators: Vec<Arc<dyn Validator<CaseSlaMonth>>> = if history {
                    vec![Arc::new(UniqueKey::new("id", |r: &CaseSlaMonth| {
                        r.id.clone()
                    }))]
                } else {
                    let (from, to) = dates(m.publish_range.as_ref().unwrap_or(&publish_range()));
                    restatement_validators(
                        &sink,
                        ActivePopulation::of(&cases, from, to),
                        transform.calendar().clone(),
                        reviews.join(format!("{}-diff.csv", m.run_id)),
                    )?
                };
                let builder = Executor::builder(
                    control,
                    Arc::clone(&source) as Arc<dyn BackfillSource<CaseHistory>>,
                    Arc::new(transform),
                    Arc::clone(&sink) as Arc<dyn StagingSink<CaseSlaMonth>>,
                    Arc::clone(&publisher) as Arc<dyn TargetReader<CaseSlaMonth>>,
                )
                .options(RunnerOptions::worker(WORKER))
                .progress(progress(listener)?)
                .quality_gate(QUALITY_GATE, regulatory_gate(&sink)?);
                Ok(validators
                    .into_iter()
                    .fold(builder, |b, v| b.validator(v))
                    .build())
            },
        )
    };
    let target = TypedTarget::new(
        Arc::clone(&publisher) as Arc<dyn Publisher>,
        Arc::clone(&publisher) as Arc<dyn TargetReader<CaseSlaMonth>>,
        Arc::clone(&sink) as Arc<dyn StagingSink<CaseSlaMonth>>,
        |r: &CaseSlaMonth| r.case_id.clone(),
    )
    .compare_by(business_content)
    .measure("breaches", |r: &CaseSlaMonth| {
        i64::from(r.breached_in_month)
    })
    .measure("business_days_used", |r: &CaseSlaMonth| {
        r.business_days_used
    });
    Ok(Registry::new().job(job).target(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warehouse_urls_and_review_files() {
        let s = |w: Option<&str>| Settings {
            store: "sqlite://runs.db".into(),
            warehouse: w.map(str::to_owned),
        };
        assert_eq!(warehouse_url(&s(None)), "sqlite://sla-warehouse.db");
        assert_eq!(warehouse_url(&s(Some("/d/w.db"))), "sqlite:///d/w.db");
        assert_eq!(
            warehouse_url(&s(Some("postgres://h/db"))),
            "postgres://h/db"
        );
        assert_eq!(review_dir("sqlite:///d/w.db"), PathBuf::from("/d"));
        assert_eq!(review_dir("sqlite://w.db"), PathBuf::from("."));
        assert_eq!(review_dir("sqlite:w.db?mode=rwc"), PathBuf::from("."));
        assert_eq!(review_dir("postgres://h/db"), PathBuf::from("."));
    }

    #[test]
    fn the_manifest_names_the_transform_version_and_its_calendar() {
        let cal = |v| BusinessCalendar::version(v).unwrap();
        let old = history_manifest(&CaseSlaTransform::v2_4_1(cal(CALENDAR_AS_RECORDED)), "s");
        let new = restatement_manifest(&CaseSlaTransform::v3_1_0(cal(CALENDAR_RESTATED)), "s");
        let t = transform_for(&old).unwrap();
        assert_eq!(
            (t.version(), t.calendar().version_name()),
            ("2.4.1", CALENDAR_AS_RECORDED)
        );
        let t = transform_for(&new).unwrap();
        assert_eq!(
            (t.version(), t.calendar().version_name()),
            ("3.1.0", CALENDAR_RESTATED)
        );
        // The fingerprint matches what the manifest pins, so the executor's preflight passes.
        assert_eq!(new.transform.config_hash, Some(t.fingerprint().config_hash));
        let mut other = new.clone();
        other.transform.version = "9.9.9".into();
        let e = transform_for(&other).unwrap_err().to_string();
        assert!(
            e.contains("9.9.9") && e.contains("transform.version"),
            "{e}"
        );
    }
}
