import CVaultShims
import Glibc
import TestSupport

/// The whole run: the three servers under the same load generator and the same body size, the vault's cold paths,
/// and the summary against the targets.
final class Benchmark {
    private let configuration: BenchConfiguration
    private let report = BenchReport()
    private var results: [LoadResult] = []

    init(configuration: BenchConfiguration) {
        self.configuration = configuration
    }

    /// Runs everything and writes the results file. A server that cannot be measured is reported and skipped.
    func run() async throws {
        let fileLimit = Self.prepareProcess()
        let unpinned = try CPUSet.ofCurrentProcess()
        let pinned = CPUSet(cpus: [self.configuration.pinCPU ?? unpinned.cpus.last ?? 0])
        let directory = try TemporaryDirectory(prefix: "cv-bench")
        defer { directory.remove() }
        ServerProcess.endChildrenOnInterrupt(removing: directory)

        self.report.say("connvault-bench \(BenchReport.timestamp())")
        self.report.say("machine: \(MachineInfo.current().description)")
        self.report.say(
            "load: HTTP/1.1 keep-alive over a Unix socket, \(TextTable.fixed(self.configuration.warmUpSeconds, 1)) s "
                + "warm-up, \(TextTable.fixed(self.configuration.durationSeconds, 1)) s measured per case, "
                + "\(self.configuration.rounds) round(s) with the servers taking turns (each round starting with the "
                + "next); "
                + "1 connection pinned with the server to CPU \(pinned), more connections unpinned (CPUs \(unpinned))"
        )

        // The vault goes first: its token response decides the body size the other two return.
        var vault: VaultBench?
        var bodySize = self.configuration.fallbackBodySize
        if self.configuration.includeVault {
            do {
                let started = try await VaultBench.start(
                    binDirectory: self.configuration.binDirectory,
                    directory: directory
                )
                vault = started
                bodySize = started.tokenBodySize
            } catch {
                self.report.say("vault: not measured — \(error)")
            }
        }
        self.measureAll(
            vault: vault,
            bodySize: bodySize,
            directory: directory,
            fileLimit: fileLimit,
            pinned: pinned,
            unpinned: unpinned
        )
        await vault?.stop()
        try self.report.write(to: self.configuration.resultsFile)
        print("\nwritten to \(self.configuration.resultsFile)")
    }

    // MARK: - Measuring

    private func measureAll(
        vault: VaultBench?,
        bodySize: Int,
        directory: TemporaryDirectory,
        fileLimit: Int,
        pinned: CPUSet,
        unpinned: CPUSet
    ) {
        let generator = LoadGenerator(
            warmUpSeconds: self.configuration.warmUpSeconds,
            durationSeconds: self.configuration.durationSeconds
        )
        let body = ResponseBody.json(size: bodySize)
        let requestPath = VaultDaemon.tokenPath(connection: VaultBench.hotConnection)
        self.report.say("response body: \(body.utf8.count) bytes of JSON from every server")
        let nginx = NginxServer.findExecutable(
            candidates: self.configuration.nginxPath.map { [$0] } ?? ["/usr/sbin/nginx"]
        )
        if let nginx {
            self.report.say("nginx: \(NginxServer.version(executable: nginx)), one process")
        }
        self.report.say()

        // Every server is started first and measured in turn, round after round: drift on a shared machine (other
        // work starting or stopping) then touches all three alike instead of whichever happened to run at the time.
        var servers: [any ServerUnderTest] = []
        if let nginx {
            self.start(&servers) {
                try NginxServer(executable: nginx, directory: directory, body: body, requestPath: requestPath)
            }
        } else {
            self.report.say("nginx: not found (Debian: apt-get install nginx-light; `make bench-deps` does it)")
        }
        self.start(&servers) {
            try NIOBenchServer(
                binDirectory: self.configuration.binDirectory,
                directory: directory,
                body: body,
                requestPath: requestPath
            )
        }
        if let vault {
            self.start(&servers) { vault.daemon }
        }
        for round in 1...self.configuration.rounds {
            // Each round starts with the next server, so that no server is always measured first (or always right
            // after the same one) when the machine's load changes over minutes.
            let start = (round - 1) % max(servers.count, 1)
            for server in servers[start...] + servers[..<start] {
                self.measure(server, round: round, generator: generator, pinned: pinned, unpinned: unpinned)
            }
        }
        // The vault stays up for the cold-path measurements; the others stop here.
        for server in servers where !(server is VaultDaemon) {
            server.stop()
        }

        self.report.say()
        self.summarize()

        if let vault {
            self.report.say()
            vault.measureColdPaths(configuration: self.configuration, fileLimit: fileLimit, report: self.report)
        }
    }

    /// Starts a server and probes it once; a server that fails either is reported and left out.
    private func start(_ servers: inout [any ServerUnderTest], _ makeServer: () throws -> any ServerUnderTest) {
        let server: any ServerUnderTest
        do {
            server = try makeServer()
        } catch {
            self.report.say("server failed to start: \(error)")
            return
        }
        do {
            let connection = try BlockingHTTPConnection(socketPath: server.socketPath)
            defer { connection.close() }
            let probe = try connection.get(server.requestPath)
            self.report.say(
                "\(server.name): GET \(server.requestPath) → \(probe.status), "
                    + "\(probe.headerLength) bytes of status line and headers + \(probe.bodyLength) bytes of body"
            )
            servers.append(server)
        } catch {
            self.report.say("\(server.name): probe request failed — \(error)")
            if !(server is VaultDaemon) { server.stop() }
        }
    }

