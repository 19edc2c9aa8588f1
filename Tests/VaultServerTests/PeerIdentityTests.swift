import TestSupport
import Testing
import VaultCore

@testable import VaultServer

#if canImport(Glibc)
import Glibc
#endif

@Suite("Peer identity from the kernel and /proc")
struct PeerIdentityTests {
    struct CgroupCase: Sendable, CustomTestStringConvertible {
        var name: String
        var file: String
        var unit: String?
        var testDescription: String { self.name }
    }

    static let cgroupCases: [CgroupCase] = [
        CgroupCase(name: "system service", file: "0::/system.slice/payroll.service\n", unit: "payroll.service"),
        CgroupCase(
            name: "templated service",
            file: "0::/system.slice/system-getty.slice/getty@tty1.service\n",
            unit: "getty@tty1.service"
        ),
        CgroupCase(
            name: "custom slice",
            file: "0::/apps.slice/apps-hr.slice/hr-sync.service\n",
            unit: "hr-sync.service"
        ),
        CgroupCase(
            name: "sub-cgroup inside a delegated service",
            file: "0::/system.slice/payroll.service/worker\n",
            unit: "payroll.service"
        ),
        CgroupCase(
            name: "login session",
            file: "0::/user.slice/user-1000.slice/session-3.scope\n",
            unit: "session-3.scope"
        ),
        CgroupCase(
            name: "user unit is its user manager",
            file: "0::/user.slice/user-1000.slice/user@1000.service/app.slice/sync.service\n",
            unit: "user@1000.service"
        ),
        CgroupCase(
            name: "a user cannot pose as a system unit",
            file: "0::/user.slice/user-1000.slice/user@1000.service/payroll.service\n",
            unit: "user@1000.service"
        ),
        CgroupCase(name: "pid 1", file: "0::/init.scope\n", unit: "init.scope"),
        CgroupCase(name: "root cgroup", file: "0::/\n", unit: nil),
        CgroupCase(name: "inside a container", file: "0::/\n", unit: nil),
        CgroupCase(name: "not below slices", file: "0::/docker/4f1c/payroll.service\n", unit: nil),
        CgroupCase(name: "only a slice", file: "0::/system.slice\n", unit: nil),
        CgroupCase(
            name: "hybrid hierarchy",
            file:
                "12:pids:/system.slice/other.service\n1:name=systemd:/system.slice/other.service\n0::/system.slice/payroll.service\n",
            unit: "payroll.service"
        ),
        CgroupCase(
            name: "legacy only",
            file: "12:pids:/system.slice/payroll.service\n1:name=systemd:/system.slice/payroll.service\n",
            unit: nil
        ),
        CgroupCase(name: "empty", file: "", unit: nil),
        CgroupCase(name: "garbage", file: "\u{0}\u{1}xyz::", unit: nil),
    ]

    @Test("the unit is the outermost .service or .scope below slices of the unified hierarchy", arguments: cgroupCases)
    func cgroup(_ testCase: CgroupCase) {
        #expect(CgroupUnit.unit(fromCgroupFile: testCase.file) == testCase.unit)
    }

