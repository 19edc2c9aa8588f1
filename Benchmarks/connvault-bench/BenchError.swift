import Glibc

/// Why the benchmark could not go on: a system call that failed, a server that did not start, an unexpected answer.
struct BenchError: Error, CustomStringConvertible {
    var message: String

    init(_ message: String) {
        self.message = message
    }

    /// A failed system call, with `strerror` of the current `errno`.
    static func posix(_ call: String, _ detail: String = "") -> BenchError {
        let reason = String(cString: strerror(errno))
        return BenchError(detail.isEmpty ? "\(call): \(reason)" : "\(call) \(detail): \(reason)")
    }

    var description: String { self.message }
}
