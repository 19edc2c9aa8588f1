import TestSupport
import Testing
import VaultCore

@testable import VaultServer

#if canImport(Glibc)
import Glibc
#endif

@Suite("Peer identity from /proc")
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

    static let status = """
        Name:\tpayroll-sync
        Umask:\t0022
        State:\tS (sleeping)
        Tgid:\t4242
        Pid:\t4242
        Uid:\t1000\t1000\t1000\t1000
        Gid:\t1000\t1000\t1000\t1000
        FDSize:\t64
        Groups:\t4 24 27 100 1000 
        NStgid:\t4242

        """

    @Test("status fields and supplementary groups are read from fixture text")
    func status() {
        #expect(ProcStatus.field("Umask", in: Self.status) == "0022")
        #expect(ProcStatus.field("Name", in: Self.status) == "payroll-sync")
        #expect(ProcStatus.field("Uid", in: Self.status) == "1000\t1000\t1000\t1000")
        #expect(ProcStatus.field("Missing", in: Self.status) == nil)
        #expect(ProcStatus.supplementaryGroups(in: Self.status) == [4, 24, 27, 100, 1000])
        #expect(ProcStatus.supplementaryGroups(in: "Name:\tx\nGroups:\t\nPid:\t1\n") == [])
        #expect(ProcStatus.supplementaryGroups(in: "Name:\tx\n") == [])
        #expect(ProcStatus.supplementaryGroups(in: "Groups:\t5 x 7\n") == [5, 7])
    }

    @Test("comm is cut to printable ASCII")
    func comm() {
        #expect(PeerIdentity.sanitisedComm("connvaultctl\n") == "connvaultctl")
        #expect(PeerIdentity.sanitisedComm("evil\u{1B}[2J\n") == "evil?[2J")
        #expect(PeerIdentity.sanitisedComm("\n") == "?")
        #expect(PeerIdentity.sanitisedComm("a-very-long-process-name") == "a-very-long-pro")
    }

    @Test("a caller is built from a fake /proc tree")
    func fakeProc() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let pidDirectory = directory.file("4242")
        try FileSystemFixture.write(
            [
                "\(pidDirectory)/comm": "payroll-sync\n",
                "\(pidDirectory)/status": Self.status,
                "\(pidDirectory)/cgroup": "0::/system.slice/payroll.service\n",
            ])
        let caller = PeerIdentity.caller(.init(pid: 4242, uid: 1000, gid: 1001), procRoot: directory.path)
        #expect(
            caller
                == Caller(
                    uid: 1000,
                    gid: 1001,
                    pid: 4242,
                    comm: "payroll-sync",
                    groups: [4, 24, 27, 100, 1000, 1001],
                    unit: "payroll.service"
                )
        )
    }

    @Test("a process that is gone reads as comm ?, its primary group only and no unit")
    func goneProcess() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let caller = PeerIdentity.caller(.init(pid: 99999, uid: 1000, gid: 1000), procRoot: directory.path)
        #expect(caller == Caller(uid: 1000, gid: 1000, pid: 99999, comm: "?", groups: [1000], unit: nil))
    }

    @Test("this process reads as itself")
    func ownProcess() {
        let caller = PeerIdentity.caller(.init(pid: getpid(), uid: getuid(), gid: getgid()))
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
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            guard fd >= 0 else { throw TestSupportError("cannot write \(path)") }
            defer { close(fd) }
            let bytes = Array(contents.utf8)
            guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
                throw TestSupportError("short write to \(path)")
            }
        }
    }
}
