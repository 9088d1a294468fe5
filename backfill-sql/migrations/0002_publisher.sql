-- What a target database itself knows about publications: its current run and the rollbacks.
CREATE TABLE IF NOT EXISTS bf_target_pointers (
    target {key} NOT NULL PRIMARY KEY,
    run_id {key} NOT NULL,
    mutation {key} NOT NULL,
    relation {key} NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS bf_rollbacks (
    from_run_id {key} NOT NULL,
    to_run_id {key} NOT NULL,
    target {key} NOT NULL,
    rolled_back_at BIGINT NOT NULL,
    PRIMARY KEY (from_run_id, target)
)
