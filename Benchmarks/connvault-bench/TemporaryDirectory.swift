import Glibc

/// A private directory under `/tmp` for one run: configuration files, logs, sockets, the daemon's state.
///
/// Its path is short on purpose: Unix socket paths are limited to 107 bytes.
final class TemporaryDirectory {
    let path: String
    private var removed = false

    init(prefix: String = "cv-bench-") throws {
        var template = Array("/tmp/\(prefix)XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard let created else { throw BenchError.posix("mkdtemp") }
        self.path = String(cString: created)
    }

    func file(_ name: String) -> String {
        "\(self.path)/\(name)"
    }

    func remove() {
        guard !self.removed else { return }
        FileSystem.removeTree(self.path)
        self.removed = true
    }

    deinit {
        self.remove()
    }
}
