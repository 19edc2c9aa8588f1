import CVaultShims
import VaultAPI

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Who serves a connected admin socket, and whether `connvaultctl` may send it requests (secrets among them): the
/// rule of ``ServerTrust``, applied to the kernel's `SO_PEERCRED` of the connected socket.
struct ServerIdentity: Equatable {
    var pid: Int32
    var uid: uid_t
    var gid: gid_t

    /// The peer credentials of the connected socket `descriptor`, or nil when the kernel does not give them.
    static func of(_ descriptor: Int32) -> ServerIdentity? {
        var credentials = cv_ucred()
        guard cv_get_peer_credentials(descriptor, &credentials) == 0 else { return nil }
        return ServerIdentity(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid)
    }

    /// Refuses the server of `descriptor`, connected to `path`, unless ``ServerTrust`` trusts it.
    ///
    /// - Parameters:
    ///   - clientUID: The client's effective uid.
    /// - Throws: `DaemonError` `.untrustedServer` naming the socket, the server's uid and what would have been
    ///   trusted.
    static func check(_ descriptor: Int32, path: String, kind: SocketKind?, clientUID: uid_t = geteuid()) throws {
        guard let server = Self.of(descriptor) else {
            throw DaemonError(.untrustedServer, ServerTrust.unknownServer(path: path, errno: errno), socketPath: path)
        }
        if let refusal = ServerTrust.refusal(
            serverUID: server.uid,
            serverPID: server.pid,
            path: path,
            kind: kind,
            clientUID: clientUID
        ) {
            throw DaemonError(.untrustedServer, refusal, socketPath: path)
        }
    }
}
