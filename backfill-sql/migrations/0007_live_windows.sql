-- Target windows shared by backfills and live writers (seed §12.1): per target partition, the run
-- holding it frozen (if any) and a counter of the live writes admitted into it. Live writers update
-- their partition's row inside their own transaction, so a freeze (which locks the rows) waits for
-- the writes under way and no later write commits into a frozen partition.
CREATE TABLE IF NOT EXISTS bf_live_windows (
  target {key} NOT NULL,
  part {key} NOT NULL,
  frozen_by {key},
  frozen_at_micros BIGINT,
  writes BIGINT NOT NULL,
  last_writer {key},
  last_write_micros BIGINT,
  PRIMARY KEY (target, part)
)
