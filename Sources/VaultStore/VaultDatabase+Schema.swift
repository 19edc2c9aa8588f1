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
        return migrator
    }
}
