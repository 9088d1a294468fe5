//! What kind of system a sink writes to, and what each execution mode may do to it by default.
//!
//! Whether a run may write a sink is not the transform's call: it follows from the sink's class and
//! the run's mode, and the approved manifest may only widen it for named sinks (see
//! [`DefaultSinkPolicy`](crate::policy::DefaultSinkPolicy)). The defaults:
//!
//! | class | live | backfill, replay | dry run, reconciliation |
//! |---|---|---|---|
//! | analytical table | allowed | allowed, staged and validated | allowed (staging only) |
//! | lakehouse table | allowed | allowed, staged and validated | allowed (staging only) |
//! | materialized view | allowed | isolated (a versioned or rebuilt view) | refused |
//! | Kafka topic | allowed | isolated (a backfill or replay topic, never the live one) | isolated (run-scoped staging topic) |
//! | search index | allowed | isolated (a new index, then an alias swap) | refused |
//! | feature store | allowed | isolated (a backfill version) | refused |
//! | cache | allowed | refused (rebuild after publish) | refused |
//! | email, SMS, push | allowed | refused | refused |
//! | ticket or case command | allowed | refused | refused |
//! | webhook | allowed | refused | refused |
//! | payment or ledger | allowed | refused | refused |
//! | external API | allowed | refused (unless idempotent or compensated, and named in the manifest) | refused |
//!
//! "Isolated" means the sink must say it writes a target of its own
//! ([`SinkDescriptor::isolated`](crate::sink::SinkDescriptor::isolated)).
//! In backfill and replay modes a refused class can be allowed for one sink by the approved
//! manifest (`safety.side_effects.allowed` with the sink in `allowed_sinks`); a dry run or a
//! reconciliation never writes anything outside staging.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::context::ExecutionMode;

/// The kind of system a sink writes to (the seed's side-effect table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SinkClass {
    /// A warehouse or database table readers query.
    AnalyticalTable,
    /// A lakehouse table format (Iceberg, Delta, Hudi).
    LakehouseTable,
    /// A materialized view.
    MaterializedView,
    /// A Kafka (or Kafka-protocol) topic.
    KafkaTopic,
    /// A search index.
    SearchIndex,
    /// A feature store.
    FeatureStore,
    /// A cache.
    Cache,
    /// Email, SMS or push notifications: people are told something.
    Notification,
    /// Commands to a ticket or case management system.
    TicketCommand,
    /// A webhook.
    Webhook,
    /// Payments or ledger postings.
    PaymentLedger,
    /// Any other external API.
    ExternalApi,
}

/// What a mode may do to a sink of a class, by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkRule {
    /// Allowed: staged, validated and published like any target.
    Allowed,
    /// Allowed only into a target of the run's own (a versioned table, a backfill topic, a new
    /// index): never the one live readers use.
    Isolated,
    /// Refused.
    Refused,
}

impl SinkClass {
    /// Every class, in the table's order.
    pub const ALL: [Self; 12] = [
        Self::AnalyticalTable,
        Self::LakehouseTable,
        Self::MaterializedView,
        Self::KafkaTopic,
        Self::SearchIndex,
        Self::FeatureStore,
        Self::Cache,
        Self::Notification,
        Self::TicketCommand,
        Self::Webhook,
        Self::PaymentLedger,
        Self::ExternalApi,
    ];

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AnalyticalTable => "analytical_table",
            Self::LakehouseTable => "lakehouse_table",
            Self::MaterializedView => "materialized_view",
            Self::KafkaTopic => "kafka_topic",
            Self::SearchIndex => "search_index",
            Self::FeatureStore => "feature_store",
            Self::Cache => "cache",
            Self::Notification => "notification",
            Self::TicketCommand => "ticket_command",
            Self::Webhook => "webhook",
            Self::PaymentLedger => "payment_ledger",
            Self::ExternalApi => "external_api",
        }
    }

    /// The default for `mode` (the module's table).
    pub fn rule(self, mode: ExecutionMode) -> SinkRule {
        use SinkRule::{Allowed, Isolated, Refused};
        let tables = matches!(self, Self::AnalyticalTable | Self::LakehouseTable);
        match mode {
            ExecutionMode::Live => Allowed,
            _ if tables => Allowed,
            ExecutionMode::Backfill | ExecutionMode::Replay => match self {
                Self::MaterializedView
                | Self::KafkaTopic
                | Self::SearchIndex
                | Self::FeatureStore => Isolated,
                _ => Refused,
            },
            ExecutionMode::DryRun | ExecutionMode::Reconciliation => match self {
                Self::KafkaTopic => Isolated,
                _ => Refused,
            },
        }
    }

    /// Whether writing it reaches people or systems outside the data platform.
    pub fn has_external_side_effects(self) -> bool {
        matches!(
            self,
            Self::Cache
                | Self::Notification
                | Self::TicketCommand
                | Self::Webhook
                | Self::PaymentLedger
                | Self::ExternalApi
        )
    }
}

impl fmt::Display for SinkClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_allowed_in_every_mode_and_notifications_only_live() {
        use ExecutionMode::*;
        for mode in [Live, Backfill, Replay, DryRun, Reconciliation] {
            assert_eq!(SinkClass::AnalyticalTable.rule(mode), SinkRule::Allowed);
            assert_eq!(SinkClass::LakehouseTable.rule(mode), SinkRule::Allowed);
            let n = SinkClass::Notification.rule(mode);
            assert_eq!(n == SinkRule::Allowed, mode == Live, "{mode}");
        }
        assert_eq!(SinkClass::KafkaTopic.rule(Backfill), SinkRule::Isolated);
        assert_eq!(SinkClass::Cache.rule(Replay), SinkRule::Refused);
        assert_eq!(SinkClass::SearchIndex.rule(DryRun), SinkRule::Refused);
        // Every class has a rule in every mode, and only side-effecting classes are refused in
        // backfill mode outright.
        for c in SinkClass::ALL {
            if c.rule(Backfill) == SinkRule::Refused {
                assert!(c.has_external_side_effects(), "{c}");
            }
        }
    }
}
