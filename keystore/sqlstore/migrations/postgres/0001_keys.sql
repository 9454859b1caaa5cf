-- API key records. Times are Unix microseconds (UTC); NULL means "not set".
CREATE TABLE keys (
	id           TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
	digest       BYTEA   NOT NULL UNIQUE,
	project      TEXT    NOT NULL,
	name         TEXT    NOT NULL DEFAULT '',
	hint         TEXT    NOT NULL DEFAULT '',
	scopes       TEXT,
	created_at   BIGINT,
	expires_at   BIGINT,
	revoked_at   BIGINT,
	last_used_at BIGINT,
	disabled     BOOLEAN NOT NULL DEFAULT FALSE,
	metadata     TEXT
);
CREATE INDEX keys_project_created ON keys (project, created_at, id);
