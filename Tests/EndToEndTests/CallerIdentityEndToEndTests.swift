import Foundation
import TestSupport
import Testing
import VaultAPI

#if canImport(Glibc)
import Glibc
#endif

/// Caller identity cannot be borrowed through a reused pid (issue 8, item 2; DESIGN §10), on either socket.
///
/// Each test plays the attack: uid nobody, without groups, connects while the daemon is not accepting (stopped with
/// SIGSTOP, as it would be behind a full backlog or while it is out of descriptors), and exits at once; its child keeps
/// the connection. The test then steers the freed pid to a process of the granted group or unit
/// (`/proc/sys/kernel/ns_last_pid`), lets the daemon accept, and has nobody's child send its request. Reading groups
/// and unit from `/proc/PID` after accept — the old way — hands that request the reusing process's rights; the
/// kernel's record (`SO_PEERGROUPS`) and the pidfd confirmation (`SO_PEERPIDFD`) refuse it. Each test ends by showing
/// that the reusing process itself is served, so the refusal is the identity check's and not a broken setup's.
@Suite(
    "Caller identity end to end",
    .offCooperativePool,
    .serialized,
    .timeLimit(.minutes(3)),
    .enabled(if: getuid() == 0, "needs root for setpriv and ns_last_pid"),
    .enabled(if: ScriptProcess.isAvailable, "needs /usr/bin/python3 for the connect-and-exit helper"),
    .enabled(if: PidSteering.isAvailable, "needs a writable /proc/sys/kernel/ns_last_pid")
)
struct CallerIdentityEndToEndTests {
    static let staff: UInt32 = 50
    static let unitSlice = "/sys/fs/cgroup/unified/system.slice"
    static let unitCgroup = "\(unitSlice)/payroll-sync.service"

    /// Lets nobody reach both sockets through the file system, so that only the daemon's own checks can refuse it.
    func openUp(_ daemon: DaemonProcess) {
        daemon.openToOtherUIDs()
        chmod(daemon.adminSocket, 0o666)
    }

    /// Adds connection `payroll`, granted by `options` to no uid, and opens the sockets up (``openUp(_:)``).
    func addPayroll(_ fixture: BrokerFixture, granting options: [String]) async throws {
        try await fixture.addV2(
            "payroll",
            clientID: "fake-client-id-payroll",
            secret: "fake-secret-CANARY-payroll",
            allowUID: nil,
            options: options
        )
        self.openUp(fixture.daemon)
    }

    /// The attack; returns the status nobody's inherited connection got, and the status the reusing process got on a
    /// connection of its own.
    /// - Parameters:
    ///   - reuser: Starts the process that is to take nobody's pid (a `Scripts.requester`).
    ///   - prepare: Runs on the reusing process once it has the pid (moves it into a cgroup).
    func borrowPID(
        daemon: DaemonProcess,
        socket: String,
        target: String,
        reuser: (_ beforeSpawn: () throws -> Void) throws -> ScriptProcess,
        prepare: (Int32) throws -> Void = { _ in }
    ) throws -> (borrowed: String?, own: String?) {
        // Another process on the machine may take the freed pid for good before it can be steered: play the attack
        // again with a new pid, a few times.
        for _ in 0..<4 {
            if let result = try self.borrowPIDOnce(
                daemon: daemon,
                socket: socket,
                target: target,
                reuser: reuser,
                prepare: prepare
            ) {
                return result
            }
        }
        throw TestSupportError("could not steer a freed pid to the reusing process in four attacks")
    }

    /// One attack; nil when the freed pid could not be steered to the reusing process.
    func borrowPIDOnce(
        daemon: DaemonProcess,
        socket: String,
        target: String,
        reuser: (_ beforeSpawn: () throws -> Void) throws -> ScriptProcess,
        prepare: (Int32) throws -> Void
    ) throws -> (borrowed: String?, own: String?)? {
        guard let daemonPID = daemon.pid else { throw TestSupportError("the daemon is not running") }
        kill(daemonPID, SIGSTOP)
        defer { kill(daemonPID, SIGCONT) }

        let attacker = try ScriptProcess(script: Scripts.connectAndExit, arguments: [socket, target])
        defer { attacker.kill() }
        _ = try attacker.readPID()
        let connector = try attacker.readPID()
        // Runs off the test's task (blocking work): failures are thrown, not recorded.
        guard connector == attacker.pid else { throw TestSupportError("the helper reported pid \(connector)") }
        guard attacker.waitForExit() else { throw TestSupportError("the connecting process did not exit") }

        guard let holder = try PidSteering.start(withPID: connector, reuser) else { return nil }
        defer { holder.kill() }
        guard try holder.readPID() == connector else { throw TestSupportError("the reusing process has another pid") }
        try prepare(connector)

        kill(daemonPID, SIGCONT)
        attacker.send("go")
        let borrowed = attacker.readLine(timeout: .seconds(15))
        holder.send("go")
        let own = holder.readLine(timeout: .seconds(15))
        return (borrowed, own)
    }

