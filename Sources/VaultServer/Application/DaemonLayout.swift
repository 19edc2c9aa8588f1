#if canImport(Glibc)
import Glibc
#endif

/// Where the daemon keeps its state and sockets, resolved from its flags (DESIGN §1).
public struct DaemonLayout: Sendable, Equatable {
    public var stateDirectory: String
    public var databasePath: String
    public var keyFilePath: String
    public var appSocketPath: String
    public var adminSocketPath: String
    /// Whether a missing key file is created (a new vault): `--dev` only.
    public var createKeyIfMissing: Bool

    public static let defaultStateDirectory = "/var/lib/connvault"
    public static let defaultAppSocket = "/run/connvault/app.sock"
    public static let defaultAdminSocket = "/run/connvault/admin.sock"
    /// `--dev` keeps everything here, under the working directory.
    public static let devDirectory = ".connvault"
    public static let databaseName = "vault.sqlite3"
    public static let keyFileName = "master.key"

    public init(
        stateDirectory: String,
        databasePath: String,
        keyFilePath: String,
        appSocketPath: String,
        adminSocketPath: String,
        createKeyIfMissing: Bool
    ) {
        self.stateDirectory = stateDirectory
        self.databasePath = databasePath
        self.keyFilePath = keyFilePath
        self.appSocketPath = appSocketPath
        self.adminSocketPath = adminSocketPath
        self.createKeyIfMissing = createKeyIfMissing
    }

    /// The layout for the given flags. Explicit flags win; `--dev` moves the defaults into `./.connvault/` and allows
    /// creating the key; otherwise the key file is `$CREDENTIALS_DIRECTORY/master.key` under systemd, else
    /// `<state-dir>/master.key`. Relative paths are made absolute against `workingDirectory`.
    ///
    /// - Parameters:
    ///   - stateDirectory: `--state-dir`.
    ///   - appSocket: `--app-socket`.
    ///   - adminSocket: `--admin-socket`.
    ///   - keyFile: `--key-file`.
    ///   - dev: `--dev`.
    ///   - environment: The process environment (`CREDENTIALS_DIRECTORY`).
    ///   - workingDirectory: The directory relative paths are resolved against.
    public static func resolve(
        stateDirectory: String?,
        appSocket: String?,
        adminSocket: String?,
        keyFile: String?,
        dev: Bool,
        environment: [String: String],
        workingDirectory: String
    ) -> DaemonLayout {
        func absolute(_ path: String) -> String {
            let joined = path.hasPrefix("/") ? path : "\(workingDirectory)/\(path)"
            return Self.normalized(joined)
        }
        let state = absolute(stateDirectory ?? (dev ? Self.devDirectory : Self.defaultStateDirectory))
        let defaultKey: String
        if !dev, let credentials = environment["CREDENTIALS_DIRECTORY"], !credentials.isEmpty {
            defaultKey = "\(credentials)/\(Self.keyFileName)"
        } else {
            defaultKey = "\(state)/\(Self.keyFileName)"
        }
        return DaemonLayout(
            stateDirectory: state,
            databasePath: "\(state)/\(Self.databaseName)",
            keyFilePath: absolute(keyFile ?? defaultKey),
            appSocketPath: absolute(appSocket ?? (dev ? "\(state)/app.sock" : Self.defaultAppSocket)),
            adminSocketPath: absolute(adminSocket ?? (dev ? "\(state)/admin.sock" : Self.defaultAdminSocket)),
            createKeyIfMissing: dev
        )
    }

    /// `path` without `.` segments, repeated or trailing slashes (`..` is kept: it depends on symbolic links).
    static func normalized(_ path: String) -> String {
        let parts = path.split(separator: "/").filter { $0 != "." }
        return "/" + parts.joined(separator: "/")
    }

    /// The current working directory.
    public static func currentDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return "." }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
