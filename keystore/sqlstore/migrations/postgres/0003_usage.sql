-- Per-key rate limits and usage counters (keystore.Record.RateLimit,
-- UsageCount, LastClientAddr). rate_limit_period_ns is a Go time.Duration
-- (nanoseconds); requests 0 means "no limit of its own". last_client_addr
-- is netip.Addr's text form; NULL means unknown.
ALTER TABLE keys ADD COLUMN rate_limit_name      TEXT   NOT NULL DEFAULT '';
ALTER TABLE keys ADD COLUMN rate_limit_requests  BIGINT NOT NULL DEFAULT 0;
ALTER TABLE keys ADD COLUMN rate_limit_period_ns BIGINT NOT NULL DEFAULT 0;
ALTER TABLE keys ADD COLUMN rate_limit_burst     BIGINT NOT NULL DEFAULT 0;
ALTER TABLE keys ADD COLUMN usage_count          BIGINT NOT NULL DEFAULT 0;
ALTER TABLE keys ADD COLUMN last_client_addr     TEXT;
