#if canImport(Glibc)
import Glibc
#endif

/// Reads small files under `/proc` with plain system calls: no Foundation, no buffering layer, at most 64 KiB.
enum ProcFile {
    /// The file's contents as UTF-8 (invalid bytes replaced), or nil when it cannot be opened, for instance because
    /// the process has already exited.
    static func read(_ path: String, limit: Int = 64 * 1024) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return Self.readAll(fd, limit: limit)
    }

    /// File `name` in the directory open as `directory` (links not followed), as ``read(_:limit:)`` reads it.
    static func read(_ name: String, in directory: Int32, limit: Int = 64 * 1024) -> String? {
        guard let fd = Kernel.openFile(name, in: directory) else { return nil }
        defer { close(fd) }
        return Self.readAll(fd, limit: limit)
    }

    private static func readAll(_ fd: Int32, limit: Int) -> String? {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < limit {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            // A /proc file of a process that has been reaped meanwhile fails with ESRCH: nothing was read of it.
            if count < 0 { return nil }
            guard count > 0 else { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
