import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Child processes hold standard input, output and error and what is passed to them, nothing else: not a pipe or a
/// socket the test process (or another test beside it) has open, even one opened without `O_CLOEXEC`. A daemon that
/// kept another test's output pipe open was why one `swift test` run used to hang.
@Suite("Descriptors of child processes", .offCooperativePool, .timeLimit(.minutes(2)))
struct DescriptorLeakEndToEndTests {
    /// A pipe and a socket pair opened the careless way (no close-on-exec), as another test or a library might.
    final class CarelessDescriptors {
        let pipe: [Int32]
        let sockets: [Int32]
        private var writeEndOpen = true

        init() throws {
            var pipe: [Int32] = [-1, -1]
            var sockets: [Int32] = [-1, -1]
            guard Glibc.pipe(&pipe) == 0 else { throw TestSupportError("pipe failed") }
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &sockets) == 0 else {
                close(pipe[0])
                close(pipe[1])
                throw TestSupportError("socketpair failed")
            }
            self.pipe = pipe
            self.sockets = sockets
            for fd in pipe + sockets {
                precondition(fcntl(fd, F_GETFD) & FD_CLOEXEC == 0, "the fixture must be inheritable")
            }
        }

        /// Closes the pipe's write end (once).
        func closeWriteEnd() {
            if self.writeEndOpen { close(self.pipe[1]) }
            self.writeEndOpen = false
        }

        deinit {
            self.closeWriteEnd()
            for fd in [self.pipe[0]] + self.sockets { close(fd) }
        }
    }

    /// `/proc/<pid>/fd`: descriptor number → what it refers to (`pipe:[…]`, `socket:[…]`, a path).
    static func descriptors(of pid: Int32) throws -> [Int32: String] {
        let directory = "/proc/\(pid)/fd"
        var table: [Int32: String] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
            guard let fd = Int32(name),
                let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(directory)/\(name)")
            else { continue }
            table[fd] = target
        }
        return table
    }

    /// Pipes and sockets of this test process: any of them in a child is a leak.
    static func ownPipesAndSockets() throws -> Set<String> {
        Set(try Self.descriptors(of: getpid()).values.filter { $0.hasPrefix("pipe:") || $0.hasPrefix("socket:") })
    }

    @Test("a child holds standard input, output, error and the descriptor passed to it, nothing else")
    func passedOnly() throws {
        let careless = try CarelessDescriptors()
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(listener >= 0)
        defer { close(listener) }
        // 3 is passed from a descriptor numbered differently, and a careless one is asked for under its own number.
        let child = try ChildProcess(
            "/bin/sleep",
            ["30"],
            passing: [3: listener, 4: careless.pipe[1]]
        )
        defer { child.killGroup() }
        let table = try Self.descriptors(of: child.pid)
        let own = try Self.descriptors(of: getpid())
        #expect(Set(table.keys) == [0, 1, 2, 3, 4], "\(table)")
        #expect(table[0] == "/dev/null" && table[1] == "/dev/null" && table[2] == "/dev/null", "\(table)")
        #expect(table[3] == own[listener])
        #expect(table[4] == own[careless.pipe[1]])
        #expect(!table.values.contains(try #require(own[careless.sockets[0]])))
        child.signal(SIGTERM)
        #expect(child.waitForExit(timeout: .seconds(10)) == .init(status: SIGTERM, signaled: true, timedOut: false))
    }

    @Test(
        "connvaultd --dev started while this process holds careless descriptors shares no pipe or socket with it",
        .enabled(if: Binaries.areBuilt)
    )
    func daemonInheritsNothing() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let careless = try CarelessDescriptors()
        let daemon = DaemonProcess(directory: directory)
        try await Blocking.run { try daemon.start() }
        defer { daemon.stop() }
        let pid = try #require(daemon.pid)
        let table = try Self.descriptors(of: pid)
        #expect(table[0] == "/dev/null", "\(table)")
        #expect(table[1] == daemon.logPath && table[2] == daemon.logPath, "\(table)")
        let shared = Set(table.values).intersection(try Self.ownPipesAndSockets())
        #expect(shared.isEmpty, "the daemon holds descriptors of the test process: \(shared.sorted())")
        // No pipe at all (the daemon opens none), and no socket whose other end is in the test process: Foundation's
        // Process handed each child one end of a socket pair and kept the other.
        let own = Set(try Self.descriptors(of: getpid()).values)
        let peers = try #require(ProcFiles.unixSocketPeers(), "ss is needed to find sockets' peers")
        let foreign = table.filter { _, target in
            target.hasPrefix("pipe:") || peers[target].map(own.contains) == true
        }
        #expect(foreign.isEmpty, "descriptors the daemon did not open: \(foreign.sorted { $0.key < $1.key })")
        for fd in careless.pipe + careless.sockets {
            let target = try #require(try Self.descriptors(of: getpid())[fd])
            #expect(!table.values.contains(target), "fd \(fd) (\(target)) leaked into the daemon")
        }
        // The write end is in no child, so closing it here ends the pipe: what a test reading a child's output
        // waits for.
        careless.closeWriteEnd()
        var byte: UInt8 = 0
        var poller = pollfd(fd: careless.pipe[0], events: Int16(POLLIN), revents: 0)
        #expect(poll(&poller, 1, 5_000) == 1)
        #expect(read(careless.pipe[0], &byte, 1) == 0, "end-of-file once the only write end is closed")
    }
}
