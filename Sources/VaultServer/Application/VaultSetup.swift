import Logging
import VaultCore

#if canImport(Glibc)
import Glibc
#endif

/// Preparing the state directory and initialising a new vault (`connvaultd --init`).
public enum VaultSetup {
    /// Creates the state directory with mode 0700 when it is missing (and missing parents with 0755), then refuses
    /// it unless ``TrustedDirectory`` accepts it and every directory above it.
    /// - Throws: `StartupError` when it cannot be created, is not a directory, or another uid could write to it or
    ///   to a directory above it.
    public static func prepareStateDirectory(_ path: String) throws(StartupError) {
        try TrustedDirectory.create(path, mode: 0o700, parents: true, purpose: "state directory")
    }

    /// `connvaultd --init`: creates the state directory, a new master key file and the database, then closes them.
    ///
    /// - Parameters:
    ///   - layout: Where the state and key go.
    ///   - logger: For the vault's own log lines.
    /// - Throws: `StartupError` when the key file already exists (a new key would orphan every secret sealed under
    ///   the old one), or the vault cannot be created.
    public static func initialize(_ layout: DaemonLayout, logger: Logger) async throws {
        if access(layout.keyFilePath, F_OK) == 0 {
            throw StartupError("master key file \(layout.keyFilePath) already exists; refusing to replace it")
        }
        try Self.prepareStateDirectory(layout.stateDirectory)
        let configuration = VaultConfiguration(
            databasePath: layout.databasePath,
            keyFilePath: layout.keyFilePath,
            createKeyIfMissing: true
        )
        let vault: Vault
        do {
            vault = try await Vault.open(configuration, logger: logger)
        } catch let error as VaultError {
            throw StartupError(error.message)
        }
        try await vault.close()
    }
}
