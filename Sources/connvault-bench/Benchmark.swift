import Glibc

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
        let directory = try TemporaryDirectory()
        defer { directory.remove() }

        self.report.say("connvault-bench \(BenchReport.timestamp())")
        self.report.say("machine: \(MachineInfo.current().description)")
        self.report.say(
            "load: HTTP/1.1 keep-alive over a Unix socket, \(TextTable.fixed(self.configuration.warmUpSeconds, 1)) s "
                + "warm-up, \(TextTable.fixed(self.configuration.durationSeconds, 1)) s measured per case; "
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
            self.report.say("nginx: \(NginxServer.version(executable: nginx, directory: directory)), one process")
        }
        self.report.say()

        if let nginx {
            self.measure(generator: generator, pinned: pinned, unpinned: unpinned) {
                try NginxServer(executable: nginx, directory: directory, body: body, requestPath: requestPath)
            }
        } else {
            self.report.say("nginx: not found (Debian: apt-get install nginx-light; `make bench-deps` does it)")
        }
        self.measure(generator: generator, pinned: pinned, unpinned: unpinned) {
            try NIOBenchServer(
                binDirectory: self.configuration.binDirectory,
                directory: directory,
                body: body,
                requestPath: requestPath
            )
        }
        if let vault {
            self.measure(generator: generator, pinned: pinned, unpinned: unpinned) { vault.daemon }
        }

        self.report.say()
        self.summarize()

        if let vault {
            self.report.say()
            vault.measureColdPaths(configuration: self.configuration, fileLimit: fileLimit, report: self.report)
        }
    }

    private func measure(
        generator: LoadGenerator,
        pinned: CPUSet,
        unpinned: CPUSet,
        server makeServer: () throws -> any ServerUnderTest
    ) {
        let server: any ServerUnderTest
        do {
            server = try makeServer()
        } catch {
            self.report.say("server failed to start: \(error)")
            return
        }
        defer {
            // The vault stays up for the cold-path measurements; the others stop here.
            if !(server is VaultDaemon) { server.stop() }
        }
        do {
            let connection = try BlockingHTTPConnection(socketPath: server.socketPath)
            defer { connection.close() }
            let probe = try connection.get(server.requestPath)
            self.report.say(
                "\(server.name): GET \(server.requestPath) → \(probe.status), "
                    + "\(probe.headerLength) bytes of status line and headers + \(probe.bodyLength) bytes of body"
            )
        } catch {
            self.report.say("\(server.name): probe request failed — \(error)")
            return
        }
        for connections in self.configuration.connectionCounts {
            do {
                let result = try generator.run(
                    against: server,
                    connections: connections,
                    pinnedTo: connections == 1 ? pinned : nil,
                    unpinned: unpinned
                )
                self.results.append(result)
                self.report.say(Self.progressLine(result))
            } catch {
                self.report.say("\(server.name), \(connections) connection(s): failed — \(error)")
            }
        }
    }

    private static func progressLine(_ result: LoadResult) -> String {
        var line =
            "\(result.server), \(result.connections) connection(s): "
            + "\(TextTable.grouped(result.requestsPerSecond)) req/s, "
            + "p50 \(TextTable.fixed(result.latency.p50Microseconds, 1)) µs, "
            + "p99 \(TextTable.fixed(result.latency.p99Microseconds, 1)) µs"
        if result.unexpectedStatuses > 0 {
            line += " — \(result.unexpectedStatuses) responses were not 200: figures invalid"
        }
        return line
    }

    // MARK: - Summary

    private func summarize() {
        var table = TextTable(headers: [
            "server", "conns", "pinned", "req/s", "p50 µs", "p99 µs", "server CPU µs/req", "client CPU µs/req",
        ])
        for result in self.results {
            table.append([
                result.server,
                String(result.connections),
                result.pinnedTo.map { "CPU \($0)" } ?? "no",
                TextTable.grouped(result.requestsPerSecond),
                TextTable.fixed(result.latency.p50Microseconds, 1),
                TextTable.fixed(result.latency.p99Microseconds, 1),
                TextTable.fixed(result.serverCPUPerRequest, 2),
                TextTable.fixed(result.clientCPUPerRequest, 2),
            ])
        }
        for line in table.lines {
            self.report.say(line)
        }
        self.report.say()

        guard let most = self.configuration.connectionCounts.max() else { return }
        func find(_ server: String) -> LoadResult? {
            self.results.first { $0.server == server && $0.connections == most }
        }
        let vault = find("vault")
        let nginx = find("nginx")
        let nio = find("bare NIO")
        guard let vault else {
            self.report.say("ratios: no vault figures at \(most) connections, so no ratios against the targets")
            return
        }
        self.ratio(
            "vault / nginx throughput, \(most) connections",
            vault.requestsPerSecond,
            nginx?.requestsPerSecond,
            target: "≥ 0.50",
            met: { $0 >= 0.5 }
        )
        self.ratio(
            "vault / bare NIO throughput, \(most) connections",
            vault.requestsPerSecond,
            nio?.requestsPerSecond,
            target: "≥ 0.80",
            met: { $0 >= 0.8 }
        )
        self.ratio(
            "vault / nginx server CPU per request, \(most) connections",
            vault.serverCPUPerRequest,
            nginx?.serverCPUPerRequest,
            target: "≤ 3.00",
            met: { $0 <= 3 }
        )
    }

    private func ratio(_ label: String, _ value: Double, _ reference: Double?, target: String, met: (Double) -> Bool) {
        guard let reference, reference > 0 else {
            self.report.say("\(label): no reference figure")
            return
        }
        let ratio = value / reference
        self.report.say("\(label): \(TextTable.fixed(ratio, 2))  (target \(target): \(met(ratio) ? "met" : "NOT met"))")
    }

    // MARK: - Process set-up

    /// Ignores SIGPIPE (a server closing a socket must be an error, not the end of the run) and raises the soft
    /// open-file limit to the hard one, for the many-callers check and for the daemon, which inherits it.
    /// - Returns: the soft open-file limit now in force.
    private static func prepareProcess() -> Int {
        signal(SIGPIPE, SIG_IGN)
        var limit = rlimit()
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        getrlimit(resource, &limit)
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            setrlimit(resource, &limit)
            getrlimit(resource, &limit)
        }
        return Int(clamping: limit.rlim_cur)
    }
}
