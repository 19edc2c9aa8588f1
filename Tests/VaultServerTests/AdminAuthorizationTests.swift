import Testing
import VaultCore

@testable import VaultServer

@Suite("Admin socket authorization")
struct AdminAuthorizationTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var caller: Caller
        var adminGID: UInt32?
        var allowed: Bool
        var testDescription: String { self.name }
    }

    /// The daemon runs as uid 990 in these cases; the admin group is 2000.
    static let cases: [Case] = [
        Case(name: "root", caller: Caller(uid: 0, gid: 0, pid: 1, comm: "ctl"), adminGID: nil, allowed: true),
        Case(
            name: "root with an admin group",
            caller: Caller(uid: 0, gid: 0, pid: 1, comm: "ctl"),
            adminGID: 2000,
            allowed: true
        ),
        Case(
            name: "the daemon's uid",
            caller: Caller(uid: 990, gid: 990, pid: 1, comm: "ctl"),
            adminGID: nil,
            allowed: true
        ),
        Case(
            name: "another uid",
            caller: Caller(uid: 1000, gid: 1000, pid: 1, comm: "ctl", groups: [1000]),
            adminGID: nil,
            allowed: false
        ),
        Case(
            name: "another uid in the admin group (supplementary)",
            caller: Caller(uid: 1000, gid: 1000, pid: 1, comm: "ctl", groups: [27, 1000, 2000]),
            adminGID: 2000,
            allowed: true
        ),
        Case(
            name: "another uid with the admin group as primary",
            caller: Caller(uid: 1000, gid: 2000, pid: 1, comm: "ctl"),
            adminGID: 2000,
            allowed: true
        ),
        Case(
            name: "another uid, other groups",
            caller: Caller(uid: 1000, gid: 1000, pid: 1, comm: "ctl", groups: [27, 1000]),
            adminGID: 2000,
            allowed: false
        ),
        Case(
            name: "the admin group's gid is not enough without an admin group",
            caller: Caller(uid: 1000, gid: 2000, pid: 1, comm: "ctl", groups: [2000]),
            adminGID: nil,
            allowed: false
        ),
        Case(
            name: "nobody",
            caller: Caller(uid: 65534, gid: 65534, pid: 1, comm: "ctl", groups: [65534]),
            adminGID: 2000,
            allowed: false
        ),
        Case(
            name: "a unit name grants nothing",
            caller: Caller(uid: 1000, gid: 1000, pid: 1, comm: "ctl", unit: "connvaultd.service"),
            adminGID: 2000,
            allowed: false
        ),
    ]

    @Test("only root, the daemon's uid and admin-group members are admins", arguments: cases)
    func decide(_ testCase: Case) {
        let authorization = AdminAuthorization(daemonUID: 990, adminGID: testCase.adminGID)
        #expect(authorization.allows(testCase.caller) == testCase.allowed)
    }

    @Test("group names resolve; unknown ones are a start-up error naming them")
    func groups() throws {
        #expect(try resolveAdminGroup("root") == 0)
        let error = try #require(throws: StartupError.self) { try resolveAdminGroup("no-such-group-cv") }
        #expect(error.description.contains("no-such-group-cv"))
        #expect(error.description.contains("--admin-group"))
    }
}
