//! The deletion (tombstone) registry: subjects whose data must not be replayed.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::error::{Error, Result};

/// A registry of forgotten subjects (people, accounts, devices) whose records a replay must never
/// stage, such as a table of erasure requests.
///
/// # Contract
/// 1. It only grows: once [`forgotten`](Self::forgotten) says a subject is forgotten, it says so
///    forever after. There is no way to un-forget through this trait.
/// 2. [`version`](Self::version) changes whenever a subject is added, and only then (for an
///    append-only registry, the number of subjects it names): two reads that see the same version
///    see the same subjects.
/// 3. [`forgotten`](Self::forgotten) answers a whole batch in one round trip (or a few for very
///    large batches), never one per subject; the answer has one entry per subject asked, in order.
/// 4. It has no side effects, and errors that may pass are
///    [`ErrorKind::Transient`](crate::ErrorKind).
#[async_trait]
pub trait ForgottenSubjects: fmt::Debug + Send + Sync + 'static {
    /// The registry's name, as the manifest's `privacy.forgotten_registry` names it.
    fn name(&self) -> &str;

    /// The registry's current version (see the contract).
    async fn version(&self) -> Result<u64>;

    /// For each subject, whether it is forgotten.
    async fn forgotten(&self, subjects: &[&str]) -> Result<Vec<bool>>;
}

#[async_trait]
impl<R: ForgottenSubjects + ?Sized> ForgottenSubjects for Arc<R> {
    fn name(&self) -> &str {
        (**self).name()
    }

    async fn version(&self) -> Result<u64> {
        (**self).version().await
    }

    async fn forgotten(&self, subjects: &[&str]) -> Result<Vec<bool>> {
        (**self).forgotten(subjects).await
    }
}

/// A registry in memory, for tests and small tools. Clones share the same subjects.
///
/// ```
/// # tokio_test_block_on(async {
/// use backfill_core::privacy::{ForgottenSubjects, MemoryForgotten};
/// let r = MemoryForgotten::new("erasure-requests");
/// r.forget("alice");
/// assert_eq!(r.forgotten(&["alice", "bob"]).await.unwrap(), vec![true, false]);
/// assert_eq!(r.version().await.unwrap(), 1);
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryForgotten {
    name: String,
    subjects: Arc<Mutex<BTreeSet<String>>>,
    lookups: Arc<AtomicU64>,
}

impl fmt::Debug for MemoryForgotten {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryForgotten")
            .field("name", &self.name)
            .field("subjects", &self.len())
            .finish()
    }
}

impl MemoryForgotten {
    /// An empty registry.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            subjects: Arc::default(),
            lookups: Arc::default(),
        }
    }

    /// Forgets a subject; returns whether it was not forgotten before.
    pub fn forget(&self, subject: impl Into<String>) -> bool {
        self.subjects
            .lock()
            .map(|mut s| s.insert(subject.into()))
            .unwrap_or(false)
    }

    /// How many subjects it names.
    pub fn len(&self) -> usize {
        self.subjects.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Whether it names no subject.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many [`forgotten`](ForgottenSubjects::forgotten) calls (round trips) it answered.
    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ForgottenSubjects for MemoryForgotten {
    fn name(&self) -> &str {
        &self.name
    }

    async fn version(&self) -> Result<u64> {
        Ok(self.len() as u64)
    }

    async fn forgotten(&self, subjects: &[&str]) -> Result<Vec<bool>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let set = self
            .subjects
            .lock()
            .map_err(|_| Error::adapter("privacy", "memory registry poisoned"))?;
        Ok(subjects.iter().map(|s| set.contains(*s)).collect())
    }
}
