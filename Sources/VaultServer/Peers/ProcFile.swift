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
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < limit {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
