-- Namespace registry (docs/STORAGE.md). Same names and types as upstream EventoDB, so an upstream
-- database works unchanged with this server and the other way round.
CREATE SCHEMA IF NOT EXISTS eventodb_store;

CREATE TABLE IF NOT EXISTS eventodb_store.namespaces (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    schema_name TEXT NOT NULL UNIQUE,
    description TEXT,
    created_at BIGINT NOT NULL,
    metadata JSONB
);

CREATE INDEX IF NOT EXISTS idx_namespaces_token_hash ON eventodb_store.namespaces (token_hash);
