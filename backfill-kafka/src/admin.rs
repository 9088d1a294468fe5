//! Topics: creation, deletion, partition counts and watermarks.

use backfill_core::Result;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;
use crate::error::{client, ADAPTER};

/// Runs a blocking client call on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| backfill_core::Error::adapter(ADAPTER, e))?
}

fn admin(config: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>> {
    config
        .client()
        .create()
        .map_err(|e| client("creating an admin client", e))
}

/// Creates `topic` with `partitions` partitions (replication factor `replication`) unless it
/// exists. Backfill topics are created explicitly: brokers that auto-create give one partition.
pub async fn ensure_topic(
    config: &KafkaConfig,
    topic: &str,
    partitions: i32,
    replication: i32,
) -> Result<()> {
    let admin = admin(config)?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let opts = AdminOptions::new().operation_timeout(Some(config.call_timeout()));
    let results = admin
        .create_topics([&new], &opts)
        .await
        .map_err(|e| client(format!("creating topic {topic}"), e))?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                return Err(client(
                    format!("creating topic {t}"),
                    rdkafka::error::KafkaError::AdminOp(code),
                ))
            }
        }
    }
    Ok(())
}

/// Deletes `topic`; a topic that does not exist is not an error.
pub async fn delete_topic(config: &KafkaConfig, topic: &str) -> Result<()> {
    let admin = admin(config)?;
    let opts = AdminOptions::new().operation_timeout(Some(config.call_timeout()));
    let results = admin
        .delete_topics(&[topic], &opts)
        .await
        .map_err(|e| client(format!("deleting topic {topic}"), e))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((_, RDKafkaErrorCode::UnknownTopic)) => {}
            Err((t, code)) => {
                return Err(client(
                    format!("deleting topic {t}"),
                    rdkafka::error::KafkaError::AdminOp(code),
                ))
            }
        }
    }
    Ok(())
}

/// Partition count of `topic`, or `None` when the broker does not know the topic.
pub async fn partition_count(config: &KafkaConfig, topic: &str) -> Result<Option<usize>> {
    let cfg = config.clone();
    let t = topic.to_owned();
    blocking(move || {
        let c: BaseConsumer = cfg
            .lookup()
            .create()
            .map_err(|e| client("creating a consumer", e))?;
        let md = c
            .fetch_metadata(Some(&t), cfg.call_timeout())
            .map_err(|e| client(format!("metadata of {t}"), e))?;
        Ok(md
            .topics()
            .iter()
            .find(|m| m.name() == t && m.error().is_none())
            .map(|m| m.partitions().len())
            .filter(|n| *n > 0))
    })
    .await
}

/// `(log start, end)` of each listed partition; the end is the last stable offset
/// (read_committed).
pub async fn watermarks(
    config: &KafkaConfig,
    topic: &str,
    partitions: &[i32],
) -> Result<Vec<(i32, i64, i64)>> {
    let cfg = config.clone();
    let t = topic.to_owned();
    let ps = partitions.to_vec();
    blocking(move || {
        let c: BaseConsumer = cfg
            .lookup()
            .create()
            .map_err(|e| client("creating a consumer", e))?;
        ps.into_iter()
            .map(|p| {
                c.fetch_watermarks(&t, p, cfg.call_timeout())
                    .map(|(lo, hi)| (p, lo, hi))
                    .map_err(|e| client(format!("watermarks of {t}/{p}"), e))
            })
            .collect()
    })
    .await
}
