-- Run-wide budgets (rows per minute, bytes per minute, sink commits per hour) shared by every
-- worker of a run: one token bucket per run and budget, in thousandths of a unit, and the instant
-- (microseconds since the epoch) its tokens were computed.
CREATE TABLE IF NOT EXISTS bf_run_budgets (
  run_id {key} NOT NULL,
  name {key} NOT NULL,
  millitokens BIGINT NOT NULL,
  at_micros BIGINT NOT NULL,
  PRIMARY KEY (run_id, name)
)
