-- Refresh-token families and records (token.RefreshStore) and revoked
-- access-token IDs (token.Revocations). Times are Unix microseconds (UTC).
CREATE TABLE refresh_families (
	family     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
	expires_at BIGINT NOT NULL,
	revoked_at BIGINT
);
CREATE INDEX refresh_families_expires ON refresh_families (expires_at);
CREATE TABLE refresh_tokens (
	digest     BYTEA NOT NULL PRIMARY KEY,
	family     TEXT NOT NULL,
	key_id     TEXT NOT NULL DEFAULT '',
	project    TEXT NOT NULL DEFAULT '',
	scopes     TEXT,
	issued_at  BIGINT,
	expires_at BIGINT NOT NULL,
	spent_at   BIGINT
);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);
CREATE TABLE revoked_tokens (
	jti        TEXT NOT NULL PRIMARY KEY,
	keep_until BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_keep_until ON revoked_tokens (keep_until);
