#if canImport(Glibc)
import Glibc
#endif

/// Sockets passed by systemd socket activation (`sd_listen_fds(3)`): `LISTEN_PID`, `LISTEN_FDS` and
/// `LISTEN_FDNAMES`, descriptors from 3 on. The unit names them with `FileDescriptorName=app` / `admin`.
public enum SocketActivation {
    /// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
    public static let firstDescriptor: Int32 = 3

    /// The names the daemon understands.
    public static let names: Set<String> = ["app", "admin"]

    /// The passed descriptors by name, from `environment`; empty when the variables are absent or meant for another
    /// process (`LISTEN_PID` is not `pid`).
    ///
    /// - Throws: `StartupError` for malformed variables, an unnamed or unknown name, or a name given twice: a unit
    ///   that passes sockets the daemon would ignore is misconfigured, and serving only half of them would hide it.
    public static func parse(
        environment: [String: String],
        pid: Int32,
        firstDescriptor: Int32 = Self.firstDescriptor
    ) throws(StartupError) -> [String: Int32] {
        guard let listenPID = environment["LISTEN_PID"], let countText = environment["LISTEN_FDS"] else { return [:] }
        guard let target = Int32(listenPID), target == pid else { return [:] }
        guard let count = Int32(countText), count >= 0, count <= 64 else {
            throw StartupError("LISTEN_FDS='\(countText)' is not a descriptor count")
        }
        guard count > 0 else { return [:] }
        let names =
            environment["LISTEN_FDNAMES"].map {
                $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            } ?? []
        guard names.count == Int(count) else {
            throw StartupError(
                "systemd passed \(count) socket(s) but LISTEN_FDNAMES names \(names.count); give each ListenStream= a FileDescriptorName= of app or admin"
            )
        }
        var sockets: [String: Int32] = [:]
        for (offset, name) in names.enumerated() {
            guard Self.names.contains(name) else {
                throw StartupError("systemd passed a socket named '\(name)'; expected FileDescriptorName=app or admin")
            }
            guard sockets[name] == nil else { throw StartupError("systemd passed two sockets named '\(name)'") }
            sockets[name] = firstDescriptor + Int32(offset)
        }
        return sockets
    }

    /// The sockets systemd passed to this process. Unsets the three variables, as `sd_listen_fds(1)` does, so that
    /// nothing started later mistakes them for its own, and marks the descriptors close-on-exec.
    /// - Throws: `StartupError` as ``parse(environment:pid:firstDescriptor:)`` does, or when a descriptor is not a
    ///   listening Unix stream socket.
    public static func take() throws(StartupError) -> [String: Int32] {
        let environment = ProcessEnvironment.current()
        let sockets = try Self.parse(environment: environment, pid: getpid())
        if environment["LISTEN_PID"] != nil {
            unsetenv("LISTEN_PID")
            unsetenv("LISTEN_FDS")
            unsetenv("LISTEN_FDNAMES")
        }
        for (name, descriptor) in sockets {
            try Self.check(descriptor, name: name)
            _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        }
        return sockets
    }

    /// Refuses a passed descriptor that is not a listening Unix stream socket (`ListenStream=` of a path).
    static func check(_ descriptor: Int32, name: String) throws(StartupError) {
        func option(_ name: Int32) -> Int32? {
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            return getsockopt(descriptor, SOL_SOCKET, name, &value, &length) == 0 ? value : nil
        }
        guard option(SO_DOMAIN) == AF_UNIX, option(SO_TYPE) == Int32(SOCK_STREAM.rawValue), option(SO_ACCEPTCONN) == 1
        else {
            throw StartupError(
                "systemd passed '\(name)' as descriptor \(descriptor), which is not a listening Unix stream socket; use ListenStream=/path"
            )
        }
    }
}

/// The process environment as a dictionary, read from `environ` without Foundation.
public enum ProcessEnvironment {
    /// Every variable of this process's environment.
    public static func current() -> [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            pointer += 1
        }
        return result
    }
}
