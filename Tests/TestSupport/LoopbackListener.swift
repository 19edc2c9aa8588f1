import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A listening TCP socket on an ephemeral port of loopback (127.0.0.1, or ::1), close-on-exec: what the tests'
/// upstreams on loopback start with.
public enum LoopbackListener {
    /// Which loopback address to listen on.
    public enum Family: Sendable {
        /// 127.0.0.1.
        case ipv4
        /// ::1.
        case ipv6
    }

    /// Opens, binds and listens.
    ///
    /// - Parameters:
    ///   - family: The loopback address's family.
    ///   - backlog: `listen`'s backlog.
    /// - Returns: The descriptor (the caller closes it) and the port the kernel picked.
    /// - Throws: ``TestSupportError`` when a call fails (on a host without ::1, for `.ipv6`).
    public static func open(_ family: Family = .ipv4, backlog: Int32) throws -> (descriptor: Int32, port: Int) {
        let fd = socket(family.domain, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = family.loopback(port: 0)
        let bound = address.withSocketAddress { bind(fd, $0, $1) }
        guard bound == 0, listen(fd, backlog) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw TestSupportError("bind/listen: \(reason)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &address.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (fd, address.port)
    }

    /// Connects a blocking TCP socket, close-on-exec, to `port` on the loopback address of `family`.
    ///
    /// - Returns: The descriptor; the caller closes it.
    /// - Throws: ``TestSupportError`` when a call fails.
    public static func connect(_ family: Family = .ipv4, port: Int) throws -> Int32 {
        let fd = socket(family.domain, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket: \(String(cString: strerror(errno)))") }
        let address = family.loopback(port: port)
        guard address.withSocketAddress({ Glibc.connect(fd, $0, $1) }) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw TestSupportError("connect: \(reason)")
        }
        return fd
    }
}

extension LoopbackListener.Family {
    fileprivate var domain: Int32 {
        switch self {
        case .ipv4: AF_INET
        case .ipv6: AF_INET6
        }
    }

    fileprivate func loopback(port: Int) -> LoopbackAddress {
        var address = LoopbackAddress(family: self)
        switch self {
        case .ipv4:
            withUnsafeMutablePointer(to: &address.storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                    $0.pointee.sin_family = sa_family_t(AF_INET)
                    $0.pointee.sin_addr.s_addr = inet_addr("127.0.0.1")
                    $0.pointee.sin_port = UInt16(port).bigEndian
                }
            }
        case .ipv6:
            withUnsafeMutablePointer(to: &address.storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    $0.pointee.sin6_family = sa_family_t(AF_INET6)
                    $0.pointee.sin6_addr = in6addr_loopback
                    $0.pointee.sin6_port = UInt16(port).bigEndian
                }
            }
        }
        return address
    }
}

/// A socket address of either family, with the length its family has.
private struct LoopbackAddress {
    let family: LoopbackListener.Family
    var storage = sockaddr_storage()

    init(family: LoopbackListener.Family) {
        self.family = family
    }

    var length: socklen_t {
        switch self.family {
        case .ipv4: socklen_t(MemoryLayout<sockaddr_in>.size)
        case .ipv6: socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
    }

    /// The port, in host order (both families keep it at the same offset, after the family).
    var port: Int {
        var storage = self.storage
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }

    func withSocketAddress<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        var storage = self.storage
        let length = self.length
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }
}
