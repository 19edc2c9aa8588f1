import ArgumentParser
import Foundation
import PersonioStandIn
import TestSupport

/// `make scale`: the release daemon and CLI against a vault of 100,000 connections and a million-row audit trail.
///
/// The state is seeded through VaultCore (``ScaleSeed``), copied to a directory on disk, and then everything measured
/// goes through the real programs: `connvaultd --dev` started (exec to its admin socket answering
/// `GET /v1/health`), its memory read from `/proc/PID/status` (VmRSS, VmHWM), `connvaultctl list`, `list --json`,
/// `show`, one `edit`, `rotate-key` and `audit --verify` timed from exec to exit, and a million cached token requests
/// over kept-alive app socket connections with the resident set read before and after.
@main
struct ConnvaultScale: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connvault-scale",
        abstract: "Scale figures: start-up, memory and admin commands at 100,000 connections."
    )

    @Option(help: "Where the release connvaultd and connvaultctl are.")
    var binDir: String

    @Option(help: "Connections to seed.")
    var connections = 100_000

    @Option(help: "Audit rows to seed (the connections' own create rows included).")
    var auditRows = 1_000_000

    @Option(help: "Cached token requests whose effect on the resident set is measured.")
    var tokenRequests = 1_000_000

    @Option(help: "Kept-alive app socket connections the token requests are spread over.")
    var tokenConnections = 4

    @Option(help: "How often start-up and each read-only command are measured (the median is reported).")
    var repeats = 3

    @Option(help: "A directory that keeps the seeded state between runs (reused when seeded with the same figures).")
    var seedCache: String?

    @Option(help: "The directory on disk the measured daemon runs in (default: a fresh one under /var/tmp).")
    var workDir: String?

    mutating func run() async throws {
        let work = try self.workDir ?? Self.makeTemporary(under: "/var/tmp", prefix: "cvscale")
        let vaultDirectory = "\(work)/vault"
        let state = "\(vaultDirectory)/.connvault"
        let seed = ScaleSeed(connections: self.connections, auditRows: self.auditRows)
        try? FileManager.default.removeItem(atPath: vaultDirectory)
        try FileManager.default.createDirectory(atPath: vaultDirectory, withIntermediateDirectories: true)
        try await self.provideSeed(seed, at: state)
        let figures = Figures()
        figures.note("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores; state directory \(state)")
        figures.note(
            "database: \(Self.fileSize("\(state)/vault.sqlite3") / 1_048_576) MiB, \(self.connections) connections, \(self.auditRows) audit rows"
        )

        let daemon = ScaleDaemon(binDirectory: self.binDir, directory: vaultDirectory)
        defer { daemon.stop() }

        // Start-up: each start from exec to the admin socket answering; stopped again in between.
        var starts: [Double] = []
        for round in 0..<self.repeats {
            starts.append(try daemon.start())
            if round < self.repeats - 1 { daemon.stop() }
        }
        figures.timing("start-up (exec to GET /v1/health answered)", starts, target: 1)
        figures.memory("resident set after start-up", daemon.memory(), target: 100)

        let showID = ScaleSeed.id(self.connections / 2)
        let list = try self.repeated { try daemon.ctl(["list"], measured: true, peakMemory: true) }
        figures.timing("connvaultctl list", list.times, target: nil)
        // VmHWM is the daemon's peak since it started (36 MiB after start-up): here, the peak during the lists.
        figures.peak("daemon peak resident set (VmHWM) after list", kiB: [daemon.memory().peakKiB], target: 100)
        figures.peak("connvaultctl list's own peak resident set", kiB: list.peaks, target: nil)
        figures.check(
            "list prints every connection",
            list.last.stdout.split(separator: "\n").count == self.connections + 1
        )
        let listJSON = try self.repeated { try daemon.ctl(["list", "--json"], measured: true, peakMemory: true) }
        figures.timing("connvaultctl list --json", listJSON.times, target: 2)
        figures.peak("daemon peak resident set (VmHWM) after list --json", kiB: [daemon.memory().peakKiB], target: 100)
        figures.peak("connvaultctl list --json's own peak resident set", kiB: listJSON.peaks, target: nil)
        figures.exited("connvaultctl list --json", listJSON.last)
        figures.check(
            "list --json holds every connection",
            Self.countConnections(listJSON.last.stdout) == self.connections,
            detail: "\(listJSON.last.stdout.utf8.count / 1_048_576) MiB of JSON"
        )
        let show = try self.repeated { try daemon.ctl(["show", showID], measured: true) }
        figures.timing("connvaultctl show \(showID)", show.times, target: nil)
        let edit = try daemon.ctl(["edit", showID, "--allow-uid", "4242"], measured: true)
        figures.timing("connvaultctl edit \(showID) --allow-uid 4242 (one new revision)", [edit.seconds], target: nil)
        figures.exited("connvaultctl show", show.last)
        figures.exited("connvaultctl edit", edit)
        let rotate = try daemon.ctl(["rotate-key"], measured: true)
        figures.exited("connvaultctl rotate-key", rotate)
        figures.timing(
            "connvaultctl rotate-key (re-wrap transaction, then the key file rename)",
            [rotate.seconds],
            target: 5
        )
        figures.check(
            "rotate-key re-wrapped every data key",
            rotate.stdout.contains("\(self.connections)"),
            detail: rotate.stdout
        )
        let verify = try daemon.ctl(["audit", "--verify"], measured: true)
        figures.timing("connvaultctl audit --verify (\(self.auditRows + 2) rows)", [verify.seconds], target: nil)
        figures.check("the audit chain verifies", verify.result.status == 0, detail: verify.stdout)
        figures.memory("resident set after list, show, edit, rotate-key, verify", daemon.memory(), target: 100)

        // A restart on the rotated key, then the token path.
        daemon.stop()
        starts = [try daemon.start()]
        figures.timing("start-up after rotate-key", starts, target: 1)
        try await self.tokenLoop(daemon, figures)
        daemon.stop()
        figures.print()
        if self.workDir == nil { try? FileManager.default.removeItem(atPath: work) }
    }

    /// A million cached token requests: the resident set before (after a warm-up) and after.
    func tokenLoop(_ daemon: ScaleDaemon, _ figures: Figures) async throws {
        let standIn = try await PersonioStandIn.start()
        do {
            standIn.register(clientID: "scale-token-client", clientSecret: "CANARY-scale-token-secret")
            _ = try daemon.ctl(
                [
                    "add", "scale-token", "--provider", "personio-v2", "--client-id", "scale-token-client",
                    "--secret-stdin", "--api-base-url", standIn.baseURL, "--allow-uid", String(getuid()),
                ],
                stdin: "CANARY-scale-token-secret\n"
            )
            let path = "/v1/connections/scale-token/token"
            let warmUp = try await Self.requests(socket: daemon.appSocket, path: path, count: 20_000, width: 4)
            figures.check("warm-up token requests answered 200", warmUp == 0)
            let before = daemon.memory()
            let started = ContinuousClock.now
            let loop = try await Self.requests(
                socket: daemon.appSocket,
                path: path,
                count: self.tokenRequests,
                width: self.tokenConnections
            )
            let elapsed = Seconds(ContinuousClock.now - started).value
            let after = daemon.memory()
            figures.check(
                "\(self.tokenRequests) cached token requests answered 200",
                loop == 0,
                detail: String(
                    format: "%.0f requests/s over %d connections",
                    Double(self.tokenRequests) / elapsed,
                    self.tokenConnections
                )
            )
            figures.memory("resident set before \(self.tokenRequests) token requests", before, target: 100)
            figures.memory("resident set after \(self.tokenRequests) token requests", after, target: 100)
            figures.note(
                String(
                    format: "resident set growth over the token requests: %+.1f MiB",
                    Double(after.rssKiB - before.rssKiB) / 1024
                )
            )
            figures.note("token exchanges with the stand-in: \(standIn.calls(.v2Token))")
        } catch {
            try? await standIn.shutdown()
            throw error
        }
        try await standIn.shutdown()
    }

    /// `count` GET requests spread over `width` kept-alive connections, each on a thread of its own.
    static func requests(socket: String, path: String, count: Int, width: Int) async throws -> Int {
        let request = BlockingHTTPConnection.request(path: path)
        let failures = try await withThrowingTaskGroup(of: Int.self) { group in
            for worker in 0..<width {
                let share = count / width + (worker < count % width ? 1 : 0)
                group.addTask {
                    try await Blocking.run {
                        let connection = try BlockingHTTPConnection(socketPath: socket)
                        defer { connection.close() }
                        var failures = 0
                        for _ in 0..<share {
                            try connection.send(request)
                            if try connection.receive().status != 200 { failures += 1 }
                        }
                        return failures
                    }
                }
            }
            return try await group.reduce(0, +)
        }
        return failures
    }

    /// Seeds `state`, or copies it from the seed cache when that holds the same figures.
    func provideSeed(_ seed: ScaleSeed, at state: String) async throws {
        if let cache = self.seedCache, (try? String(contentsOfFile: "\(cache)/seed.txt", encoding: .utf8)) == seed.label
        {
            try Self.copyState(from: cache, to: state)
            Swift.print("seed: reused \(cache)")
            return
        }
        let memory = try Self.makeTemporary(under: "/dev/shm", prefix: "cvseed")
        defer { try? FileManager.default.removeItem(atPath: memory) }
        try await seed.seed(into: "\(memory)/state") { Swift.print("seed: \($0)") }
        try Self.copyState(from: "\(memory)/state", to: state)
        if let cache = self.seedCache {
            try? FileManager.default.removeItem(atPath: cache)
            try Self.copyState(from: "\(memory)/state", to: cache)
        }
    }

    static func copyState(from source: String, to destination: String) throws {
        try? FileManager.default.removeItem(atPath: destination)
        try FileManager.default.createDirectory(
            atPath: destination,
            withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700]
        )
        for name in try FileManager.default.contentsOfDirectory(atPath: source) {
            try FileManager.default.copyItem(atPath: "\(source)/\(name)", toPath: "\(destination)/\(name)")
            chmod("\(destination)/\(name)", 0o600)
        }
    }

    static func makeTemporary(under parent: String, prefix: String) throws -> String {
        var template = Array("\(parent)/\(prefix)-XXXXXX".utf8CString)
        guard let created = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw ValidationError("mkdtemp under \(parent): \(String(cString: strerror(errno)))")
        }
        return String(cString: created)
    }

    static func fileSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
    }

    static func countConnections(_ json: String) -> Int? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) else { return nil }
        if let list = object as? [Any] { return list.count }
        return ((object as? [String: Any])?["connections"] as? [Any])?.count
    }

    /// Runs `body` `repeats` times: the times, and the last result.
    func repeated(_ body: () throws -> Timed) throws -> (times: [Double], last: Timed, peaks: [Int]) {
        var times: [Double] = []
        var peaks: [Int] = []
        var last: Timed?
        for _ in 0..<max(1, self.repeats) {
            let timed = try body()
            times.append(timed.seconds)
            if let peak = timed.peakKiB { peaks.append(peak) }
            last = timed
        }
        return (times, last!, peaks)
    }
}
