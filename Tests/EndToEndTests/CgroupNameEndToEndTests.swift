import Foundation
import TestSupport
import Testing
import VaultAPI

#if canImport(Glibc)
import Glibc
#endif

/// A user may create cgroups of any name inside its own delegated `user@UID.service`. One whose name begins with a
/// combining mark (`\u{301}app.slice`) joined the `/` before it into one `Character`, and the cgroup parser split
/// `Character`s on `/`: `user@65534.service/\u{301}app.slice` read as a slice, and the `payroll-cm.service` the user
/// made below it was taken for the system unit of that name. The attack: uid nobody, in such a cgroup, asks for the
/// token of a connection granted to `unit=payroll-cm.service` only. A process of that unit (a cgroup of the same name
/// below a slice) is served, so that the refusal is the parser's and not a broken setup's.
@Suite(
    "Cgroup names end to end",
    .offCooperativePool,
    .serialized,
    .timeLimit(.minutes(3)),
    .enabled(if: getuid() == 0, "needs root to make cgroups and for setpriv"),
    .enabled(if: ScriptProcess.isAvailable, "needs /usr/bin/python3 for the requester"),
    .enabled(if: CallerIdentityEndToEndTests.canMakeUnitCgroup(), "needs a writable cgroup2 hierarchy")
)
struct CgroupNameEndToEndTests {
    static let root = "/sys/fs/cgroup/unified"
    /// The user's delegated manager and, inside it, the cgroups the user made.
    static let userChain = [
        "user.slice", "user-65534.slice", "user@65534.service", "\u{301}cm-app.slice", "payroll-cm.service",
    ]
    /// The real unit, below a slice of this test's own.
    static let unitChain = ["cm-fuzz.slice", "payroll-cm.service"]

    @Test("a user's cgroup named with a combining mark does not pass for a system unit")
    func combiningMarkIsNotAUnit() async throws {
        try await BrokerFixture.run { fixture in
            try await fixture.addV2(
                "payroll",
                clientID: "fake-client-id-cm",
                secret: "fake-secret-CANARY-cm",
                allowUID: nil,
                options: ["--allow-unit", "payroll-cm.service"]
            )
            let daemon = fixture.daemon
            daemon.openToOtherUIDs()
            let made = Self.make(Self.userChain) + Self.make(Self.unitChain)
            defer { Self.remove(made) }
            let statuses = try await Blocking.run {
                try [Self.userChain, Self.unitChain].map { chain in
                    try Self.request(daemon.appSocket, fromCgroup: chain)
                }
            }
            #expect(statuses[0] == "403", "the user's process in the look-alike cgroup got \(statuses[0] ?? "nothing")")
            #expect(statuses[1] == "200", "the unit's own process got \(statuses[1] ?? "nothing")")
        }
    }

    /// Starts a requester as nobody, moves it into the cgroup `chain` names, and returns the status it gets.
    static func request(_ socket: String, fromCgroup chain: [String]) throws -> String? {
        let process = try ScriptProcess(script: Scripts.requester, arguments: [socket, Routes.token("payroll")])
        defer { process.kill() }
        let pid = try process.readPID()
        let path = ([Self.root] + chain).joined(separator: "/")
        try CallerIdentityEndToEndTests.write("\(pid)\n", to: path + "/cgroup.procs")
        let cgroup = try String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)
        guard cgroup.contains("0::/" + chain.joined(separator: "/")) else {
            throw TestSupportError("the requester is not in its cgroup: \(cgroup)")
        }
        process.send("go")
        return process.readLine(timeout: .seconds(15))
    }

    /// Creates the missing directories of `chain`; returns those it made, deepest last.
    static func make(_ chain: [String]) -> [String] {
        var made: [String] = []
        var path = Self.root
        for name in chain {
            path += "/" + name
            if mkdir(path, 0o755) == 0 { made.append(path) }
        }
        return made
    }

    /// Removes the cgroups made, deepest first, once their processes have gone.
    static func remove(_ made: [String]) {
        for path in made.reversed() {
            let deadline = ContinuousClock.now + .seconds(5)
            while rmdir(path) != 0 && errno == EBUSY && ContinuousClock.now < deadline { usleep(10_000) }
        }
    }
}
