import Foundation
import VaultAPI

#if canImport(Glibc)
import Glibc
#endif

/// One parser of untrusted bytes, fed one input at a time. `run` must return for every input; a broken invariant
/// ends the process (``FuzzTargets/fail(_:)``), which libFuzzer reports as a crash with the input that caused it.
protocol FuzzTarget: AnyObject {
    func run(_ input: [UInt8])
}

/// Every target by name (the names of `make fuzz`, of Fuzz/Corpus/NAME and of docs/SECURITY.md's table).
enum FuzzTargets {
    static let all: [(name: String, make: @Sendable () -> any FuzzTarget)] = [
        ("http-admin", { HTTPSocketTarget(socket: .admin) }),
        ("http-app", { HTTPSocketTarget(socket: .app) }),
        ("json-requests", { JSONRequestsTarget() }),
        ("store-records", { StoreRecordsTarget() }),
        ("proc-parsers", { ProcParsersTarget() }),
        ("proxy-path", { ProxyPathTarget() }),
        ("upstream-answer", { UpstreamAnswerTarget() }),
        ("cli-args", { CLIArgsTarget() }),
    ]

    static var names: String { Self.all.map(\.name).joined(separator: ", ") }

    static func make(_ name: String) -> (any FuzzTarget)? {
        Self.all.first { $0.name == name }?.make()
    }

    /// Writes `message` to standard error and aborts (a crash to libFuzzer, a failure to the replaying test).
    static func fail(_ message: String) -> Never {
        let line = "connvault-fuzz: " + message + "\n"
        _ = line.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
        abort()
    }

    /// Fails unless `condition` holds; `message` must never quote a secret.
    static func check(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { Self.fail("invariant broken: " + message()) }
    }
}

/// Temporary state directories of the targets, removed when the process exits normally (libFuzzer exits through
/// `exit`; after a crash they are left for inspection).
enum ScratchDirectories {
    nonisolated(unsafe) private static var made: [String] = []

    /// A new directory `/tmp/connvault-fuzz-PURPOSE-XXXXXX`, mode 0700.
    static func make(_ purpose: String) -> String {
        var template = Array("/tmp/connvault-fuzz-\(purpose)-XXXXXX".utf8CString)
        guard let directory = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            FuzzTargets.fail("cannot make a temporary directory")
        }
        let path = String(cString: directory)
        if Self.made.isEmpty { atexit { ScratchDirectories.removeAll() } }
        Self.made.append(path)
        return path
    }

    private static func removeAll() {
        for path in Self.made { try? FileManager.default.removeItem(atPath: path) }
    }
}

/// Reads an input as several values: a cursor over its bytes.
struct InputReader {
    private let bytes: [UInt8]
    private var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { self.position >= self.bytes.count }

    var rest: [UInt8] { Array(self.bytes[min(self.position, self.bytes.count)...]) }

    mutating func byte() -> UInt8 {
        guard self.position < self.bytes.count else { return 0 }
        defer { self.position += 1 }
        return self.bytes[self.position]
    }

    mutating func int64() -> Int64 {
        var value: UInt64 = 0
        for _ in 0..<8 { value = value << 8 | UInt64(self.byte()) }
        return Int64(bitPattern: value)
    }

    /// The bytes up to the next `separator` (which is consumed), or to the end.
    mutating func field(separator: UInt8 = 0) -> [UInt8] {
        let start = min(self.position, self.bytes.count)
        var end = start
        while end < self.bytes.count && self.bytes[end] != separator { end += 1 }
        self.position = end + 1
        return Array(self.bytes[start..<end])
    }

    mutating func string(separator: UInt8 = 0) -> String {
        String(decoding: self.field(separator: separator), as: UTF8.self)
    }
}
