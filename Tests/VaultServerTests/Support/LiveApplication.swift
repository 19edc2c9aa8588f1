import Dispatch
import Logging
import TestSupport
import VaultClient
import VaultCore
import VaultServer

#if canImport(Glibc)
import Glibc
#endif

/// An application started in this process on real Unix sockets in a short temporary directory.
struct LiveApplication: Sendable {
    let application: Application
    let directory: TemporaryDirectory
    let logs: LogCapture

    var adminSocket: String { self.directory.file("admin.sock") }
    var appSocket: String { self.directory.file("app.sock") }
    var admin: AdminClient { AdminClient(socketPath: self.adminSocket, timeout: .seconds(20)) }

    static func configuration(
        in directory: TemporaryDirectory,
        adminGroup: String? = nil,
        notify: SystemdNotifier.Configuration? = nil
    ) -> ServerConfiguration {
        ServerConfiguration(
            vault: VaultConfiguration(
                databasePath: directory.file("vault.sqlite3"),
                keyFilePath: directory.file("master.key"),
                createKeyIfMissing: true
            ),
            appSocketPath: directory.file("app.sock"),
            adminSocketPath: directory.file("admin.sock"),
            adminGroup: adminGroup,
            notify: notify,
            handlesSignals: false,
            drainTimeout: .seconds(5)
        )
    }

    /// Builds and runs an application for `body`, then shuts it down gracefully and waits until it has stopped.
    static func with(
        adminGroup: String? = nil,
        notify: SystemdNotifier.Configuration? = nil,
        _ body: @Sendable (LiveApplication) async throws -> Void
    ) async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let logs = LogCapture()
        let application = try await buildApplication(
            configuration: Self.configuration(in: directory, adminGroup: adminGroup, notify: notify),
            logger: logs.logger()
        )
        let live = LiveApplication(application: application, directory: directory, logs: logs)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await application.run() }
            do {
                try await body(live)
            } catch {
                await application.shutdown()
                try? await group.waitForAll()
                throw error
            }
            await application.shutdown()
            try await group.waitForAll()
        }
    }
}

/// A raw request over a Unix socket, read until the server closes or `timeout` passes.
enum RawSocket {
    static func exchange(_ path: String, _ request: String, timeout: Duration = .seconds(10)) throws -> String {
        try self.exchange(path, Array(request.utf8), timeout: timeout)
    }

    static func exchange(_ path: String, _ bytes: [UInt8], timeout: Duration = .seconds(10)) throws -> String {
        let fd = try Self.connect(path)
        defer { close(fd) }
        // Some requests are meant to be refused part way: a send the server cut short is not an error here.
        try? SocketWrites.sendAll(fd, bytes)
        return String(decoding: Self.read(fd, timeout: timeout, until: { _ in false }), as: UTF8.self)
    }

    /// Sends `request` on the connected `fd` and reads one whole answer (its head, then `Content-Length` bytes),
    /// leaving the connection open.
    static func answer(_ fd: Int32, _ request: String, timeout: Duration = .seconds(10)) throws -> String {
        try SocketWrites.sendAll(fd, Array(request.utf8))
        var complete = false
        let received = Self.read(fd, timeout: timeout) { received in
            guard let headEnd = Self.headEnd(received) else { return false }
            let head = String(decoding: received[..<headEnd], as: UTF8.self).lowercased()
            let length =
                head.split(separator: "\r\n")
                .first { $0.hasPrefix("content-length:") }
                .flatMap { Int($0.dropFirst("content-length:".count).filter { $0 != " " }) } ?? 0
            complete = received.count - headEnd >= length
            return complete
        }
        guard complete else { throw TestSupportError("no whole answer: \(String(decoding: received, as: UTF8.self))") }
        return String(decoding: received, as: UTF8.self)
    }

    /// What `fd` gives until `done` says the bytes so far are enough, the peer closes, or `timeout` passes.
    private static func read(_ fd: Int32, timeout: Duration, until done: ([UInt8]) -> Bool) -> [UInt8] {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, !done(received) {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) >= 0 else { break }
            guard poller.revents != 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { break }
            received.append(contentsOf: buffer[0..<count])
        }
        return received
    }

    /// The index just past the first CRLF CRLF of `bytes`.
    private static func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for index in 0...(bytes.count - 4)
        where bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 {
            return index + 4
        }
        return nil
    }

    static func connect(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket failed") }
        let result = (try? UnixAddress.connect(fd, to: path)) ?? -1
        guard result == 0 else {
            close(fd)
            throw TestSupportError("connect \(path): \(String(cString: strerror(errno)))")
        }
        return fd
    }
}

/// A file's permission bits and group.
func fileMode(_ path: String) -> (mode: UInt32, gid: UInt32)? {
    var info = stat()
    guard lstat(path, &info) == 0 else { return nil }
    return (UInt32(info.st_mode & 0o7777), info.st_gid)
}
