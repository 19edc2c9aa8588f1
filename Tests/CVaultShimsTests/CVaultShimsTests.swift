import CVaultShims
import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The C helpers each written once (DESIGN §2), on real sockets and the real group database.
@Suite struct SocketAddressTests {
    /// Fills an address for `path`: the result, errno, the length and the address.
    static func set(_ path: String) -> (result: Int32, errno: Int32, length: socklen_t, address: sockaddr_un) {
        var address = sockaddr_un()
        var length: socklen_t = 99
        let result = cv_sockaddr_un_set(&address, path, &length)
        return (result, result == 0 ? 0 : errno, length, address)
    }

    static func pathBytes(_ address: sockaddr_un, _ count: Int) -> [UInt8] {
        withUnsafeBytes(of: address.sun_path) { Array($0.prefix(count)) }
    }

    static let header = MemoryLayout<sa_family_t>.size

    @Test(arguments: [1, 99, 107])
    func aPathThatFitsGetsItsNULAndItsExactLength(count: Int) {
        let path = String(repeating: "a", count: count)
        let set = Self.set(path)
        #expect(set.result == 0)
        #expect(set.length == socklen_t(Self.header + count + 1))
        #expect(set.address.sun_family == sa_family_t(AF_UNIX))
        #expect(Self.pathBytes(set.address, count + 1) == Array(path.utf8) + [0])
    }

    @Test(arguments: [108, 109, 200, 4096])
    func aPathOf108BytesOrMoreIsRefused(count: Int) {
        let set = Self.set(String(repeating: "b", count: count))
        #expect(set.result == -1)
        #expect(set.errno == ENAMETOOLONG)
        #expect(set.length == 0)
        #expect(Self.pathBytes(set.address, 108) == [UInt8](repeating: 0, count: 108))
    }

    @Test(arguments: ["", "@"])
    func anEmptyPathOrABareAtIsRefused(path: String) {
        let set = Self.set(path)
        #expect(set.result == -1)
        #expect(set.errno == EINVAL)
    }

    @Test func anAbstractNameHasALeadingNULAndNoTerminator() {
        let set = Self.set("@/org/example/notify")
        #expect(set.result == 0)
        #expect(set.length == socklen_t(Self.header + 20))
        #expect(Self.pathBytes(set.address, 21) == [0] + Array("/org/example/notify".utf8) + [0])
        // The whole of sun_path after the '@': 107 bytes fit, 108 do not.
        #expect(Self.set("@" + String(repeating: "n", count: 107)).length == socklen_t(Self.header + 108))
        #expect(Self.set("@" + String(repeating: "n", count: 108)).errno == ENAMETOOLONG)
    }

    /// A 99-byte path binds and connects for real with the length the helper gives.
    @Test func aLongRealPathBindsAndConnects() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let name = String(repeating: "s", count: 99 - directory.path.utf8.count - 1)
        let path = directory.file(name)
        #expect(path.utf8.count == 99)
        var (result, _, length, address) = Self.set(path)
        #expect(result == 0)
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let client = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer {
            close(listener)
            close(client)
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) }
        }
        #expect(bound == 0)
        #expect(listen(listener, 1) == 0)
        #expect(FileManager.default.fileExists(atPath: path))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, length) }
        }
        #expect(connected == 0)
    }

    @Test func zeroingClearsEveryByte() {
        var bytes = [UInt8](repeating: 0xA5, count: 333)
        bytes.withUnsafeMutableBytes { cv_zero($0.baseAddress, $0.count) }
        #expect(bytes.allSatisfy { $0 == 0 })
        cv_zero(nil, 0)
    }
}

@Suite struct PeerGroupsTests {
    /// This process's supplementary groups, as `getgroups()` reports them.
    static func ownGroups() -> [gid_t] {
        let count = getgroups(0, nil)
        var groups = [gid_t](repeating: 0, count: Int(count))
        let written = getgroups(count, &groups)
        return Array(groups.prefix(Int(max(written, 0))))
    }

