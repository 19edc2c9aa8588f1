import Glibc

/// The few file operations the harness needs, on plain POSIX calls.
enum FileSystem {
    /// Reads a whole file (also `/proc` files, whose size `stat` does not know).
    static func readBytes(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw BenchError.posix("open", path) }
        defer { close(fd) }
        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw BenchError.posix("read", path) }
            if count == 0 { return contents }
            contents.append(contentsOf: chunk[0..<count])
        }
    }

    static func readText(_ path: String) throws -> String {
        String(decoding: try self.readBytes(path), as: UTF8.self)
    }

    /// Creates or truncates `path` with `mode` and writes `text` to it.
    static func write(_ text: String, to path: String, mode: mode_t = 0o644) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw BenchError.posix("open", path) }
        defer { close(fd) }
        var bytes = Array(text.utf8)
        try bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { throw BenchError.posix("write", path) }
                offset += written
            }
        }
    }

    static func isExecutable(_ path: String) -> Bool {
        access(path, X_OK) == 0
    }

    /// Creates `path` and its missing parents.
    static func makeDirectories(_ path: String) throws {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/\(component)"
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw BenchError.posix("mkdir", prefix)
            }
        }
    }

    /// Names in a directory, without `.` and `..`.
    static func listDirectory(_ path: String) throws -> [String] {
        guard let directory = opendir(path) else { throw BenchError.posix("opendir", path) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: &entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
