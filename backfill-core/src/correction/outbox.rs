//! Where correction events go: the trait outbox adapters (a SQL table, a topic) implement.

use std::fmt;

use async_trait::async_trait;

use super::CorrectionEvent;
use crate::error::Result;
use crate::ids::RunId;
use crate::publish::PublishReceipt;
use crate::sink::SinkDescriptor;

/// An outbox of correction events: the events of a run and its publication receipt, written
/// together and once.
///
/// Implemented by `backfill_sql::SqlOutbox` (PostgreSQL, MariaDB, SQLite) and
/// [`MemoryOutbox`](crate::memory::MemoryOutbox); [`CorrectionPublisher`](super::CorrectionPublisher)
/// is its only caller in this crate.
///
/// # Contract
/// 1. `write` is atomic per run: once it returns `Ok`, every one of `events` and the receipt are
///    stored; after an error, a crash or a dropped future, either all of them are or none is, never a
///    part.
/// 2. `write` is idempotent per run: when a receipt for `run_id` is stored already, it writes nothing
///    (whatever `events` holds) and returns the stored receipt.
/// 3. An event id is stored at most once: a `write` whose events repeat an id, among themselves or
///    with events already stored for another run, fails and writes nothing.
/// 4. `inspect` answers from the outbox itself, not from this process's memory, so that after an
///    unknown outcome (a timeout after commit) nobody writes the run twice: `Some` exactly when the
///    run's events and receipt are stored, with the receipt `write` returned.
/// 5. `write` returns the receipt as stored: the given one, where an outbox may fill in
///    [`reference`](PublishReceipt::reference) (a transaction, offsets) and nothing else.
/// 6. `descriptor().name` is the outbox's name (table, topic); `external_side_effects` says whether
///    a write reaches consumers directly (a live topic does; a table a relay forwards from does not).
#[async_trait]
pub trait CorrectionOutbox: fmt::Debug + Send + Sync + 'static {
    /// What this outbox is.
    fn descriptor(&self) -> SinkDescriptor;

    /// Writes a run's events and receipt, atomically, unless the run's receipt is stored already.
    async fn write(
        &self,
        run_id: &RunId,
        events: &[CorrectionEvent],
        receipt: &PublishReceipt,
    ) -> Result<PublishReceipt>;

    /// The receipt of the run's write, if it happened.
    async fn inspect(&self, run_id: &RunId) -> Result<Option<PublishReceipt>>;
}

/// `Arc<O>` and `Box<O>` are outboxes too (also for `O = dyn CorrectionOutbox`).
macro_rules! as_ref_impl {
    ($($ptr:ident)::+) => {
        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<O: CorrectionOutbox + ?Sized> CorrectionOutbox for $($ptr)::+<O> {
            fn descriptor(&self) -> SinkDescriptor {
                (**self).descriptor()
            }

            async fn write(
                &self,
                run_id: &RunId,
                events: &[CorrectionEvent],
                receipt: &PublishReceipt,
            ) -> Result<PublishReceipt> {
                (**self).write(run_id, events, receipt).await
            }

            async fn inspect(&self, run_id: &RunId) -> Result<Option<PublishReceipt>> {
                (**self).inspect(run_id).await
            }
        }
    };
}

as_ref_impl!(std::sync::Arc);
as_ref_impl!(Box);

#[cfg(test)]
mod tests {
    use super::*;

    fn _obj_safe(_: &dyn CorrectionOutbox) {}
}
