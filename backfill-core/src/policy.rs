//! Which sinks a run may write, by execution mode.

use std::fmt;

use crate::context::ExecutionMode;
use crate::error::{Error, Result};
use crate::manifest::RunManifest;
use crate::sink::SinkDescriptor;

/// Decides whether a run may write a sink. Checked by the runner before any work.
///
/// # Contract
/// 1. `check` is pure and fast; the runner calls it for the staging sink and the publisher.
/// 2. A refusal is [`Error::ForbiddenSink`] naming the run, the sink and the mode.
pub trait SinkPolicy: fmt::Debug + Send + Sync + 'static {
    /// Allows or refuses `sink` for `manifest`.
    fn check(&self, sink: &SinkDescriptor, manifest: &RunManifest) -> Result<()>;
}

/// `Arc<P>` and `Box<P>` are policies too (also for `P = dyn SinkPolicy`).
macro_rules! as_ref_impl {
    ($($ptr:ident)::+) => {
        #[deny(clippy::missing_trait_methods)]
        impl<P: SinkPolicy + ?Sized> SinkPolicy for $($ptr)::+<P> {
            fn check(&self, sink: &SinkDescriptor, manifest: &RunManifest) -> Result<()> {
                (**self).check(sink, manifest)
            }
        }
    };
}

as_ref_impl!(std::sync::Arc);
as_ref_impl!(Box);

/// The default: in Backfill, Replay and DryRun, a sink with external side effects is refused unless
/// the manifest allows side effects and (when it names sinks) names this one. Live and
/// Reconciliation are not restricted here.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultSinkPolicy;

impl SinkPolicy for DefaultSinkPolicy {
    fn check(&self, sink: &SinkDescriptor, manifest: &RunManifest) -> Result<()> {
        if !sink.external_side_effects {
            return Ok(());
        }
        if !matches!(
            manifest.mode,
            ExecutionMode::Backfill | ExecutionMode::Replay | ExecutionMode::DryRun
        ) {
            return Ok(());
        }
        let refuse = |reason: &str| Error::ForbiddenSink {
            run_id: manifest.run_id.clone(),
            sink: sink.name.clone(),
            mode: manifest.mode,
            reason: reason.into(),
        };
        if manifest.mode == ExecutionMode::DryRun {
            return Err(refuse("a dry run makes nothing visible"));
        }
        match &manifest.safety.side_effects {
            Some(p)
                if p.allowed
                    && (p.allowed_sinks.is_empty() || p.allowed_sinks.contains(&sink.name)) =>
            {
                Ok(())
            }
            Some(p) if p.allowed => Err(refuse(
                "the manifest allows side effects only for other sinks",
            )),
            _ => Err(refuse("the manifest forbids side effects")),
        }
    }
}

#[cfg(test)]
fn _obj_safe(_: &dyn SinkPolicy) {}
