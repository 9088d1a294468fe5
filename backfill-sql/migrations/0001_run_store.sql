-- backfill run store, version 1. {key}, {long} and {bigint} are replaced per dialect.
CREATE TABLE IF NOT EXISTS bf_manifests (
    run_id {key} NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL,
    digest {key} NOT NULL,
    json {long} NOT NULL,
    approval {long} NULL
);
CREATE TABLE IF NOT EXISTS bf_runs (
    run_id {key} NOT NULL PRIMARY KEY,
    manifest_version BIGINT NOT NULL,
    manifest_digest {key} NOT NULL,
    target {key} NOT NULL,
    mode {key} NOT NULL,
    state {key} NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS bf_transitions (
    run_id {key} NOT NULL,
    seq BIGINT NOT NULL,
    from_state {key} NOT NULL,
    to_state {key} NOT NULL,
    by_who {key} NOT NULL,
    at BIGINT NOT NULL,
    reason {long} NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS bf_plans (
    run_id {key} NOT NULL PRIMARY KEY,
    manifest_digest {key} NOT NULL,
    json {long} NOT NULL
);
CREATE TABLE IF NOT EXISTS bf_chunks (
    run_id {key} NOT NULL,
    chunk_id {key} NOT NULL,
    idx BIGINT NOT NULL,
    range_json {long} NOT NULL,
    status {key} NOT NULL,
    attempts BIGINT NOT NULL,
    worker {key} NULL,
    lease_expires_at BIGINT NULL,
    input_count BIGINT NOT NULL,
    output_count BIGINT NOT NULL,
    digests_json {long} NOT NULL,
    last_error {long} NULL,
    started_at BIGINT NULL,
    finished_at BIGINT NULL,
    PRIMARY KEY (run_id, chunk_id)
);
-- Claims scan chunks in plan order: with this index a SKIP LOCKED claim stops at the first free row
-- instead of locking every candidate to sort them.
CREATE INDEX IF NOT EXISTS bf_chunks_order ON bf_chunks (run_id, idx);
CREATE TABLE IF NOT EXISTS bf_evidence (
    run_id {key} NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    by_who {key} NOT NULL,
    kind {key} NOT NULL,
    detail {long} NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS bf_accepted (
    target {key} NOT NULL PRIMARY KEY,
    run_id {key} NOT NULL,
    accepted_at BIGINT NOT NULL,
    accepted_by {key} NOT NULL
);
CREATE TABLE IF NOT EXISTS bf_publications (
    run_id {key} NOT NULL,
    target {key} NOT NULL,
    mutation {key} NOT NULL,
    previous_run_id {key} NULL,
    receipt {long} NOT NULL,
    published_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, target)
);
CREATE TABLE IF NOT EXISTS bf_staging_tables (
    run_id {key} NOT NULL,
    target {key} NOT NULL,
    table_name {key} NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, target)
);
CREATE TABLE IF NOT EXISTS bf_file_imports (
    file_id {key} NOT NULL PRIMARY KEY,
    path {long} NOT NULL,
    size_bytes BIGINT NOT NULL,
    content_hash {key} NOT NULL,
    business_date {key} NOT NULL,
    schema_version {key} NOT NULL,
    first_seen_at BIGINT NOT NULL,
    accepted_run_id {key} NULL,
    corrects_file_id {key} NULL,
    status {key} NOT NULL
)
