import Foundation
import PersonioStandIn
import VaultAPI

/// A Personio stand-in on 127.0.0.1 and the built `connvaultd --dev` in a temporary directory of its own, for
/// end-to-end tests of the token broker, the app socket and the proxy. Connections are added with
/// `connvaultctl add … --api-base-url <stand-in>`, so every upstream call lands in the stand-in.
///
/// Blocking work (child processes, raw socket exchanges) runs off Swift's cooperative pool.
public struct BrokerFixture: Sendable {
    public let standIn: PersonioStandIn
    public let daemon: DaemonProcess

    /// The stand-in's `http://127.0.0.1:PORT`.
    public var baseURL: String { self.standIn.baseURL }

    /// Runs `body` with a fresh stand-in and daemon; stops both and removes the directory afterwards, whether `body`
    /// returns or throws.
    ///
    /// - Parameters:
    ///   - daemonArguments: `connvaultd`'s arguments (`--dev` keeps everything in the temporary directory).
    ///   - body: The test.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` or starting throws.
    public static func run<Result>(
        daemonArguments: [String] = ["--dev", "--log-level", "debug"],
        _ body: (BrokerFixture) async throws -> Result
    ) async throws -> Result {
        let directory = try TemporaryDirectory()
        let standIn: PersonioStandIn
        do {
            standIn = try await PersonioStandIn.start()
        } catch {
            directory.remove()
            throw error
        }
        let fixture = BrokerFixture(
            standIn: standIn,
            daemon: DaemonProcess(directory: directory, arguments: daemonArguments)
        )
        let result: Result
        do {
            try await Blocking.run { [daemon = fixture.daemon] in try daemon.start() }
            result = try await body(fixture)
        } catch {
            await fixture.tearDown()
            throw error
        }
        await fixture.tearDown()
        return result
    }

    private func tearDown() async {
        _ = try? await Blocking.run { [daemon = self.daemon] in daemon.stop() }
        try? await self.standIn.shutdown()
        self.daemon.directory.remove()
    }

    // MARK: - Commands and requests

    /// Runs `connvaultctl` against this daemon, off the cooperative pool.
    public func ctl(
        _ arguments: [String],
        stdin: String? = nil,
        environment: [String: String] = [:]
    ) async throws -> CommandResult {
        try await Blocking.run { [daemon = self.daemon] in
            try daemon.ctl(arguments, stdin: stdin, environment: environment)
        }
    }

    /// Runs `connvaultctl --json` and decodes its standard output; fails unless it exits 0.
    public func ctlJSON<T: Decodable>(_ type: T.Type, _ arguments: [String], stdin: String? = nil) async throws -> T {
        let result = try await self.ctl(arguments + ["--json"], stdin: stdin)
        guard result.status == 0 else { throw TestSupportError("connvaultctl \(arguments) failed:\n\(result)") }
        do {
            return try VaultJSON.decoder().decode(T.self, from: Data(result.stdout.utf8))
        } catch {
            throw TestSupportError("connvaultctl \(arguments): cannot decode \(T.self) (\(error)) from:\n\(result)")
        }
    }

    /// One request on the app socket, with `Connection: close`.
    public func app(
        _ target: String,
        method: String = "GET",
        headers: [(String, String)] = [],
        body: String? = nil,
        timeout: Duration = .seconds(10)
    ) async throws -> RawHTTP.Response {
        try await Blocking.run { [socket = self.daemon.appSocket] in
            try RawHTTP.exchange(socket: socket, target, method: method, headers: headers, body: body, timeout: timeout)
        }
    }

    /// One request on the admin socket, with `Connection: close`.
    public func admin(
        _ method: String = "GET",
        _ target: String,
        body: String? = nil,
        timeout: Duration = .seconds(10)
    ) async throws -> RawHTTP.Response {
        let headers: [(String, String)] = body == nil ? [] : [("Content-Type", "application/json")]
        return try await Blocking.run { [socket = self.daemon.adminSocket] in
            try RawHTTP.exchange(socket: socket, target, method: method, headers: headers, body: body, timeout: timeout)
        }
    }

    // MARK: - Connections

    /// Registers a fake v2 client with the stand-in and adds it as a `personio-v2` connection pointing there.
    ///
    /// - Parameters:
    ///   - id: The connection id.
    ///   - clientID: The fake client id (registered with the stand-in).
    ///   - secret: The fake client secret (registered with the stand-in, read by `connvaultctl` from standard input).
    ///   - allowUID: A uid granted the connection (0: the tests, which run as root); nil for none.
    ///   - options: More `add` options (`--app-id`, `--scope`, …).
    /// - Returns: The masked view `add --json` printed.
    @discardableResult
    public func addV2(
        _ id: String,
        clientID: String,
        secret: String,
        allowUID: Int? = 0,
        options: [String] = []
    ) async throws -> ConnectionView {
        self.standIn.register(clientID: clientID, clientSecret: secret, api: .v2)
        let grant = allowUID.map { ["--allow-uid", String($0)] } ?? []
        return try await self.ctlJSON(
            ConnectionView.self,
            ["add", id, "--provider", "personio-v2", "--client-id", clientID, "--api-base-url", self.baseURL]
                + grant + options + ["--secret-stdin"],
            stdin: "\(secret)\n"
        )
    }

    /// Registers a fake recruiting key with the stand-in and adds it as a `personio-recruiting` connection.
    @discardableResult
    public func addRecruiting(
        _ id: String,
        key: String,
        companyID: String,
        allowUID: Int? = 0
    ) async throws -> ConnectionView {
        self.standIn.registerRecruitingKey(key, companyID: companyID)
        let grant = allowUID.map { ["--allow-uid", String($0)] } ?? []
        return try await self.ctlJSON(
            ConnectionView.self,
            ["add", id, "--provider", "personio-recruiting", "--company-id", companyID, "--api-base-url", self.baseURL]
                + grant + ["--secret-stdin"],
            stdin: "\(key)\n"
        )
    }
}
