import CVaultShims
import Glibc
import TestSupport

/// The whole run: the token path's three servers under the same load generator and the same body size, the proxy
/// case's two proxies in the same rounds, the vault's cold paths, and the summaries against the targets.
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
        if self.configuration.includeTokenPath {
            self.report.say("response body: \(body.utf8.count) bytes of JSON from every server of the token path")
        }
        let nginx = NginxServer.findExecutable(
            candidates: self.configuration.nginxPath.map { [$0] } ?? ["/usr/sbin/nginx"]
        )
        if let nginx {
            self.report.say("nginx: \(NginxServer.version(executable: nginx)), one process")
        }
        self.report.say()

        // Every server is started first and measured in turn, round after round: drift on a shared machine (other
        // work starting or stopping) then touches all of them alike instead of whichever happened to run at the time.
        var servers: [any ServerUnderTest] = []
        if nginx == nil {
            self.report.say("nginx: not found (Debian: apt-get install nginx-light; `make bench-deps` does it)")
        }
        if self.configuration.includeTokenPath {
            if let nginx {
                self.start(&servers) {
                    try NginxServer(executable: nginx, directory: directory, body: body, requestPath: requestPath)
                }
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
        }
        var upstream: NginxUpstream?
        if self.configuration.includeProxy {
            upstream = self.startProxyCase(&servers, nginx: nginx, vault: vault, directory: directory)
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
        upstream?.stop()

        self.report.say()
        if self.configuration.includeTokenPath {
            self.summarizeTokenPath()
        }
        if self.configuration.includeProxy {
            self.summarizeProxy()
        }

        if let vault, self.configuration.includeTokenPath {
            self.report.say()
            vault.measureColdPaths(configuration: self.configuration, fileLimit: fileLimit, report: self.report)
        }
    }

    /// Starts a server and probes it once; a server that fails either is reported and left out.
    /// - Returns: the probe's answer, head and body included; `nil` when the server was left out.
    @discardableResult
    private func start(
        _ servers: inout [any ServerUnderTest],
        _ makeServer: () throws -> any ServerUnderTest
    ) -> BlockingHTTPConnection.Response? {
        let server: any ServerUnderTest
        do {
            server = try makeServer()
        } catch {
            self.report.say("server failed to start: \(error)")
            return nil
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
            return probe
        } catch {
            self.report.say("\(server.name): probe request failed — \(error)")
            if !(server is VaultDaemon) { server.stop() }
            return nil
        }
    }

    /// Starts the proxy case: the upstream, nginx's `proxy_pass` in front of it and the vault's connection to it,
    /// and checks that both proxies pass back the upstream's answer: same status, same body.
    /// - Returns: the upstream, to stop after the rounds; `nil` when it could not be started.
    private func startProxyCase(
        _ servers: inout [any ServerUnderTest],
        nginx: String?,
        vault: VaultBench?,
        directory: TemporaryDirectory
    ) -> NginxUpstream? {
        guard let nginx else {
            self.report.say("proxy case: not measured — nginx is its upstream and its reference")
            return nil
        }
        let upstream: NginxUpstream
        let expected: BlockingHTTPConnection.Response
        do {
            upstream = try NginxUpstream(executable: nginx, directory: directory)
            expected = try upstream.probe()
        } catch {
            self.report.say("proxy case: not measured — the upstream failed: \(error)")
            return nil
        }
        self.report.say(
            "upstream: nginx on \(upstream.baseURL), GET \(NginxUpstream.personsPath) → \(expected.status), "
                + "\(expected.bodyLength) bytes of JSON; POST /v2/auth/token → a fixed v2 token"
        )
        var probes: [(String, BlockingHTTPConnection.Response)] = []
        let requestPath = VaultBench.proxyPrefix + String(NginxUpstream.personsPath.dropFirst())
        let nginxProbe = self.start(&servers) {
            try NginxProxy(
                executable: nginx,
                directory: directory,
                upstream: upstream,
                prefix: VaultBench.proxyPrefix,
                requestPath: requestPath
            )
        }
        if let nginxProbe { probes.append(("nginx proxy", nginxProbe)) }
        let nioProbe = self.start(&servers) {
            try NIOBenchProxy(
                binDirectory: self.configuration.binDirectory,
                directory: directory,
                upstream: upstream,
                prefix: VaultBench.proxyPrefix,
                requestPath: requestPath
            )
        }
        if let nioProbe { probes.append((NIOBenchProxy.name, nioProbe)) }
        let rawProbe = self.start(&servers) {
            try NIOBenchProxy(
                binDirectory: self.configuration.binDirectory,
                directory: directory,
                upstream: upstream,
                prefix: VaultBench.proxyPrefix,
                requestPath: requestPath,
                raw: true
            )
        }
        if let rawProbe { probes.append((NIOBenchProxy.rawName, rawProbe)) }
        if let vault {
            let vaultProbe = self.start(&servers) { try vault.proxyRoute(upstream: upstream) }
            if let vaultProbe { probes.append(("vault proxy", vaultProbe)) }
        }
        for (name, probe) in probes {
            let same = probe.status == expected.status && probe.body == expected.body
            self.report.say(
                "\(name): status \(probe.status), body \(probe.bodyLength) bytes — "
                    + (same ? "the upstream's answer unchanged" : "NOT the upstream's answer: figures invalid")
            )
        }
        return upstream
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

    /// The servers of the token path, in the order of the summary table.
    private static let tokenPathServers = ["nginx", "bare NIO", "vault"]
    /// The servers of the proxy case.
    private static let proxyServers = ["nginx proxy", NIOBenchProxy.name, NIOBenchProxy.rawName, "vault proxy"]

    /// The median of each figure over the rounds, per server and connection count, then the ratios against the
    /// targets: each ratio is taken within a round (the servers measured minutes apart at most) and the median of
    /// those is judged, with every round's ratio beside it.
    private func summarizeTokenPath() {
        self.summaryTable(
            of: Self.tokenPathServers,
            title: "token path",
            columns: [
                ("server CPU µs/req", \.serverCPUPerRequest),
                ("client CPU µs/req", \.clientCPUPerRequest),
            ]
        )
        guard let most = self.configuration.connectionCounts.max() else { return }
        let vaultRate = self.figures("vault", most, \.requestsPerSecond)
        guard !vaultRate.isEmpty else {
            self.report.say("ratios: no vault figures at \(most) connections, so no ratios against the targets")
            return
        }
        self.ratio(
            "vault / nginx throughput, \(most) connections",
            vaultRate,
            self.figures("nginx", most, \.requestsPerSecond),
            target: "≥ 0.50",
            met: { $0 >= 0.5 }
        )
        self.ratio(
            "vault / bare NIO throughput, \(most) connections",
            vaultRate,
            self.figures("bare NIO", most, \.requestsPerSecond),
            target: "≥ 0.80",
            met: { $0 >= 0.8 }
        )
        self.ratio(
            "vault / nginx server CPU per request, \(most) connections",
            self.figures("vault", most, \.serverCPUPerRequest),
            self.figures("nginx", most, \.serverCPUPerRequest),
            target: "≤ 3.00",
            met: { $0 <= 3 }
        )
    }

    /// The proxy case's table and its ratios against issue 11's targets: the vault's proxy route against nginx's
    /// `proxy_pass`, and the upstream's CPU time against each proxy's (it must be well below both, or the upstream
    /// and not the proxy would set the pace).
    private func summarizeProxy() {
        self.report.say()
        self.summaryTable(
            of: Self.proxyServers,
            title: "proxy case (GET \(NginxUpstream.personsPath) through each proxy to one upstream)",
            columns: [
                ("proxy CPU µs/req", \.serverCPUPerRequest),
                ("upstream CPU µs/req", \.upstreamCPUPerRequest),
                ("proxy+upstream CPU µs/req", \.serverAndUpstreamCPUPerRequest),
                ("client CPU µs/req", \.clientCPUPerRequest),
            ]
        )
        guard let most = self.configuration.connectionCounts.max(),
            let least = self.configuration.connectionCounts.min()
        else { return }
        let vault = "vault proxy"
        let nginx = "nginx proxy"
        if !self.figures(vault, most, \.requestsPerSecond).isEmpty {
            self.ratio(
                "vault proxy / nginx proxy throughput, \(most) connections",
                self.figures(vault, most, \.requestsPerSecond),
                self.figures(nginx, most, \.requestsPerSecond),
                target: "≥ 0.70",
                met: { $0 >= 0.7 }
            )
            self.ratio(
                "vault proxy / nginx proxy p50 latency, \(least) connection(s)",
                self.figures(vault, least, \.latency.p50Microseconds),
                self.figures(nginx, least, \.latency.p50Microseconds),
                target: "≤ 1.50",
                met: { $0 <= 1.5 }
            )
            for connections in Set([most, least]).sorted(by: >) {
                self.ratio(
                    "vault proxy / nginx proxy CPU per request, proxy alone, \(connections) connection(s)",
                    self.figures(vault, connections, \.serverCPUPerRequest),
                    self.figures(nginx, connections, \.serverCPUPerRequest),
                    target: "≤ 2.00",
                    met: { $0 <= 2 }
                )
                self.ratio(
                    "vault proxy / nginx proxy CPU per request, proxy + upstream, \(connections) connection(s)",
                    self.figures(vault, connections, \.serverAndUpstreamCPUPerRequest),
                    self.figures(nginx, connections, \.serverAndUpstreamCPUPerRequest),
                    target: "≤ 2.00",
                    met: { $0 <= 2 }
                )
            }
        } else {
            self.report.say("ratios: no vault proxy figures at \(most) connections, so no ratios against the targets")
        }
        self.proxyRatios(NIOBenchProxy.name, against: nginx, most: most, least: least, targets: true)
        self.proxyRatios(NIOBenchProxy.rawName, against: nginx, most: most, least: least, targets: true)
        self.proxyRatios(vault, against: NIOBenchProxy.name, most: most, least: least, targets: false)
        for proxy in [nginx, NIOBenchProxy.name, NIOBenchProxy.rawName, vault] {
            let upstream = self.figures(proxy, most, \.upstreamCPUPerRequest)
            guard !upstream.isEmpty else { continue }
            self.ratio(
                "upstream / \(proxy) CPU per request, \(most) connections",
                upstream,
                self.figures(proxy, most, \.serverCPUPerRequest),
                target: "≤ 0.50, the upstream well below the proxy",
                met: { $0 <= 0.5 }
            )
            let load = self.figures(proxy, most, \.upstreamCPULoad)
            let rounds = load.keys.sorted().compactMap { load[$0] }
            self.report.say(
                "upstream busy during \(proxy), \(most) connections: \(TextTable.fixed(Self.median(rounds) * 100, 0)) % "
                    + "of one CPU (rounds: \(rounds.map { TextTable.fixed($0 * 100, 0) }.joined(separator: ", ")) %; "
                    + "one nginx process saturates at 100 %)"
            )
        }
    }

    /// Throughput at `most` connections, p50 at `least`, CPU per request (proxy alone) at both, of `proxy` against
    /// `reference`; judged against issue 11's targets when `targets` (the bare and the raw NIO proxy against nginx:
    /// could a Swift+NIO proxy meet them at all, with NIO's HTTP layer and with a codec of its own), printed as plain
    /// ratios otherwise (the vault against the bare NIO proxy: what the vault and its HTTP client add to NIO's own
    /// cost).
    private func proxyRatios(_ proxy: String, against reference: String, most: Int, least: Int, targets: Bool) {
        guard !self.figures(proxy, most, \.requestsPerSecond).isEmpty,
            !self.figures(reference, most, \.requestsPerSecond).isEmpty
        else { return }
        self.ratio(
            "\(proxy) / \(reference) throughput, \(most) connections",
            self.figures(proxy, most, \.requestsPerSecond),
            self.figures(reference, most, \.requestsPerSecond),
            target: targets ? "≥ 0.70" : nil,
            met: { $0 >= 0.7 }
        )
        self.ratio(
            "\(proxy) / \(reference) p50 latency, \(least) connection(s)",
            self.figures(proxy, least, \.latency.p50Microseconds),
            self.figures(reference, least, \.latency.p50Microseconds),
            target: targets ? "≤ 1.50" : nil,
            met: { $0 <= 1.5 }
        )
        for connections in Set([most, least]).sorted(by: >) {
            self.ratio(
                "\(proxy) / \(reference) CPU per request, proxy alone, \(connections) connection(s)",
                self.figures(proxy, connections, \.serverCPUPerRequest),
                self.figures(reference, connections, \.serverCPUPerRequest),
                target: targets ? "≤ 2.00" : nil,
                met: { $0 <= 2 }
            )
        }
    }

    /// A table of the median of each figure over the rounds, per server and connection count.
    private func summaryTable(
        of servers: [String],
        title: String,
        columns: [(header: String, figure: (LoadResult) -> Double)]
    ) {
        var table = TextTable(
            headers: ["server", "conns", "pinned", "req/s", "p50 µs", "p99 µs"] + columns.map(\.header)
        )
        var rows = 0
        for server in servers {
            for connections in self.configuration.connectionCounts {
                let all = self.results.filter { $0.server == server && $0.connections == connections }
                guard let first = all.first else { continue }
                rows += 1
                table.append(
                    [
                        server,
                        String(connections),
                        first.pinnedTo.map { "CPU \($0)" } ?? "no",
                        TextTable.grouped(Self.median(all.map(\.requestsPerSecond))),
                        TextTable.fixed(Self.median(all.map(\.latency.p50Microseconds)), 1),
                        TextTable.fixed(Self.median(all.map(\.latency.p99Microseconds)), 1),
                    ] + columns.map { TextTable.fixed(Self.median(all.map($0.figure)), 2) }
                )
            }
        }
        guard rows > 0 else {
            self.report.say("\(title): no figures")
            return
        }
        let rounds = self.configuration.rounds
        self.report.say(rounds > 1 ? "\(title), medians over \(rounds) rounds (each column on its own):" : "\(title):")
        for line in table.lines {
            self.report.say(line)
        }
        self.report.say()
    }

    /// One figure of `server` at `connections`, by round.
    private func figures(_ server: String, _ connections: Int, _ figure: (LoadResult) -> Double) -> [Int: Double] {
        var byRound: [Int: Double] = [:]
        for result in self.results where result.server == server && result.connections == connections {
            byRound[result.round] = figure(result)
        }
        return byRound
    }

    /// Prints the median of the per-round ratios `value / reference`, their range, and whether the median meets the
    /// target.
    private func ratio(
        _ label: String,
        _ value: [Int: Double],
        _ reference: [Int: Double],
        target: String?,
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
        if let target {
            line += "  (target \(target): \(met(median) ? "met" : "NOT met"))"
        }
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
