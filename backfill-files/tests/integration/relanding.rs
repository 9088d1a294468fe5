//! Acceptance: a file re-landed with new content under `reject` is refused with evidence, under
//! `correction` supersedes the earlier content and the output equals the new file, and an
//! identical file is a no-op. Real runs (executor, staging, validation, publish) over a local
//! landing area, with the import ledger in SQLite.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use backfill_core::manifest::DuplicateFilePolicy;
use backfill_core::state::RunState;
use backfill_files::{
    Decision, FileSource, FilesState, ImportLedger, ImportStatus, Importer, LocalLanding,
};
use backfill_sql::{FileLedger, SqlPool};
use common::run::World;
use common::{day, Order};

const PATH: &str = "landing/2025/01/orders-2025-01-15.csv";

struct Setup {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    world: World,
    ledger: Arc<FileLedger>,
    landing: Arc<LocalLanding>,
}

async fn setup(name: &str) -> Setup {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("backfill-files-{name}-"))
        .tempdir()
        .expect("temp dir");
    let root = tmp.path().to_path_buf();
    let pool = SqlPool::connect(&format!("sqlite:{}", root.join("ledger.db").display()))
        .await
        .expect("sqlite");
    Setup {
        world: World::new(),
        ledger: Arc::new(FileLedger::new(pool).await.expect("ledger")),
        landing: Arc::new(LocalLanding::new(root.join("area"))),
        root,
        _tmp: tmp,
    }
}

impl Setup {
    fn source(&self) -> Arc<FileSource<Order>> {
        Arc::new(
            FileSource::new(Arc::<LocalLanding>::clone(&self.landing))
                .with_ledger(Arc::<FileLedger>::clone(&self.ledger) as Arc<dyn ImportLedger>),
        )
    }

    fn land(&self, content: &str) {
        common::write(&self.root.join("area"), PATH, content);
    }

    /// Runs `run_id` under `policy`, expects it published, commits its files.
    async fn import(
        &self,
        run_id: &str,
        policy: DuplicateFilePolicy,
    ) -> backfill_files::ImportReport {
        let m = common::manifest(run_id, day(1, 1), day(2, 1), policy);
        let report = self.world.run(m, self.source()).await.expect("the run");
        assert_eq!(report.state, RunState::Published, "{run_id}: {report:?}");
        Importer::new(
            Arc::<LocalLanding>::clone(&self.landing) as _,
            Arc::<FileLedger>::clone(&self.ledger) as _,
        )
        .commit(
            self.world.store.as_ref(),
            &run_id.into(),
            common::run::now(),
        )
        .await
        .expect("the import commit")
    }

    /// The decisions of `run_id`'s persisted plan.
    async fn decisions(&self, run_id: &str) -> Vec<(String, Decision)> {
        use backfill_core::store::RunStore;
        let plan = self
            .world
            .store
            .plan(&run_id.into())
            .await
            .expect("the store")
            .expect("a plan");
        plan.chunks
            .iter()
            .flat_map(|c| c.state.parse::<FilesState>().expect("files state").files)
            .map(|f| (f.path, f.decision))
            .collect()
    }

    fn cents(&self) -> Vec<(String, i64)> {
        self.world
            .visible()
            .into_iter()
            .map(|r| (r.id, r.cents))
            .collect()
    }

    fn archived(&self, status: &str, content: &str) -> bool {
        let sha = common::sha(content);
        self.root
            .join("area/archive")
            .join(status)
            .join(&sha[..12])
            .join(PATH)
            .is_file()
    }
}

fn v1() -> String {
    common::csv(&common::orders("o", day(1, 15), 3, 100))
}

fn v2() -> String {
    common::csv(&common::orders("o", day(1, 15), 2, 500))
}

fn exists(root: &Path, rel: &str) -> bool {
    root.join("area").join(rel).is_file()
}