    private func measure(
        _ server: any ServerUnderTest,
        round: Int,
        generator: LoadGenerator,
        pinned: CPUSet,
        unpinned: CPUSet
    ) {
        for connections in self.configuration.connectionCounts {
            do {
                var result = try generator.run(
                    against: server,
                    connections: connections,
                    pinnedTo: connections == 1 ? pinned : nil,
                    unpinned: unpinned
                )
                result.round = round
                self.results.append(result)
                self.report.say(Self.progressLine(result))
            } catch {
                self.report.say("\(server.name), \(connections) connection(s), round \(round): failed — \(error)")
            }
        }
    }

    private static func progressLine(_ result: LoadResult) -> String {
        var line =
            "round \(result.round): \(result.server), \(result.connections) connection(s): "
            + "\(TextTable.grouped(result.requestsPerSecond)) req/s, "
            + "p50 \(TextTable.fixed(result.latency.p50Microseconds, 1)) µs, "
            + "p99 \(TextTable.fixed(result.latency.p99Microseconds, 1)) µs"
        if result.unexpectedStatuses > 0 {
            line += " — \(result.unexpectedStatuses) responses were not 200: figures invalid"
        }
        return line
    }

    // MARK: - Summary

    /// The median of each figure over the rounds, per server and connection count, then the ratios against the
    /// targets: each ratio is taken within a round (the three servers measured minutes apart at most) and the median
    /// of those is judged, with the range beside it.
    private func summarize() {
        let rounds = self.configuration.rounds
        var table = TextTable(headers: [
            "server", "conns", "pinned", "req/s", "p50 µs", "p99 µs", "server CPU µs/req", "client CPU µs/req",
        ])
        var seen: [String] = []
        for result in self.results where !seen.contains("\(result.server)/\(result.connections)") {
            seen.append("\(result.server)/\(result.connections)")
            let all = self.results.filter { $0.server == result.server && $0.connections == result.connections }
            table.append([
                result.server,
                String(result.connections),
                result.pinnedTo.map { "CPU \($0)" } ?? "no",
                TextTable.grouped(Self.median(all.map(\.requestsPerSecond))),
                TextTable.fixed(Self.median(all.map(\.latency.p50Microseconds)), 1),
                TextTable.fixed(Self.median(all.map(\.latency.p99Microseconds)), 1),
                TextTable.fixed(Self.median(all.map(\.serverCPUPerRequest)), 2),
                TextTable.fixed(Self.median(all.map(\.clientCPUPerRequest)), 2),
            ])
        }
        if rounds > 1 {
            self.report.say("medians over \(rounds) rounds (each column on its own):")
        }
        for line in table.lines {
            self.report.say(line)
        }
        self.report.say()

        guard let most = self.configuration.connectionCounts.max() else { return }
        func figures(_ server: String, _ figure: (LoadResult) -> Double) -> [Int: Double] {
            var byRound: [Int: Double] = [:]
            for result in self.results where result.server == server && result.connections == most {
                byRound[result.round] = figure(result)
            }
            return byRound
        }
        let vaultRate = figures("vault", \.requestsPerSecond)
        guard !vaultRate.isEmpty else {
            self.report.say("ratios: no vault figures at \(most) connections, so no ratios against the targets")
            return
        }
        self.ratio(
            "vault / nginx throughput, \(most) connections",
            vaultRate,
            figures("nginx", \.requestsPerSecond),
            target: "≥ 0.50",
            met: { $0 >= 0.5 }
        )
        self.ratio(
            "vault / bare NIO throughput, \(most) connections",
            vaultRate,
            figures("bare NIO", \.requestsPerSecond),
            target: "≥ 0.80",
            met: { $0 >= 0.8 }
        )
        self.ratio(
            "vault / nginx server CPU per request, \(most) connections",
            figures("vault", \.serverCPUPerRequest),
            figures("nginx", \.serverCPUPerRequest),
            target: "≤ 3.00",
            met: { $0 <= 3 }
        )
    }

    /// Prints the median of the per-round ratios `value / reference`, their range, and whether the median meets the
    /// target.
    private func ratio(
        _ label: String,
        _ value: [Int: Double],
        _ reference: [Int: Double],
        target: String,
        met: (Double) -> Bool
    ) {
        let ratios = value.keys.sorted().compactMap { round -> Double? in
            guard let reference = reference[round], reference > 0, let value = value[round] else { return nil }
            return value / reference
        }
        guard !ratios.isEmpty else {
            self.report.say("\(label): no reference figure")
            return
        }
        let median = Self.median(ratios)
        var line = "\(label): \(TextTable.fixed(median, 2))"
        if ratios.count > 1 {
            line += " (rounds: \(ratios.map { TextTable.fixed($0, 2) }.joined(separator: ", ")))"
        }
        line += "  (target \(target): \(met(median) ? "met" : "NOT met"))"
        self.report.say(line)
    }

    /// The middle value; the mean of the two middle ones for an even count.
    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return .nan }
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    // MARK: - Process set-up

    /// Ignores SIGPIPE (a server closing a socket must be an error, not the end of the run) and raises the soft
    /// open-file limit to the hard one, for the many-callers check and for the daemon, which inherits it.
    /// - Returns: the soft open-file limit now in force.
    private static func prepareProcess() -> Int {
        signal(SIGPIPE, SIG_IGN)
        var soft: Int64 = 0
        var hard: Int64 = 0
        _ = cv_raise_nofile_limit(&soft, &hard)
        return Int(clamping: soft)
    }
}
