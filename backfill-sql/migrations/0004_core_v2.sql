-- backfill-core v2: who asked for a run, what each chunk staged, and staging fences.
ALTER TABLE bf_runs ADD COLUMN requested_by {key} NOT NULL DEFAULT '';
-- Listing runs newest first (RunStore::runs).
CREATE INDEX IF NOT EXISTS bf_runs_created ON bf_runs (created_at, run_id);
-- The StagedArtifact (JSON) of a done chunk's accepted attempt (NULL before it is done).
ALTER TABLE bf_chunks ADD COLUMN artifact {long} NULL;
-- The highest attempt that staged (or began staging) each chunk into a target: a stage by a lower
-- attempt is refused (StagingSink contract clause 6).
CREATE TABLE IF NOT EXISTS bf_stage_fences (
    run_id {key} NOT NULL,
    target {key} NOT NULL,
    chunk_id {key} NOT NULL,
    attempt BIGINT NOT NULL,
    PRIMARY KEY (run_id, target, chunk_id)
)
;
-- The receipt a rollback returned, recorded in the rollback's own transaction (publisher request,
-- MIGRATION_REQUESTS.md item 1). NULL for rollbacks recorded before this migration.
ALTER TABLE bf_rollbacks ADD COLUMN receipt {long} NULL
