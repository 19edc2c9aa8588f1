import Logging
import VaultCore

#if canImport(Glibc)
import Glibc
#endif

/// Preparing the state directory and initialising a new vault (`connvaultd --init`).
public enum VaultSetup {
    /// Creates the state directory with mode 0700 when it is missing (and missing parents with 0755).
    /// - Throws: `StartupError` when it cannot be created or is not a directory.
    public static func prepareStateDirectory(_ path: String) throws(StartupError) {
        try Self.createDirectory(path, mode: 0o700)
    }

    /// Creates `path` with `mode` unless it exists, after its missing parents (mode 0755).
    static func createDirectory(_ path: String, mode: mode_t) throws(StartupError) {
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else { throw StartupError("\(path) is not a directory") }
            return
        }
        guard errno == ENOENT else {
            throw StartupError("cannot use directory \(path): \(String(cString: strerror(errno)))")
        }
        let parent = UnixSocketFile.directory(of: path)
        if parent != path && parent != "/" && parent != "." {
            try Self.createDirectory(parent, mode: 0o755)
        }
        guard mkdir(path, mode) == 0 || errno == EEXIST else {
            throw StartupError("cannot create directory \(path): \(String(cString: strerror(errno)))")
        }
        // mkdir's mode passed through the umask; set the one intended.
        chmod(path, mode)
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
