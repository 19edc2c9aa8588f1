import Glibc
import Synchronization
import TestSupport

/// A closed-loop HTTP/1.1 load generator over a Unix socket.
///
/// Each connection is a thread that sends a pre-built `GET`, reads the response, and sends the next one as soon as
/// the previous answer is in (keep-alive, no pipelining). After a warm-up it records each request's latency for a
/// fixed window, and reads the CPU time of the server process and of its own process at both ends of that window.
struct LoadGenerator {
    var warmUpSeconds: Double
    var durationSeconds: Double

    /// Measures one server with `connections` concurrent connections.
    /// - Parameters:
    ///   - server: the server to load; its process's CPU time is read from `/proc`.
    ///   - connections: concurrent keep-alive connections, one thread each.
    ///   - pinnedTo: pins the connection threads and every server thread to these CPUs for the run; afterwards the
    ///     server is given back `unpinned`.
    ///   - unpinned: the CPUs the server may use outside pinned runs.
    /// - Throws: `BenchError` when a connection fails or the server cannot be pinned.
    func run(
        against server: any ServerUnderTest,
        connections: Int,
        pinnedTo: CPUSet?,
        unpinned: CPUSet
    ) throws -> LoadResult {
        // A proxy's upstream is pinned with it: the whole chain then runs on one CPU, as client and server do.
        let pids = [server.pid] + (server.upstreamPID.map { [$0] } ?? [])
        if let pinnedTo {
            for pid in pids {
                try pinnedTo.applyToProcess(pid)
            }
        }
        defer {
            if pinnedTo != nil {
                for pid in pids {
                    try? unpinned.applyToProcess(pid)
                }
            }
        }

        let phase = Phase()
        let request = BlockingHTTPConnection.request(path: server.requestPath)
        let workers = try (0..<connections).map { _ in
            Worker(
                connection: try BlockingHTTPConnection(socketPath: server.socketPath),
                request: request,
                phase: phase,
                pinnedTo: pinnedTo,
                // Room for 200k requests per second in total, so the arrays do not grow inside the window.
                expectedRequests: Int(self.durationSeconds * 200_000) / connections
            )
        }
        var threads: [PosixThread] = []
        defer {
            phase.state.store(Phase.stop, ordering: .relaxed)
            for thread in threads {
                thread.join()
            }
            for worker in workers {
                worker.connection.close()
            }
        }
        for worker in workers {
            threads.append(try PosixThread { worker.run() })
        }

        MonotonicClock.sleep(seconds: self.warmUpSeconds)
        let serverCPUBefore = try ProcessCPU.microseconds(ofProcess: server.pid)
        let upstreamCPUBefore = try server.upstreamPID.map { try ProcessCPU.microseconds(ofProcess: $0) }
        let clientCPUBefore = ProcessCPU.microsecondsOfSelf()
        let startedAt = MonotonicClock.now()
        phase.state.store(Phase.measure, ordering: .relaxed)

        MonotonicClock.sleep(seconds: self.durationSeconds)

        phase.state.store(Phase.stop, ordering: .relaxed)
        let endedAt = MonotonicClock.now()
        let clientCPUAfter = ProcessCPU.microsecondsOfSelf()
        let serverCPUAfter = try ProcessCPU.microseconds(ofProcess: server.pid)
        let upstreamCPUAfter = try server.upstreamPID.map { try ProcessCPU.microseconds(ofProcess: $0) }
        for thread in threads {
            thread.join()
        }
        threads.removeAll()

        if let failure = workers.lazy.compactMap(\.failure).first {
            throw BenchError("\(server.name), \(connections) connection(s): \(failure)")
        }
        let latencies = workers.flatMap(\.latencies)
        return LoadResult(
            server: server.name,
            connections: connections,
            pinnedTo: pinnedTo,
            requests: latencies.count,
            seconds: Double(endedAt - startedAt) / 1e9,
            latency: LatencySummary(nanoseconds: latencies),
            serverCPUMicroseconds: serverCPUAfter - serverCPUBefore,
            clientCPUMicroseconds: clientCPUAfter - clientCPUBefore,
            upstreamCPUMicroseconds: upstreamCPUAfter.flatMap { after in upstreamCPUBefore.map { after - $0 } },
            unexpectedStatuses: workers.reduce(0) { $0 + $1.unexpectedStatuses }
        )
    }

    // MARK: - Connection threads

    /// Where a run is; written by the coordinating thread, polled by the connection threads after each request.
    private final class Phase: Sendable {
        static let warmUp = 0
        static let measure = 1
        static let stop = 2
        let state = Atomic<Int>(Phase.warmUp)
    }

    /// One connection thread's state.
    ///
    /// `@unchecked Sendable`: the coordinating thread creates it, its one connection thread alone mutates it while
    /// running, and the coordinating thread reads the results only after `pthread_join`, which orders the accesses.
    private final class Worker: @unchecked Sendable {
        let connection: BlockingHTTPConnection
        let request: [UInt8]
        let phase: Phase
        let pinnedTo: CPUSet?
        let expectedRequests: Int
        private(set) var latencies: [UInt64] = []
        private(set) var unexpectedStatuses = 0
        private(set) var failure: String?

        init(
            connection: BlockingHTTPConnection,
            request: [UInt8],
            phase: Phase,
            pinnedTo: CPUSet?,
            expectedRequests: Int
        ) {
            self.expectedRequests = expectedRequests
            self.connection = connection
            self.request = request
            self.phase = phase
            self.pinnedTo = pinnedTo
        }

        func run() {
            do {
                try self.pinnedTo?.applyToCurrentThread()
                self.latencies.reserveCapacity(self.expectedRequests)
                while true {
                    let begin = MonotonicClock.now()
                    try self.connection.send(self.request)
                    let status = try self.connection.receive().status
                    let end = MonotonicClock.now()
                    switch self.phase.state.load(ordering: .relaxed) {
                    case Phase.measure:
                        self.latencies.append(end &- begin)
                        if status != 200 { self.unexpectedStatuses += 1 }
                    case Phase.stop:
                        return
                    default:
                        continue
                    }
                }
            } catch {
                self.failure = "\(error)"
            }
        }
    }
}
