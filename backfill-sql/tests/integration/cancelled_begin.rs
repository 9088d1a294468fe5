//! A transaction whose `BEGIN` was cancelled in flight leaves nothing behind in the pool
//! ([`TxConn`]): the next statement on the pool runs on its own, and what it writes is committed.
//! sqlx's own begin, cancelled the same way, is checked too: it leaves the session inside a
//! transaction that swallows the next borrower's write (the reason `TxConn` exists; if that check
//! fails, sqlx has fixed it: see `backfill-sql/src/txconn.rs`).
#![allow(clippy::disallowed_methods)] // sqlx's own begin, for the comparison

use crate::common;

use backfill_sql::{SqlPool, TxConn};

const CREATE: &str = "CREATE TABLE cancelled_begin (tag VARCHAR(20) NOT NULL)";

/// `BEGIN`s the server answers 50 ms late, so that the first poll always finds no answer yet.
const PG_BEGIN: &str = "BEGIN; SELECT pg_sleep(0.05)";
const MY_BEGIN: &str = "BEGIN; DO SLEEP(0.05)";

/// Polls a `BEGIN` once (it goes to the server), waits for the server to answer, then drops it
/// unfinished (when the poll finished it, the begun transaction is dropped and the attempt
/// repeated); then writes one row through the pool (one connection: the same one, or its
/// replacement) and counts that row from another connection.
macro_rules! cancel_then_write {
    ($p:expr, $other:expr, $tag:expr, $conn:ident = $acquire:expr, $begin:expr) => {{
        let mut attempts = 0;
        'attempt: loop {
            attempts += 1;
            assert!(
                attempts <= 50,
                "{}: the BEGIN always finished too soon",
                $tag
            );
            let mut $conn = $acquire.await.unwrap();
            let mut begin = Box::pin($begin);
            if futures::poll!(&mut begin).is_ready() {
                continue 'attempt;
            }
            // The server answers meanwhile; nobody reads the answer.
            std::thread::sleep(std::time::Duration::from_millis(100));
            break;
        }
        write_and_count!($p, $other, $tag)
    }};
}

/// Writes one row tagged `$tag` through `$p` and counts the rows so tagged from `$other`.
macro_rules! write_and_count {
    ($p:expr, $other:expr, $tag:expr) => {{
        sqlx::query(&format!(
            "INSERT INTO cancelled_begin (tag) VALUES ('{}')",
            $tag
        ))
        .execute($p)
        .await
        .unwrap();
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM cancelled_begin WHERE tag = '{}'",
            $tag
        ))
        .fetch_one($other)
        .await
        .unwrap();
        n
    }};
}

/// The table on `$o`, then a cancelled `TxConn::begin` on `$p` and a cancelled sqlx begin on `$q`:
/// the two counts.
macro_rules! both_begins {
    ($p:expr, $q:expr, $o:expr, $begin:expr) => {{
        sqlx::query(CREATE).execute($o).await.unwrap();
        let ours = cancel_then_write!(
            $p,
            $o,
            "txconn",
            c = TxConn::acquire($p),
            c.begin(Some($begin))
        );
        let theirs = cancel_then_write!(
            $q,
            $o,
            "sqlx",
            c = $q.acquire(),
            sqlx::Connection::begin_with(&mut *c, $begin)
        );
        // End the stray transaction sqlx left (its pool's one connection), or it holds the table.
        sqlx::query("ROLLBACK").execute($q).await.unwrap();
        (ours, theirs)
    }};
}

#[tokio::test]
async fn a_begin_cancelled_in_flight_leaves_no_transaction_behind() {
    for name in ["postgres", "mysql"] {
        let Some(engine) = common::engine(name) else {
            continue;
        };
        let ns = engine.namespace("cancelbegin");
        let (ours, theirs, other) = (
            ns.pool_with(1).await,
            ns.pool_with(1).await,
            ns.pool().await,
        );
        let (with_txconn, with_sqlx) = match (&ours, &theirs, &other) {
            (SqlPool::Postgres(p), SqlPool::Postgres(q), SqlPool::Postgres(o)) => {
                both_begins!(p, q, o, PG_BEGIN)
            }
            (SqlPool::MySql(p), SqlPool::MySql(q), SqlPool::MySql(o)) => {
                both_begins!(p, q, o, MY_BEGIN)
            }
            _ => unreachable!(),
        };
        assert_eq!(
            with_txconn, 1,
            "{name}: after a cancelled TxConn::begin, a write on the pool is committed"
        );
        assert_eq!(
            with_sqlx, 0,
            "{name}: sqlx's own begin, cancelled in flight, no longer swallows the next write: \
             sqlx fixed it (see backfill-sql/src/txconn.rs)"
        );
        ours.close().await;
        theirs.close().await;
        ns.drop().await;
    }
}

/// Polls `begin` twice, waiting after each poll: on SQLite the first poll sends `BEGIN IMMEDIATE`
/// to the connection's worker thread, which runs it and waits for its answer to be taken; the
/// second takes the answer and waits for the connection's lock, where sqlx checks that a
/// transaction began. Whether it is still waiting there (then it is dropped unfinished).
async fn dropped_while_checked<F: std::future::Future + Unpin>(mut begin: F) -> bool {
    for _ in 0..2 {
        if futures::poll!(&mut begin).is_ready() {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

/// On fresh one-connection pools until a `BEGIN IMMEDIATE` is dropped while sqlx checks it (through
/// `TxConn` or not): one row written through that pool, counted from `o`.
async fn sqlite_cancel_then_write(
    ns: &common::Namespace,
    o: &sqlx::SqlitePool,
    tag: &str,
    txconn: bool,
) -> i64 {
    for _ in 0..50 {
        let pool = ns.pool_with(1).await;
        let SqlPool::Sqlite(p) = &pool else {
            unreachable!()
        };
        let hit = if txconn {
            let mut c = TxConn::acquire(p).await.unwrap();
            dropped_while_checked(Box::pin(c.begin(Some("BEGIN IMMEDIATE")))).await
        } else {
            let mut c = p.acquire().await.unwrap();
            dropped_while_checked(Box::pin(sqlx::Connection::begin_with(
                &mut *c,
                "BEGIN IMMEDIATE",
            )))
            .await
        };
        if !hit {
            pool.close().await;
            continue;
        }
        let n = write_and_count!(p, o, tag);
        // Closing the pool's connection ends a transaction left on it (and frees the write lock).
        pool.close().await;
        return n;
    }
    panic!("{tag}: the BEGIN was never dropped while sqlx checked it");
}

#[tokio::test]
async fn a_sqlite_begin_cancelled_while_checked_leaves_no_lock_behind() {
    let engine = common::engine("sqlite").expect("SQLite is always there");
    let ns = engine.namespace("cancelbegin_sqlite");
    let other = ns.pool().await;
    let SqlPool::Sqlite(o) = &other else {
        unreachable!()
    };
    sqlx::query(CREATE).execute(o).await.unwrap();
    let with_txconn = sqlite_cancel_then_write(&ns, o, "txconn", true).await;
    let with_sqlx = sqlite_cancel_then_write(&ns, o, "sqlx", false).await;
    assert_eq!(
        with_txconn, 1,
        "sqlite: after a TxConn::begin dropped while checked, a write on the pool is committed"
    );
    assert_eq!(
        with_sqlx, 0,
        "sqlite: sqlx's own begin, dropped while checked, no longer leaves a transaction: sqlx \
         fixed it (see backfill-sql/src/txconn.rs)"
    );
}
