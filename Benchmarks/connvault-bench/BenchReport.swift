import Glibc

/// Everything the run prints, kept so it can also be written to the results file.
final class BenchReport {
    private(set) var lines: [String] = []

    /// Prints a line at once (runs take a while; progress shows) and keeps it.
    func say(_ line: String = "") {
        print(line)
        fflush(nil)
        self.lines.append(line)
    }

    /// Writes every line so far to `path`, creating its directory.
    func write(to path: String) throws {
        if let slash = path.lastIndex(of: "/") {
            let directory = String(path[..<slash])
            if !directory.isEmpty { try FileSystem.makeDirectories(directory) }
        }
        try FileSystem.write(self.lines.joined(separator: "\n") + "\n", to: path)
    }

    /// The UTC time now, ISO 8601.
    static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
