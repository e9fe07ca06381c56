/**
 * The hub database's schema, as an append-only list of migrations. The schema version is
 * `PRAGMA user_version`: migration i (0-based) takes the database from version i to i + 1.
 * Never edit a migration that has shipped; add a new one.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: devices, superprojects, snapshots, the global lease.
  `
  CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_fingerprint TEXT,
    enrolled_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
  );
  CREATE TABLE superprojects (
    slug TEXT PRIMARY KEY,
    head INTEGER,
    created_at INTEGER NOT NULL,
    settings TEXT NOT NULL DEFAULT '{}'
  );
  CREATE TABLE snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slug TEXT NOT NULL REFERENCES superprojects(slug) ON DELETE CASCADE,
    parent INTEGER,
    device_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    manifest_hash TEXT NOT NULL,
    files INTEGER NOT NULL,
    bytes INTEGER NOT NULL
  );
  CREATE INDEX snapshots_by_slug ON snapshots(slug, id);
  CREATE TABLE lease (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    device_id TEXT,
    slug TEXT,
    token INTEGER NOT NULL,
    acquired_at INTEGER,
    heartbeat_at INTEGER,
    expires_at INTEGER
  );
  INSERT INTO lease (singleton, token) VALUES (1, 0);
  `,
  // 2: the quarantine queue.
  `
  CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slug TEXT NOT NULL REFERENCES superprojects(slug) ON DELETE CASCADE,
    snapshot_id INTEGER,
    device_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    reason TEXT NOT NULL,
    summary TEXT NOT NULL,
    metrics TEXT NOT NULL,
    proposed_hash TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    resolved_at INTEGER,
    resolved_by TEXT
  );
  CREATE INDEX quarantine_by_slug ON quarantine(slug, status);
  `,
  // 3: what quarantine review and recovery need. An item keeps the head it was held against
  // (base_snapshot), its paths, the snapshot that accepting it made, and when gc dropped its
  // content; proposed_hash names the store object {proposed, previous} of the item. Each
  // superproject gets its own retention overrides beside its quarantine settings.
  `
  ALTER TABLE quarantine ADD COLUMN base_snapshot INTEGER;
  ALTER TABLE quarantine ADD COLUMN paths TEXT NOT NULL DEFAULT '[]';
  ALTER TABLE quarantine ADD COLUMN resolved_snapshot INTEGER;
  ALTER TABLE quarantine ADD COLUMN collected_at INTEGER;
  CREATE INDEX quarantine_by_content ON quarantine(slug, status, proposed_hash);
  ALTER TABLE superprojects ADD COLUMN retention TEXT NOT NULL DEFAULT '{}';
  `,
  // 4: devices can be revoked: the row stays (snapshots and quarantine items name their
  // device), but the device can no longer open a session.
  `
  ALTER TABLE devices ADD COLUMN revoked_at INTEGER;
  `,
  // 5: snapshots are numbered per superproject (1, 2, 3, … for each), the number people see
  // and give to \`restore --checkpoint\`; the global id stays the key everything refers to.
  `
  ALTER TABLE snapshots ADD COLUMN number INTEGER;
  UPDATE snapshots SET number = (SELECT COUNT(*) FROM snapshots s2 WHERE s2.slug = snapshots.slug AND s2.id <= snapshots.id);
  CREATE UNIQUE INDEX snapshots_by_number ON snapshots(slug, number);
  `,
];
