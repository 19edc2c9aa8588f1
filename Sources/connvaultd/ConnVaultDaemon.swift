import ArgumentParser
import Logging
import VaultCore
import VaultServer

#if canImport(Glibc)
import Glibc
#endif

/// `connvaultd`: parses flags and wires the daemon together; everything else lives in `VaultServer`.
@main
struct ConnVaultDaemon: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connvaultd",
        abstract: "Keep Personio credentials encrypted and hand out short-lived tokens over Unix sockets."
    )

    @Option(help: "State directory (database, and the key file unless systemd passes it). Default: /var/lib/connvault.")
    var stateDir: String?

    @Option(help: "Path of the app socket (token requests). Default: /run/connvault/app.sock.")
    var appSocket: String?

    @Option(help: "Path of the admin socket (connvaultctl). Default: /run/connvault/admin.sock.")
    var adminSocket: String?

    @Option(
        help: "Master key file. Default: $CREDENTIALS_DIRECTORY/master.key under systemd, else <state-dir>/master.key."
    )
    var keyFile: String?

    @Option(
        help: ArgumentHelp(
            "Group whose members may use the admin socket (besides root and the daemon's user).",
            valueName: "name"
        )
    )
    var adminGroup: String?

    @Option(help: "Seconds a token exchange with Personio may take, connecting included (1-300).")
    var tokenTimeout: Int = 10

    @Option(help: "Seconds a proxied request may wait for Personio's response head (1-300).")
    var proxyTimeout: Int = 30

    @Option(
        name: .customLong("proxy-max-per-uid"),
        help: "Proxied requests one uid may have in flight at once; more are refused with 429 rate_limited (1-1024)."
    )
    var proxyMaxPerUID: Int = 32

    @Option(
        help: "Open connections one uid may hold on each socket; root and the daemon's uid are not limited (1-65536)."
    )
    var maxConnectionsPerUid: Int = ConnectionLimits.defaults.perUID

    @Option(
        help:
            "Open connections of all other callers together (1-1048576). Default: the descriptor limit less the reserve."
    )
    var maxConnections: Int?

    @Option(help: "Descriptors kept for root, admins, the database and Personio calls (16-65536).")
    var reservedDescriptors: Int = ConnectionLimits.defaults.reservedDescriptors

    @Option(help: "Seconds from a request's first byte to the end of its head (1-300).")
    var requestHeadTimeout: Int = 10

    @Option(help: "Seconds from the end of a request's head to the end of its body (1-300).")
    var bodyTimeout: Int = 30

    @Option(help: "Seconds a connection may stay open without a request (1-3600).")
    var idleTimeout: Int = 60

    @Option(help: "Lowest level to log: trace, debug, info, notice, warning, error or critical.")
    var logLevel: LogLevel = .info

    @Flag(help: "Development mode: state and sockets in ./.connvault/, key file created on first start.")
    var dev = false

    @Flag(
        help: ArgumentHelp(
            "Accept plain http:// API base URLs (loopback hosts only), for a local Personio stand-in; --dev implies it.",
            discussion:
                "Without it, connections must use https://: over plain HTTP any local process that can listen on the port reads the client secret."
        )
    )
    var allowInsecureUpstream = false

    @Flag(name: .customLong("init"), help: "Create the state directory, key file and database, then exit.")
    var initialize = false

    func validate() throws {
        for (flag, value) in [("--token-timeout", self.tokenTimeout), ("--proxy-timeout", self.proxyTimeout)] {
            guard (1...300).contains(value) else {
                throw ValidationError("\(flag) must be a whole number of seconds from 1 to 300")
            }
        }
        let ranges: [(String, Int?, ClosedRange<Int>)] = [
            ("--request-head-timeout", self.requestHeadTimeout, 1...300),
            ("--body-timeout", self.bodyTimeout, 1...300),
            ("--idle-timeout", self.idleTimeout, 1...3600),
            ("--max-connections-per-uid", self.maxConnectionsPerUid, 1...65536),
            ("--proxy-max-per-uid", self.proxyMaxPerUID, 1...1024),
            ("--max-connections", self.maxConnections, 1...1_048_576),
            ("--reserved-descriptors", self.reservedDescriptors, 16...65536),
        ]
        for (flag, value, range) in ranges {
            guard let value else { continue }
            guard range.contains(value) else {
                throw ValidationError("\(flag) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
        }
    }

    func run() async throws {
        let level = self.logLevel.level
        LoggingSystem.bootstrap { label in StandardErrorLogHandler(label: label, level: level) }
        let logger = Logger(label: "connvaultd")
        do {
            try await self.start(logger: logger)
        } catch {
            let reason = (error as? VaultError)?.message ?? "\(error)"
            Self.writeToStandardError("connvaultd: \(reason)\n")
            throw ExitCode.failure
        }
    }

    private func start(logger: Logger) async throws {
        try ProcessHardening.apply(logger: logger)
        let layout = DaemonLayout.resolve(
            stateDirectory: self.stateDir,
            appSocket: self.appSocket,
            adminSocket: self.adminSocket,
            keyFile: self.keyFile,
            dev: self.dev,
            environment: ProcessEnvironment.current(),
            workingDirectory: DaemonLayout.currentDirectory()
        )
        if self.initialize {
            try await VaultSetup.initialize(layout, logger: logger)
            print("initialised a new vault: database \(layout.databasePath), master key \(layout.keyFilePath)")
            return
        }
        try VaultSetup.prepareStateDirectory(layout.stateDirectory)
        let configuration = ServerConfiguration(
            vault: VaultConfiguration(
                databasePath: layout.databasePath,
                keyFilePath: layout.keyFilePath,
                createKeyIfMissing: layout.createKeyIfMissing,
                allowInsecureUpstream: self.dev || self.allowInsecureUpstream
            ),
            appSocketPath: layout.appSocketPath,
            adminSocketPath: layout.adminSocketPath,
            adminGroup: self.adminGroup,
            inheritedSockets: try SocketActivation.take(),
            notify: SystemdNotifier.Configuration.fromProcessEnvironment(),
            tokenTimeout: .seconds(self.tokenTimeout),
            proxyTimeout: .seconds(self.proxyTimeout),
            proxyMaxPerUID: self.proxyMaxPerUID,
            connectionLimits: ConnectionLimits(
                perUID: self.maxConnectionsPerUid,
                total: self.maxConnections,
                reservedDescriptors: self.reservedDescriptors
            ),
            connectionTimeouts: ConnectionTimeouts(
                head: .seconds(self.requestHeadTimeout),
                body: .seconds(self.bodyTimeout),
                idle: .seconds(self.idleTimeout)
            )
        )
        let application = try await buildApplication(configuration: configuration, logger: logger)
        if self.dev { Self.printQuickStart(layout) }
        try await application.run()
    }

    /// Where everything is and three commands to try, on standard output.
    static func printQuickStart(_ layout: DaemonLayout) {
        print(
            """
            connvaultd is running in development mode
              admin socket  \(layout.adminSocketPath)
              app socket    \(layout.appSocketPath)
              database      \(layout.databasePath)
              key file      \(layout.keyFilePath)
            Quick start (in another shell):
              export CONNVAULT_ADMIN_SOCKET=\(layout.adminSocketPath) CONNVAULT_APP_SOCKET=\(layout.appSocketPath)
              printf '%s\\n' "$CLIENT_SECRET" | connvaultctl add acme --provider personio-v2 --client-id ID --secret-stdin
              connvaultctl list
            """
        )
        // Standard output is a file or pipe under a supervisor: flush now, not at exit.
        fflush(nil)
    }

    /// One `write(2)` to standard error, without touching C's `stderr` stream.
    static func writeToStandardError(_ text: String) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }
}
