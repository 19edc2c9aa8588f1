import CVaultShims

#if canImport(Glibc)
import Glibc
#endif

/// Unix socket addresses for tests, filled by `cv_sockaddr_un_set` (the daemon's own helper): a path gets its
/// terminating NUL, `@name` is an abstract name, and a path that does not fit `sun_path` is refused, never cut.
public enum UnixAddress {
    /// Calls `body` with `path` as a `sockaddr_un` and the length to pass with it.
    /// - Throws: `TestSupportError` when `path` is empty, holds a NUL or is longer than 107 bytes.
    public static func with<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) throws -> T) throws -> T {
        var address = sockaddr_un()
        var length: socklen_t = 0
        guard !path.utf8.contains(0), cv_sockaddr_un_set(&address, path, &length) == 0 else {
            throw TestSupportError("socket path \(path) does not fit a sockaddr_un")
        }
        return try withUnsafePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, length) }
        }
    }

    /// `connect(2)` of `descriptor` to `path`: 0, or -1 with `errno` set.
    public static func connect(_ descriptor: Int32, to path: String) throws -> Int32 {
        try Self.with(path) { Glibc.connect(descriptor, $0, $1) }
    }

    /// `bind(2)` of `descriptor` to `path`: 0, or -1 with `errno` set.
    public static func bind(_ descriptor: Int32, to path: String) throws -> Int32 {
        try Self.with(path) { Glibc.bind(descriptor, $0, $1) }
    }
}
