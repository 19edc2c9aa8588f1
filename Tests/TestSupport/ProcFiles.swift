import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Reading the kernel's view of a process from `/proc`.
public enum ProcFiles {
    /// A Unix socket as `/proc/net/unix` lists it.
    public struct UnixSocket: Sendable {
        /// The path it is bound to; empty when it has none (a socket pair end, an unbound client).
        public var path: String
        /// Whether it is listening (`__SO_ACCEPTCON`).
        public var isListening: Bool
    }

    /// The whole of `path`, read until end-of-file.
    ///
    /// `/proc` files are generated a page at a time and report a size of 0, so a reader that trusts the size or
    /// stops at the first short read sees only the start of a long one (`/proc/net/unix` in a busy test run).
    ///
    /// - Throws: `TestSupportError` when the file cannot be opened.
    public static func text(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TestSupportError("open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes.append(contentsOf: buffer[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Every Unix socket of this network namespace, keyed the way `/proc/<pid>/fd` names them (`socket:[inode]`).
    ///
    /// - Throws: `TestSupportError` when `/proc/net/unix` cannot be read.
    public static func unixSockets() throws -> [String: UnixSocket] {
        var sockets: [String: UnixSocket] = [:]
        for line in try Self.text("/proc/net/unix").split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 7, let flags = Int(fields[3], radix: 16) else { continue }
            sockets["socket:[\(fields[6])]"] = UnixSocket(
                path: fields.count > 7 ? String(fields[7]) : "",
                isListening: flags & 0x10000 != 0
            )
        }
        return sockets
    }

    /// Connected Unix sockets (`socket:[inode]`) → their peers, as `ss -xa` reports them (nil without ss).
    public static func unixSocketPeers() -> [String: String]? {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/ss"),
            let result = try? Command.run("/usr/bin/ss", ["-xaH"], timeout: .seconds(20)), result.status == 0
        else { return nil }
        var peers: [String: String] = [:]
        for line in result.stdout.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 8, let local = Int(fields[5]), let peer = Int(fields[7]), peer != 0 else { continue }
            peers["socket:[\(local)]"] = "socket:[\(peer)]"
        }
        return peers
    }
}