#[tokio::test]
async fn a_relanded_file_under_reject_is_refused_with_evidence() {
    let s = setup("reject").await;
    s.land(&v1());
    let first = s.import("bf-files-r1", DuplicateFilePolicy::Reject).await;
    assert_eq!(first.accepted, vec![PATH.to_owned()]);
    assert!(s.archived("accepted", &v1()) && !exists(&s.root, PATH));
    let before = s.cents();
    assert_eq!(
        before,
        vec![
            ("o-0".into(), 100),
            ("o-1".into(), 101),
            ("o-2".into(), 102)
        ]
    );

    s.land(&v2());
    let second = s.import("bf-files-r2", DuplicateFilePolicy::Reject).await;
    // Refused, with the reason naming the file and both hashes, in the persisted plan and the report.
    let (old, new) = (common::sha(&v1()), common::sha(&v2()));
    let decisions = s.decisions("bf-files-r2").await;
    let reason = decisions
        .iter()
        .find_map(|(p, d)| match d {
            Decision::Reject { reason } if p == PATH => Some(reason.clone()),
            _ => None,
        })
        .expect("the re-landed file is rejected in the plan");
    assert!(
        reason.contains(PATH) && reason.contains(&old) && reason.contains(&new),
        "{reason}"
    );
    assert_eq!(second.rejected, vec![(PATH.to_owned(), reason)]);
    assert!(second.accepted.is_empty());
    // The dates keep the imported content: the target is unchanged.
    assert_eq!(s.cents(), before);
    // The ledger records the refusal; the refused file is archived as rejected.
    let rows = ImportLedger::known(s.ledger.as_ref(), "landing.orders", &[PATH.to_owned()], &[])
        .await
        .expect("ledger");
    let status = |sha: &str| rows.iter().find(|r| r.sha256 == sha).map(|r| r.status);
    assert_eq!(status(&old), Some(ImportStatus::Accepted));
    assert_eq!(status(&new), Some(ImportStatus::Rejected));
    assert!(s.archived("rejected", &v2()) && !exists(&s.root, PATH));
}

#[tokio::test]
async fn a_relanded_file_under_correction_supersedes_and_the_output_is_the_new_file() {
    let s = setup("correction").await;
    s.land(&v1());
    s.import("bf-files-c1", DuplicateFilePolicy::Correction)
        .await;
    s.land(&v2());
    let second = s
        .import("bf-files-c2", DuplicateFilePolicy::Correction)
        .await;
    let (old, new) = (common::sha(&v1()), common::sha(&v2()));
    assert_eq!(second.corrections, vec![(PATH.to_owned(), old.clone())]);
    assert_eq!(
        s.decisions("bf-files-c2").await,
        vec![(
            PATH.to_owned(),
            Decision::Correction {
                corrects: old.clone()
            }
        )]
    );
    // The output equals the new file: its rows, from it, and none of the old one's.
    let visible = s.world.visible();
    assert_eq!(s.cents(), vec![("o-0".into(), 500), ("o-1".into(), 501)]);
    assert!(visible
        .iter()
        .all(|r| r.file_sha256 == new && r.file == PATH));
    let rows = ImportLedger::known(s.ledger.as_ref(), "landing.orders", &[PATH.to_owned()], &[])
        .await
        .expect("ledger");
    let status = |sha: &str| rows.iter().find(|r| r.sha256 == sha).map(|r| r.status);
    assert_eq!(status(&old), Some(ImportStatus::Superseded));
    assert_eq!(status(&new), Some(ImportStatus::Accepted));
    assert!(s.archived("accepted", &v2()));
}

#[tokio::test]
async fn an_identical_relanded_file_is_a_no_op() {
    for policy in [
        DuplicateFilePolicy::Reject,
        DuplicateFilePolicy::Correction,
        DuplicateFilePolicy::Ignore,
        DuplicateFilePolicy::Reprocess,
    ] {
        let s = setup(&format!("identical-{}", policy.as_str())).await;
        s.land(&v1());
        s.import("bf-files-i1", policy).await;
        let before = s.world.visible();
        s.land(&v1());
        let second = s.import("bf-files-i2", policy).await;
        assert!(
            second.accepted.is_empty() && second.rejected.is_empty(),
            "{policy:?}: {second:?}"
        );
        assert_eq!(second.skipped.len(), 1, "{policy:?}");
        // The same rows, still from the first import's content.
        let cents = |rows: &[common::run::OrderOut]| -> Vec<(String, i64, String)> {
            rows.iter()
                .map(|r| (r.id.clone(), r.cents, r.file_sha256.clone()))
                .collect()
        };
        assert_eq!(cents(&s.world.visible()), cents(&before), "{policy:?}");
        let rows =
            ImportLedger::known(s.ledger.as_ref(), "landing.orders", &[PATH.to_owned()], &[])
                .await
                .expect("ledger");
        assert_eq!(rows.len(), 1, "{policy:?}: one content, one ledger row");
        assert_eq!(rows[0].run_id, "bf-files-i1");
        assert!(s.archived("ignored", &v1()));
    }
}
