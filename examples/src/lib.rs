//! Runnable examples of the backfill SDK; see `examples/`.