    @Test("SO_PEERGROUPS gives exactly the groups getgroups() reports, read through the channel's descriptor")
    func exactPeerGroups() throws {
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0)
        defer { for fd in pair { close(fd) } }
        var own = [gid_t](repeating: 0, count: Int(getgroups(0, nil)))
        own = Array(own.prefix(Int(max(getgroups(Int32(own.count), &own), 0))))
        let groups = try #require(Kernel.peerGroups(ofDescriptor: pair[0]))
        #expect(groups.count == own.count)
        #expect(Set(groups) == Set(own))
        #expect(Kernel.peerGroups(ofDescriptor: -1) == nil)
    }

    @Test("status fields are read from fixture text")
    func status() {
        let status = "Name:\tpayroll-sync\nUmask:\t0022\nUid:\t1000\t1000\t1000\t1000\n"
        #expect(ProcStatus.field("Umask", in: status) == "0022")
        #expect(ProcStatus.field("Name", in: status) == "payroll-sync")
        #expect(ProcStatus.field("Uid", in: status) == "1000\t1000\t1000\t1000")
        #expect(ProcStatus.field("Missing", in: status) == nil)
    }

    @Test("comm is cut to printable ASCII")
    func comm() {
        #expect(PeerIdentity.sanitisedComm("connvaultctl\n") == "connvaultctl")
        #expect(PeerIdentity.sanitisedComm("evil\u{1B}[2J\n") == "evil?[2J")
        #expect(PeerIdentity.sanitisedComm("\n") == "?")
        #expect(PeerIdentity.sanitisedComm("a-very-long-process-name") == "a-very-long-pro")
    }

    @Test("a confirmed caller gets the unit and comm of a fake /proc tree; groups come only from the kernel")
    func fakeProc() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let pidDirectory = directory.file("4242")
        try FileSystemFixture.write(
            [
                "\(pidDirectory)/comm": "payroll-sync\n",
                "\(pidDirectory)/status": "Name:\tpayroll-sync\nGroups:\t4 24 27\n",
                "\(pidDirectory)/cgroup": "0::/system.slice/payroll.service\n",
            ])
        var asked = 0
        let caller = PeerIdentity.caller(
            .init(pid: 4242, uid: 1000, gid: 1001),
            groups: [100, 1000],
            pidfd: 99,
            procRoot: directory.path,
            isAlive: { pidfd in
                asked += 1
                return pidfd == 99
            }
        )
        #expect(asked == 1)
        #expect(
            caller
                == Caller(
                    uid: 1000,
                    gid: 1001,
                    pid: 4242,
                    comm: "payroll-sync",
                    groups: [100, 1000, 1001],
                    unit: "payroll.service"
                )
        )
    }

    @Test("a caller whose process is gone after /proc was read gets no unit: the pid may be another process's")
    func unconfirmed() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try FileSystemFixture.write([
            "\(directory.file("4242"))/comm": "payroll-sync\n",
            "\(directory.file("4242"))/cgroup": "0::/system.slice/payroll.service\n",
        ])
        let gone = PeerIdentity.caller(
            .init(pid: 4242, uid: 65534, gid: 65534),
            groups: [],
            pidfd: 99,
            procRoot: directory.path,
            isAlive: { _ in false }
        )
        #expect(gone == Caller(uid: 65534, gid: 65534, pid: 4242, comm: "?", groups: [65534], unit: nil))
        // No pidfd (a kernel before 6.5): nothing from /proc at all.
        let noPidfd = PeerIdentity.caller(
            .init(pid: 4242, uid: 65534, gid: 65534),
            groups: nil,
            pidfd: nil,
            procRoot: directory.path,
            isAlive: { _ in true }
        )
        #expect(noPidfd == gone)
    }

    @Test("a process that is gone reads as comm ?, its kernel groups and no unit")
    func goneProcess() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let caller = PeerIdentity.caller(
            .init(pid: 99999, uid: 1000, gid: 1000),
            groups: [5],
            pidfd: 99,
            procRoot: directory.path,
            isAlive: { _ in true }
        )
        #expect(caller == Caller(uid: 1000, gid: 1000, pid: 99999, comm: "?", groups: [5, 1000], unit: nil))
    }

    @Test("this process, pinned by a real pidfd, reads as itself")
    func ownProcess() throws {
        let pidfd = try #require(Kernel.pidfdOpen(getpid()))
        defer { close(pidfd) }
        #expect(Kernel.isAlive(pidfd: pidfd))
        let caller = PeerIdentity.caller(.init(pid: getpid(), uid: getuid(), gid: getgid()), groups: [], pidfd: pidfd)
        #expect(caller.comm != "?")
        #expect(caller.groups.contains(getgid()))
    }
}

/// Writes fixture files, creating their directories.
enum FileSystemFixture {
    static func write(_ files: [String: String]) throws {
        for (path, contents) in files {
            let directory = String(path[..<path.lastIndex(of: "/")!])
            mkdir(directory, 0o755)
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw TestSupportError("cannot write \(path)") }
            defer { close(fd) }
            let bytes = Array(contents.utf8)
            guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
                throw TestSupportError("short write to \(path)")
            }
        }
    }
}
