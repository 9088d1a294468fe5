//! Which sinks a run may write, by execution mode.

use std::fmt;

use crate::context::ExecutionMode;
use crate::error::{Error, Result};
use crate::manifest::RunManifest;
use crate::sink::SinkDescriptor;
use crate::sink_class::SinkRule;

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

/// The default, in every mode: the sink's [class](crate::sink_class) decides what the mode may do
/// (allowed, only into a target of the run's own, refused); a sink with external side effects needs
/// the approved manifest to allow them (and, when it names sinks, to name this one), live runs
/// included; a dry run or a reconciliation writes nothing outside staging. In backfill and replay
/// modes, a class refused or isolated by default is allowed for a sink the manifest names in
/// `safety.side_effects.allowed_sinks` with side effects allowed: an approved, explicit decision.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultSinkPolicy;

impl SinkPolicy for DefaultSinkPolicy {
    fn check(&self, sink: &SinkDescriptor, manifest: &RunManifest) -> Result<()> {
        let mode = manifest.mode;
        let refuse = |reason: String| Error::ForbiddenSink {
            run_id: manifest.run_id.clone(),
            sink: sink.name.clone(),
            mode,
            reason,
        };
        let effects = manifest.safety.side_effects.as_ref().filter(|p| p.allowed);
        let named = effects.is_some_and(|p| p.allowed_sinks.contains(&sink.name));
        let historical = matches!(mode, ExecutionMode::Backfill | ExecutionMode::Replay);
        if let Some(class) = sink.class {
            match class.rule(mode) {
                SinkRule::Allowed => {}
                SinkRule::Isolated if sink.isolated || (historical && named) => {}
                SinkRule::Isolated => {
                    return Err(refuse(format!(
                        "a {class} sink needs a target of the run's own in {mode} mode, not the one live readers use"
                    )))
                }
                SinkRule::Refused if historical && named => {}
                SinkRule::Refused => {
                    return Err(refuse(format!(
                        "a {class} sink is refused in {mode} mode{}",
                        if historical {
                            " unless the approved manifest names it in safety.side_effects.allowed_sinks"
                        } else {
                            ""
                        }
                    )))
                }
            }
        }
        if !sink.external_side_effects {
            return Ok(());
        }
        if matches!(mode, ExecutionMode::DryRun | ExecutionMode::Reconciliation) {
            return Err(refuse(format!(
                "a {mode} run makes nothing visible outside staging"
            )));
        }
        match &manifest.safety.side_effects {
            Some(p)
                if p.allowed
                    && (p.allowed_sinks.is_empty() || p.allowed_sinks.contains(&sink.name)) =>
            {
                Ok(())
            }
            Some(p) if p.allowed => Err(refuse(
                "the manifest allows side effects only for other sinks".into(),
            )),
            _ => Err(refuse("the manifest forbids side effects".into())),
        }
    }
}

#[cfg(test)]
fn _obj_safe(_: &dyn SinkPolicy) {}
