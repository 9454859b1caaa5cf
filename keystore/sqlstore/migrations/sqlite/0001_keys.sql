-- API key records. Times are Unix microseconds (UTC); NULL means "not set".
CREATE TABLE keys (
	id           TEXT    NOT NULL PRIMARY KEY,
	digest       BLOB    NOT NULL UNIQUE,
	project      TEXT    NOT NULL,
	name         TEXT    NOT NULL DEFAULT '',
	hint         TEXT    NOT NULL DEFAULT '',
	scopes       TEXT,
	created_at   INTEGER,
	expires_at   INTEGER,
	revoked_at   INTEGER,
	last_used_at INTEGER,
	disabled     INTEGER NOT NULL DEFAULT 0,
	metadata     TEXT
);
CREATE INDEX keys_project_created ON keys (project, created_at, id);
