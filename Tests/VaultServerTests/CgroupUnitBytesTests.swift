import Testing

@testable import VaultServer

/// A user may create cgroups of any name inside its delegated `user@UID.service`. A name that begins with a combining
/// mark joins the `/` before it into one `Character`; the parser split `Character`s on `/`, so
/// `user@1000.service/\u{301}app.slice` read as one component, a slice, and the user's own `payroll.service` below it
/// was taken for the system unit of that name (a grant for `unit=payroll.service` then matched the user's process).
/// The path is now split on the byte `/`.
@Suite struct CgroupUnitBytesTests {
    static let cases: [(file: String, unit: String?)] = [
        // What the attacker's process reads in /proc/self/cgroup.
        ("0::/user.slice/user-1000.slice/user@1000.service/\u{301}app.slice/payroll.service\n", "user@1000.service"),
        ("0::/user.slice/user-1000.slice/user@1000.service/\u{301}payroll.service\n", "user@1000.service"),
        ("0::/user.slice/user-1000.slice/user@1000.service/\u{20DD}/payroll.service\n", "user@1000.service"),
        // A combining mark inside a system unit's own name stays part of that name.
        ("0::/system.slice/\u{301}payroll.service\n", "\u{301}payroll.service"),
        ("0::/system.slice/payroll.service\n", "payroll.service"),
    ]

    @Test("a combining mark after a '/' does not merge two cgroup components", arguments: Self.cases)
    func combiningMark(_ testCase: (file: String, unit: String?)) {
        let unit = CgroupUnit.unit(fromCgroupFile: testCase.file)
        #expect(unit.map { Array($0.utf8) } == testCase.unit.map { Array($0.utf8) })
    }
}
