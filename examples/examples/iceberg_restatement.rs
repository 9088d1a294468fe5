//! Restates three months of an Iceberg table by write-audit-publish and rolls back, with no server.
//!
//! ```sh
//! cargo run -p backfill-examples --example iceberg_restatement                 # ./iceberg-warehouse
//! cargo run -p backfill-examples --example iceberg_restatement -- --warehouse /tmp/wh
//! ```
//!
//! The warehouse keeps its SQL catalog at `DIR/catalog.db` (catalog name `backfill`), so PyIceberg
//! reads the table with `SqlCatalog("backfill", uri="sqlite:///DIR/catalog.db",
//! warehouse="file://DIR")`. The last line is `iceberg table <namespace.table>`. Running it again on
//! the same warehouse publishes nothing. The program is [`backfill_examples::iceberg_restatement`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    backfill_examples::iceberg_restatement::main().await
}
