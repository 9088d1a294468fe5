//! The pool pings only connections that sat idle for a while (not every one it hands out): a
//! connection the server closed while it was idle is still found out and replaced before use.
#![allow(clippy::clone_on_ref_ptr)]

use crate::common;

use std::time::Duration;

use backfill_sql::SqlPool;

/// More than the pool's `PING_AFTER_IDLE` (1 s).
const IDLE: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn connections_closed_while_idle_are_replaced_before_use() {
    for name in ["postgres", "mysql"] {
        let Some(engine) = common::engine(name) else {
            continue;
        };
        let ns = engine.namespace("idleping");
        let pool = ns.pool_with(2).await;
        let admin = ns.pool_with(1).await;
        // Open both of the pool's connections and note their server-side ids.
        let ids = match &pool {
            SqlPool::Postgres(p) => {
                let (a, b) = (p.acquire().await.unwrap(), p.acquire().await.unwrap());
                let mut ids = Vec::new();
                for mut c in [a, b] {
                    let id: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                        .fetch_one(&mut *c)
                        .await
                        .unwrap();
                    ids.push(i64::from(id));
                }
                ids
            }
            SqlPool::MySql(p) => {
                let (a, b) = (p.acquire().await.unwrap(), p.acquire().await.unwrap());
                let mut ids = Vec::new();
                for mut c in [a, b] {
                    let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
                        .fetch_one(&mut *c)
                        .await
                        .unwrap();
                    ids.push(i64::try_from(id).unwrap());
                }
                ids
            }
            SqlPool::Sqlite(_) => unreachable!(),
        };
        // The server closes both while they sit idle in the pool (a restart, an idle timeout).
        for id in ids {
            match &admin {
                SqlPool::Postgres(a) => sqlx::query("SELECT pg_terminate_backend($1::int)")
                    .bind(id)
                    .execute(a)
                    .await
                    .map(drop),
                SqlPool::MySql(a) => sqlx::query(&format!("KILL {id}"))
                    .execute(a)
                    .await
                    .map(drop),
                SqlPool::Sqlite(_) => unreachable!(),
            }
            .unwrap();
        }
        tokio::time::sleep(IDLE).await;
        // Each statement gets a live connection: the stale ones are pinged, found closed, replaced.
        for _ in 0..4 {
            let one: i64 = match &pool {
                SqlPool::Postgres(p) => sqlx::query_scalar("SELECT 1::int8").fetch_one(p).await,
                SqlPool::MySql(p) => {
                    sqlx::query_scalar("SELECT CAST(1 AS SIGNED)")
                        .fetch_one(p)
                        .await
                }
                SqlPool::Sqlite(_) => unreachable!(),
            }
            .unwrap_or_else(|e| panic!("{name}: a closed connection was handed out: {e}"));
            assert_eq!(one, 1);
        }
        pool.close().await;
        admin.close().await;
        ns.drop().await;
    }
}
