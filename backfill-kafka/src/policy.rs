//! Which Kafka topics a run may write: live topics are refused in backfill modes.

use std::collections::BTreeSet;

use backfill_core::manifest::RunManifest;
use backfill_core::policy::{DefaultSinkPolicy, SinkPolicy};
use backfill_core::prelude::ExecutionMode;
use backfill_core::sink::SinkDescriptor;
use backfill_core::{Error, Result};

/// A [`SinkPolicy`] for the sink class "Kafka topic": in Backfill, Replay and DryRun runs a live
/// topic (one the live pipeline's consumers read) is refused as a staging sink or target, unless the
/// manifest names it in `safety.side_effects.allowed_sinks` with side effects allowed (a blanket
/// `allowed: true` is not enough). Everything else is decided by [`DefaultSinkPolicy`].
///
/// ```
/// use backfill_kafka::KafkaTopicPolicy;
/// let policy = KafkaTopicPolicy::new(["orders.v1", "payments.v1"]);
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, Default)]
pub struct KafkaTopicPolicy {
    live: BTreeSet<String>,
}

impl KafkaTopicPolicy {
    /// A policy that knows these topics as live.
    pub fn new<S: Into<String>>(live_topics: impl IntoIterator<Item = S>) -> Self {
        Self {
            live: live_topics.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether `topic` is a live topic.
    pub fn is_live(&self, topic: &str) -> bool {
        self.live.contains(topic)
    }
}

impl SinkPolicy for KafkaTopicPolicy {
    fn check(&self, sink: &SinkDescriptor, m: &RunManifest) -> Result<()> {
        let backfill = matches!(
            m.mode,
            ExecutionMode::Backfill | ExecutionMode::Replay | ExecutionMode::DryRun
        );
        if backfill && sink.kind == "kafka_topic" && self.is_live(&sink.name) {
            let named = m
                .safety
                .side_effects
                .as_ref()
                .is_some_and(|p| p.allowed && p.allowed_sinks.contains(&sink.name));
            if !named || m.mode == ExecutionMode::DryRun {
                return Err(Error::ForbiddenSink {
                    run_id: m.run_id.clone(),
                    sink: sink.name.clone(),
                    mode: m.mode,
                    reason: "it is a live topic: a backfill writes a dedicated backfill topic, or \
                             names the live topic in safety.side_effects.allowed_sinks"
                        .into(),
                });
            }
            return Ok(());
        }
        DefaultSinkPolicy.check(sink, m)
    }
}

#[cfg(test)]
mod tests {
    use backfill_core::manifest::{RunKind, SideEffectPolicy};

    use super::*;

    fn manifest(mode: ExecutionMode, allowed: Option<SideEffectPolicy>) -> RunManifest {
        let mut m = RunManifest::new("bf-policy", RunKind::Replay, mode);
        m.safety.side_effects = allowed;
        m
    }

    #[test]
    fn live_topics_are_refused_in_backfill_modes_unless_named() {
        let p = KafkaTopicPolicy::new(["orders.v1"]);
        let live = SinkDescriptor::internal("orders.v1", "kafka_topic");
        let backfill = SinkDescriptor::internal("orders.v1.backfill", "kafka_topic");
        for mode in [
            ExecutionMode::Backfill,
            ExecutionMode::Replay,
            ExecutionMode::DryRun,
        ] {
            let err = p.check(&live, &manifest(mode, None)).expect_err("refused");
            assert!(
                matches!(err, Error::ForbiddenSink { ref sink, .. } if sink == "orders.v1"),
                "{err}"
            );
            let blanket = SideEffectPolicy {
                allowed: true,
                allowed_sinks: vec![],
            };
            assert!(p.check(&live, &manifest(mode, Some(blanket))).is_err());
            p.check(&backfill, &manifest(mode, None))
                .expect("a backfill topic is fine");
        }
        let named = SideEffectPolicy {
            allowed: true,
            allowed_sinks: vec!["orders.v1".into()],
        };
        p.check(&live, &manifest(ExecutionMode::Replay, Some(named.clone())))
            .expect("named");
        assert!(p
            .check(&live, &manifest(ExecutionMode::DryRun, Some(named)))
            .is_err());
        p.check(&live, &manifest(ExecutionMode::Live, None))
            .expect("live mode writes live topics");
    }
}
