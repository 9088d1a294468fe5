//! A file that changes between planning and reading fails the run with an error naming it; the
//! target is untouched.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backfill_core::manifest::DuplicateFilePolicy;
use backfill_files::{FileSource, LandedObject, Landing, LocalLanding};
use common::run::World;
use common::{day, Order};

/// A landing area whose files change right after planning hashed them: `get` of one path
/// returns other content.
#[derive(Debug)]
struct Changing {
    inner: LocalLanding,
    path: &'static str,
}

#[async_trait]
impl Landing for Changing {
    async fn list(&self, prefix: &str) -> backfill_core::Result<Vec<LandedObject>> {
        self.inner.list(prefix).await
    }
    async fn get(&self, path: &str) -> backfill_core::Result<Vec<u8>> {
        let mut bytes = self.inner.get(path).await?;
        if path == self.path {
            bytes.extend_from_slice(b"x9,2025-01-10,1\n");
        }
        Ok(bytes)
    }
    async fn hash(&self, path: &str) -> backfill_core::Result<(u64, String)> {
        self.inner.hash(path).await
    }
    async fn exists(&self, path: &str) -> backfill_core::Result<bool> {
        self.inner.exists(path).await
    }
    async fn archive(&self, from: &str, to: &str) -> backfill_core::Result<()> {
        self.inner.archive(from, to).await
    }
}

#[tokio::test]
async fn a_run_over_a_file_changed_after_planning_fails_naming_it() {
    let tmp = common::temp();
    let root = tmp.path().to_path_buf();
    common::landing(&root);
    let path = "landing/2025/01/orders-2025-01-10.csv";
    let landing = Arc::new(Changing {
        inner: LocalLanding::new(&root),
        path,
    });
    let source = Arc::new(FileSource::<Order>::new(landing));
    let world = World::new();
    let m = common::manifest(
        "bf-changed",
        day(1, 1),
        day(4, 1),
        DuplicateFilePolicy::Reject,
    );
    let outcome = tokio::time::timeout(Duration::from_secs(60), world.run(m, source))
        .await
        .expect("the run ends instead of retrying forever");
    let err = outcome.expect_err("the run fails");
    assert!(err.to_string().contains(path), "{err}");
    assert!(world.visible().is_empty());
}
