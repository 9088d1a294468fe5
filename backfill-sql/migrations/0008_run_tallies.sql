-- Run-wide tallies behind the ceilings (safety.max_rows_expected, safety.max_cost_usd): one count
-- per run, tally and chunk, replaced by each attempt of the chunk, summed over the run by every
-- worker after each batch.
CREATE TABLE IF NOT EXISTS bf_run_tallies (
  run_id {key} NOT NULL,
  name {key} NOT NULL,
  chunk_id {key} NOT NULL,
  value BIGINT NOT NULL,
  PRIMARY KEY (run_id, name, chunk_id)
)
