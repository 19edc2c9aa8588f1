import GRDB

extension VaultDatabase {
    /// Migrations, identified in `grdb_migrations`; never edit a shipped one, add another.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE master_keys (
                        id INTEGER PRIMARY KEY,
                        created_at TEXT NOT NULL,
                        state TEXT NOT NULL CHECK (state IN ('active', 'retired')),
                        check_value BLOB NOT NULL
                    );
                    CREATE UNIQUE INDEX master_keys_one_active ON master_keys(state) WHERE state = 'active';

                    CREATE TABLE connections (
                        id TEXT PRIMARY KEY NOT NULL,
                        provider TEXT NOT NULL,
                        settings TEXT NOT NULL,
                        state TEXT NOT NULL CHECK (state IN ('active', 'disabled', 'needs_reset')),
                        revision INTEGER NOT NULL CHECK (revision >= 1),
                        disabled_reason TEXT,
                        last_error TEXT,
                        created_at TEXT NOT NULL,
                        updated_at TEXT NOT NULL
                    ) WITHOUT ROWID;

                    -- One data key per connection: the current revision's. Replacing it destroys the old one.
                    CREATE TABLE data_keys (
                        connection_id TEXT PRIMARY KEY NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
                        revision INTEGER NOT NULL,
                        key_id INTEGER NOT NULL REFERENCES master_keys(id),
                        alg INTEGER NOT NULL,
                        nonce BLOB NOT NULL,
                        wrapped BLOB NOT NULL
                    ) WITHOUT ROWID;

                    CREATE TABLE secrets (
                        connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
                        field TEXT NOT NULL,
                        revision INTEGER NOT NULL,
                        alg INTEGER NOT NULL,
                        nonce BLOB NOT NULL,
                        ciphertext BLOB NOT NULL,
                        fingerprint TEXT NOT NULL,
                        updated_at TEXT NOT NULL,
                        PRIMARY KEY (connection_id, field)
                    ) WITHOUT ROWID;

                    CREATE TABLE grants (
                        connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
                        kind TEXT NOT NULL CHECK (kind IN ('uid', 'group', 'unit')),
                        value TEXT NOT NULL,
                        PRIMARY KEY (connection_id, kind, value)
                    ) WITHOUT ROWID;

                    -- No foreign key to connections: the trail outlives a disconnected connection.
                    CREATE TABLE audit (
                        seq INTEGER PRIMARY KEY,
                        time TEXT NOT NULL,
                        actor_uid INTEGER NOT NULL,
                        actor_pid INTEGER NOT NULL,
                        actor_comm TEXT NOT NULL,
                        actor_unit TEXT,
                        action TEXT NOT NULL,
                        connection_id TEXT,
                        outcome TEXT NOT NULL,
                        detail TEXT NOT NULL,
                        prev_hash BLOB NOT NULL,
                        hash BLOB NOT NULL
                    );
                    CREATE INDEX audit_connection ON audit(connection_id, seq);
                    """
            )
        }
        migrator.registerMigration("v2-issued-tokens") { db in
            try db.execute(
                sql: """
                    -- What the daemon needs to revoke an access token it handed out (DESIGN §11), kept until the
                    -- token is revoked or has expired. No foreign key to connections: a disconnect shreds the
                    -- connection's secrets, but its tokens must still be revoked. The token is sealed under a data
                    -- key of the row's own, wrapped by the master key (re-wrapped by a key rotation).
                    -- state: issued (the connection is still in the state that obtained it), pending (to revoke),
                    -- unrevocable (v1: no revoke endpoint; kept to say until when it stays valid).
                    CREATE TABLE issued_tokens (
                        id INTEGER PRIMARY KEY,
                        connection_id TEXT NOT NULL,
                        revision INTEGER NOT NULL,
                        api TEXT NOT NULL CHECK (api IN ('v1', 'v2')),
                        state TEXT NOT NULL CHECK (state IN ('issued', 'pending', 'unrevocable')),
                        settings TEXT NOT NULL,
                        expires_at INTEGER NOT NULL,
                        key_id INTEGER NOT NULL REFERENCES master_keys(id),
                        dek_alg INTEGER NOT NULL,
                        dek_nonce BLOB NOT NULL,
                        dek_wrapped BLOB NOT NULL,
                        alg INTEGER NOT NULL,
                        nonce BLOB NOT NULL,
                        ciphertext BLOB NOT NULL,
                        attempts INTEGER NOT NULL DEFAULT 0,
                        next_attempt_at REAL NOT NULL DEFAULT 0,
                        last_error TEXT,
                        created_at TEXT NOT NULL,
                        withdrawn_at TEXT
                    );
                    CREATE INDEX issued_tokens_connection ON issued_tokens(connection_id, state);
                    """
            )
        }
        migrator.registerMigration("v3-grant-rules") { db in
            try db.execute(
                sql: """
                    -- Grant rules (DESIGN §10), in the order they are matched (the first match decides). A rule is
                    -- its canonical JSON (sorted keys), written and read by the vault; the store does not look
                    -- inside. The one-selector lists stay in `grants`, so a file written before this migration
                    -- reads back its grants unchanged, with no rules.
                    CREATE TABLE grant_rules (
                        connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
                        position INTEGER NOT NULL CHECK (position >= 0),
                        rule TEXT NOT NULL,
                        PRIMARY KEY (connection_id, position)
                    ) WITHOUT ROWID;
                    """
            )
        }
        return migrator
    }
}
