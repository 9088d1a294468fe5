//! Connection settings shared by the source, the sink and the publisher.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;

/// How to reach a Kafka cluster.
///
/// ```
/// use backfill_kafka::KafkaConfig;
/// let cfg = KafkaConfig::new("127.0.0.1:9092")
///     .cluster("prod-a")
///     .set("security.protocol", "plaintext");
/// assert_eq!(cfg.brokers(), "127.0.0.1:9092");
/// ```
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    brokers: String,
    cluster: Option<String>,
    properties: BTreeMap<String, String>,
    timeout: Duration,
}

impl KafkaConfig {
    /// A cluster reached through `brokers` (`host:port[,host:port]`).
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            cluster: None,
            properties: BTreeMap::new(),
            timeout: Duration::from_secs(30),
        }
    }

    /// The cluster's name as manifests write it (`source.cluster`, such as `prod-a`). When set, a
    /// manifest naming another cluster is refused at planning.
    pub fn cluster(mut self, name: impl Into<String>) -> Self {
        self.cluster = Some(name.into());
        self
    }

    /// A librdkafka property for every client (security, SASL, socket settings). Properties the
    /// adapter relies on (isolation level, auto commit, idempotence) are set after these and win.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// How long a metadata, offset or transaction call may take (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The bootstrap brokers.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The cluster name, if set.
    pub fn cluster_name(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    pub(crate) fn call_timeout(&self) -> Duration {
        self.timeout
    }

    /// A client configuration with the user's properties.
    pub(crate) fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// An assign-only consumer: read_committed, no group offsets ever committed or fetched.
    pub(crate) fn consumer(&self) -> ClientConfig {
        let mut c = self.client();
        // librdkafka's assign() wants a group id; nothing is ever committed to it, and the
        // consumer never subscribes (so it never joins the group).
        c.set("group.id", "backfill-assign-only")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "error");
        c
    }

    /// A client for metadata and offset lookups: no group at all (creating and dropping a client with
    /// a group id costs a coordinator round trip).
    pub(crate) fn lookup(&self) -> ClientConfig {
        let mut c = self.client();
        c.set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false");
        c
    }

    /// A transactional, idempotent producer with the given transactional id. Batching defaults suit
    /// bulk staging; the user's properties override them (`compression.type=lz4` shrinks the
    /// repeated lineage headers on the wire at some CPU cost), never the transactional guarantees.
    pub(crate) fn transactional_producer(&self, transactional_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "200000")
            .set("transaction.timeout.ms", "60000");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c.set("transactional.id", transactional_id)
            .set("enable.idempotence", "true")
            .set("acks", "all");
        c
    }
}
