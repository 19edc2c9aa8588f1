import Foundation
import Testing
import VaultAPI

@testable import connvaultctl

#if canImport(Glibc)
import Glibc
#endif

/// Whom the client trusts to serve the admin socket (issue 8, item 5). The refusal of a server run by another uid is
/// tested end to end (FileSystemSafetyEndToEndTests); here the directory rule and the own-uid case.
@Suite struct ServerIdentityTests {
    /// A fresh directory under /tmp (root's, 0700), removed after `body`.
    func withDirectory(_ body: (String) throws -> Void) throws {
        var template = Array("/tmp/cvi-XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        let path = try #require(created.map { String(cString: $0) })
        defer { try? FileManager.default.removeItem(atPath: path) }
        try body(path)
    }

    @Test(
        "a directory vouches for its owner only when it is protected and sits where only root can write",
        .enabled(if: getuid() == 0, "needs root for chown")
    )
    func vouchingOwner() throws {
        try self.withDirectory { root in
            #expect(chmod(root, 0o755) == 0)
            let run = "\(root)/run"
            #expect(mkdir(run, 0o700) == 0)
            // /run/connvault made for the daemon's user (a system account): trusted as that user.
            #expect(chown(run, 2, 2) == 0)
            #expect(ServerTrust.vouchingOwner(of: run) == 2)
            // Given to nobody, or to a login user: vouches for no one.
            #expect(chown(run, 65534, 65534) == 0)
            #expect(ServerTrust.vouchingOwner(of: run) == nil)
            #expect(chown(run, 1000, 1000) == 0)
            #expect(ServerTrust.vouchingOwner(of: run) == nil)
            #expect(chown(run, 2, 2) == 0)
            // Shared with others itself: vouches for nobody.
            #expect(chmod(run, 0o770) == 0)
            #expect(ServerTrust.vouchingOwner(of: run) == nil)
            #expect(chmod(run, 0o700) == 0)
            // In a directory others can write (as /tmp): anyone could have made it.
            #expect(chmod(root, 0o1777) == 0)
            #expect(ServerTrust.vouchingOwner(of: run) == nil)
            #expect(chmod(root, 0o755) == 0)
            #expect(chown(root, 65534, 65534) == 0)
            #expect(ServerTrust.vouchingOwner(of: run) == nil)
            // Directly in /tmp: never.
            #expect(ServerTrust.vouchingOwner(of: "/tmp") == nil)
            #expect(ServerTrust.vouchingOwner(of: "\(root)/missing") == nil)
        }
    }

    @Test("a server of the client's own uid is trusted; its credentials come from the kernel")
    func ownUID() throws {
        var pair: [Int32] = [-1, -1]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer {
            close(pair[0])
            close(pair[1])
        }
        let identity = try #require(ServerIdentity.of(pair[0]))
        #expect(identity.uid == geteuid())
        #expect(identity.pid == getpid())
        try ServerIdentity.check(pair[0], path: "/tmp/cvi-x/admin.sock", kind: .admin)
        // The same server, seen by a client of another uid, in a directory that vouches for nobody: refused,
        // unless the server is root's (trusted by every client).
        let other = geteuid() &+ 1
        if geteuid() == 0 {
            try ServerIdentity.check(pair[0], path: "/tmp/admin.sock", kind: .admin, clientUID: other)
        } else {
            let error = #expect(throws: DaemonError.self) {
                try ServerIdentity.check(pair[0], path: "/tmp/admin.sock", kind: .admin, clientUID: other)
            }
            #expect(error?.code == .untrustedServer)
            #expect(
                error?.message.contains("refusing to use /tmp/admin.sock: it is served by uid \(geteuid())") == true
            )
        }
    }
}
