-- Namespace registry (docs/STORAGE.md): one row per namespace, token stored as its SHA-256 only.
CREATE TABLE IF NOT EXISTS namespaces (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    db_path TEXT NOT NULL UNIQUE,
    description TEXT,
    created_at INTEGER NOT NULL,
    metadata TEXT
);

CREATE INDEX IF NOT EXISTS idx_namespaces_token_hash ON namespaces (token_hash);
