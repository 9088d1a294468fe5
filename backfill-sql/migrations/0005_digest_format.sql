-- The digest format (backfill_core::digest::DIGEST_FORMAT_VERSION) a chunk's digests were computed
-- with. Rows written before formats were recorded used format 1 (JSON-encoded rows).
ALTER TABLE bf_chunks ADD COLUMN digest_format BIGINT NOT NULL DEFAULT 1