    @Test func theCountIsExactlyWhatGetgroupsReportsOnASocketpair() throws {
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0)
        defer { for fd in pair { close(fd) } }
        var buffer = [gid_t](repeating: 0xFFFF_FFFF, count: 64)
        var count: Int32 = -1
        let result = cv_get_peer_groups(pair[0], &buffer, 64, &count)
        let own = Self.ownGroups()
        try #require(own.count <= 64)
        #expect(result == 0)
        #expect(Int(count) == own.count)
        #expect(Set(buffer.prefix(Int(count))) == Set(own))
        // Nothing past the count was written: no zero fill to guess from.
        #expect(buffer.dropFirst(Int(count)).allSatisfy { $0 == 0xFFFF_FFFF })
    }

    @Test func aBufferTooSmallReportsTheNumberNeeded() throws {
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0)
        defer { for fd in pair { close(fd) } }
        let own = Self.ownGroups()
        var count: Int32 = -1
        var none: [gid_t] = []
        let result = cv_get_peer_groups(pair[0], &none, 0, &count)
        if own.isEmpty {
            #expect(result == 0)
            #expect(count == 0)
        } else {
            #expect(result == -1)
            #expect(errno == ERANGE)
            #expect(Int(count) == own.count)
        }
        var closed = [gid_t](repeating: 0, count: 4)
        #expect(cv_get_peer_groups(-1, &closed, 4, &count) == -1)
        #expect(errno == EBADF)
        #expect(count == 0)
    }

    /// A peer in 300 groups (gid 0 among them, the value a zero fill would be mistaken for): the first 64-entry
    /// buffer is refused with the exact count, the second holds all of them.
    @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")))
    func aPeerWithManyGroupsIsCountedExactly() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("g.sock")
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_un()
        var length: socklen_t = 0
        try #require(cv_sockaddr_un_set(&address, path, &length) == 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) }
        }
        try #require(bound == 0 && listen(listener, 1) == 0)
        // The child runs as nobody: it must reach the socket.
        try #require(chmod(directory.path, 0o755) == 0 && chmod(path, 0o777) == 0)
        let groups = (0..<300).map { gid_t($0 * 7) }
        let script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.recv(1)\n"
        let child = try ChildProcess(
            "/usr/bin/setpriv",
            [
                "--reuid=65534", "--regid=65534", "--groups=" + groups.map(String.init).joined(separator: ","),
                "/usr/bin/python3", "-c", script, path,
            ],
            standardError: .capture
        )
        defer { _ = child.waitForExit(timeout: .seconds(20)) }
        var poller = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, 20_000) == 1 else {
            child.killGroup()
            Issue.record("the child did not connect: \(child.standardError(timeout: .seconds(1)))")
            return
        }
        let connection = accept(listener, nil, nil)
        try #require(connection >= 0)
        defer { close(connection) }

        var small = [gid_t](repeating: 0, count: 64)
        var count: Int32 = 0
        #expect(cv_get_peer_groups(connection, &small, 64, &count) == -1)
        #expect(errno == ERANGE)
        #expect(count == 300)
        var large = [gid_t](repeating: 0, count: Int(count))
        #expect(cv_get_peer_groups(connection, &large, count, &count) == 0)
        #expect(count == 300)
        #expect(large == groups)
    }
}

@Suite struct GroupLookupTests {
    /// The root group, looked up with a buffer of `initial` bytes.
    static func root(initial: Int) -> (result: Int32, gid: gid_t, name: String, members: [String], attempts: Int32) {
        var entry = cv_group_entry()
        let result = cv_group_by_name("root", initial, &entry)
        defer { if result == 0 { cv_group_entry_free(&entry) } }
        guard result == 0 else { return (result, 0, "", [], 0) }
        let members = (0..<entry.member_count).map { String(cString: entry.members[$0]!) }
        return (result, entry.gid, String(cString: entry.name), members, entry.attempts)
    }

    @Test func aTinyFirstBufferIsGrownOnERANGE() {
        let tiny = Self.root(initial: 1)
        #expect(tiny.result == 0)
        #expect(tiny.gid == 0)
        #expect(tiny.name == "root")
        #expect(tiny.attempts > 1)
        let normal = Self.root(initial: 0)
        #expect(normal.attempts == 1)
        #expect(normal.members == tiny.members)
    }

    @Test func byGidFindsTheNameAndBothAgreeWithGetgrnam() throws {
        let candidates: [String] = ["nogroup", "daemon", "root"]
        let name = try #require(candidates.first { getgrnam($0) != nil })
        let expected = getgrnam(name)!.pointee.gr_gid
        var gid: gid_t = 0xFFFF
        #expect(cv_group_gid(name, &gid) == 0)
        #expect(gid == expected)
        var entry = cv_group_entry()
        #expect(cv_group_by_gid(expected, 1, &entry) == 0)
        defer { cv_group_entry_free(&entry) }
        #expect(String(cString: entry.name) == name)
        #expect(entry.gid == expected)
    }

    /// Members come back as the group file lists them (copied out of the look-up buffer).
    @Test func membersAreCopiedOut() throws {
        let listed = try String(contentsOfFile: "/etc/group", encoding: .utf8).split(separator: "\n")
            .map { $0.split(separator: ":", omittingEmptySubsequences: false) }
            .first { $0.count == 4 && !$0[3].isEmpty }
        guard let listed else { return }
        var entry = cv_group_entry()
        #expect(cv_group_by_name(String(listed[0]), 1, &entry) == 0)
        defer { cv_group_entry_free(&entry) }
        let members = (0..<entry.member_count).map { String(cString: entry.members[$0]!) }
        #expect(members == listed[3].split(separator: ",").map(String.init))
        #expect(entry.members[entry.member_count] == nil)
    }

    @Test func anUnknownGroupIsNotFoundNotAnError() {
        var gid: gid_t = 0
        #expect(cv_group_gid("no-such-group-CANARY", &gid) == 1)
        var entry = cv_group_entry()
        #expect(cv_group_by_gid(4_000_000_123, 0, &entry) == 1)
        #expect(entry.storage == nil)
    }
}