    @Test("(a) a pid reused by a member of the granted group lends nobody no token")
    func groupGrant() async throws {
        try await BrokerFixture.run { fixture in
            try await self.addPayroll(fixture, granting: ["--allow-group", "staff"])
            let daemon = fixture.daemon
            let result = try await Blocking.run {
                try self.borrowPID(daemon: daemon, socket: daemon.appSocket, target: Routes.token("payroll")) { steer in
                    try ScriptProcess(
                        script: Scripts.requester,
                        arguments: [daemon.appSocket, Routes.token("payroll")],
                        groups: [Self.staff],
                        beforeSpawn: steer
                    )
                }
            }
            #expect(result.borrowed == "403", "nobody's connection got \(result.borrowed ?? "nothing")")
            #expect(result.own == "200", "the group member itself got \(result.own ?? "nothing")")
        }
    }

    @Test(
        "(b) a pid reused by a process of the granted unit lends nobody no token",
        .enabled(if: Self.canMakeUnitCgroup(), "needs a writable cgroup2 hierarchy at /sys/fs/cgroup/unified")
    )
    func unitGrant() async throws {
        try await BrokerFixture.run { fixture in
            try await self.addPayroll(fixture, granting: ["--allow-unit", "payroll-sync.service"])
            let daemon = fixture.daemon
            let madeSlice = mkdir(Self.unitSlice, 0o755) == 0
            mkdir(Self.unitCgroup, 0o755)
            defer { Self.removeUnitCgroup(andSlice: madeSlice) }
            let result = try await Blocking.run {
                try self.borrowPID(
                    daemon: daemon,
                    socket: daemon.appSocket,
                    target: Routes.token("payroll"),
                    reuser: { steer in
                        try ScriptProcess(
                            script: Scripts.requester,
                            arguments: [daemon.appSocket, Routes.token("payroll")],
                            beforeSpawn: steer
                        )
                    },
                    prepare: { pid in
                        try Self.write("\(pid)\n", to: "\(Self.unitCgroup)/cgroup.procs")
                        let cgroup = try String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)
                        guard cgroup.contains("0::/system.slice/payroll-sync.service") else {
                            throw TestSupportError("the reusing process is not in the unit's cgroup: \(cgroup)")
                        }
                    }
                )
            }
            #expect(result.borrowed == "403", "nobody's connection got \(result.borrowed ?? "nothing")")
            #expect(result.own == "200", "the unit's process itself got \(result.own ?? "nothing")")
        }
    }

    @Test("(c) on the admin socket at mode 0666, a pid reused by an --admin-group member lends nobody nothing")
    func adminGroup() async throws {
        try await BrokerFixture.run(daemonArguments: ["--dev", "--log-level", "debug", "--admin-group", "staff"]) {
            fixture in
            self.openUp(fixture.daemon)
            let daemon = fixture.daemon
            let result = try await Blocking.run {
                try self.borrowPID(daemon: daemon, socket: daemon.adminSocket, target: Routes.connections) { steer in
                    try ScriptProcess(
                        script: Scripts.requester,
                        arguments: [daemon.adminSocket, Routes.connections],
                        groups: [Self.staff],
                        beforeSpawn: steer
                    )
                }
            }
            #expect(result.borrowed == "403", "nobody's admin connection got \(result.borrowed ?? "nothing")")
            #expect(result.own == "200", "the admin group member itself got \(result.own ?? "nothing")")
        }
    }

    @Test("supplementary groups come from the kernel: a caller with several groups is served by the one granted")
    func kernelGroups() async throws {
        try await BrokerFixture.run { fixture in
            try await self.addPayroll(fixture, granting: ["--allow-group", "staff"])
            let socket = fixture.daemon.appSocket
            let statuses = try await Blocking.run {
                var statuses: [String?] = []
                for groups: [UInt32] in [[4, 24, Self.staff, 1000], [4, 24], []] {
                    let process = try ScriptProcess(
                        script: Scripts.requester,
                        arguments: [socket, Routes.token("payroll")],
                        groups: groups
                    )
                    defer { process.kill() }
                    _ = try process.readPID()
                    process.send("go")
                    statuses.append(process.readLine(timeout: .seconds(15)))
                }
                return statuses
            }
            #expect(statuses == ["200", "403", "403"])
        }
    }

    @Test("GET /v1/status says whether callers are pinned with SO_PEERPIDFD (this kernel has it)")
    func statusSaysPidfd() async throws {
        try await BrokerFixture.run { fixture in
            let response = try await fixture.admin("GET", Routes.status)
            #expect(response.status == 200, "\(response.raw)")
            #expect(response.body.contains("\"peer_pidfd\":true"), "\(response.body)")
            let status = try VaultJSON.decoder().decode(StatusView.self, from: Data(response.body.utf8))
            #expect(status.peerPidfd == true)
        }
    }

    // MARK: - Helpers

    static func canMakeUnitCgroup() -> Bool {
        // cgroup.procs at the root and no cgroup.clone_children: a cgroup2 hierarchy, not a v1 controller.
        access("/sys/fs/cgroup/unified/cgroup.procs", W_OK) == 0
            && access("/sys/fs/cgroup/unified/cgroup.clone_children", F_OK) != 0
    }

    static func removeUnitCgroup(andSlice removeSlice: Bool) {
        // The reusing process has been killed; its cgroup empties once it is reaped.
        let deadline = ContinuousClock.now + .seconds(5)
        while rmdir(Self.unitCgroup) != 0 && errno == EBUSY && ContinuousClock.now < deadline { usleep(10_000) }
        if removeSlice { rmdir(Self.unitSlice) }
    }

    static func write(_ text: String, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TestSupportError("open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
            throw TestSupportError("write \(path): \(String(cString: strerror(errno)))")
        }
    }
}
