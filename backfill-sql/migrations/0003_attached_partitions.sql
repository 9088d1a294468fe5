-- PostgreSQL declarative partitions swapped in by a publication, and the ones they replaced.
CREATE TABLE IF NOT EXISTS bf_attached_partitions (
    run_id {key} NOT NULL,
    target {key} NOT NULL,
    partition_value {key} NOT NULL,
    new_table {key} NOT NULL,
    old_table {key} NULL,
    PRIMARY KEY (run_id, target, partition_value)
)
