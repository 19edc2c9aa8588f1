import Foundation
import TestSupport
import Testing
import VaultAPI

#if canImport(Glibc)
import Glibc
#endif

/// An `exe` selector names the bytes of a path, not a Unicode string (docs/decisions.md, grant enforcement): Swift's
/// `String ==` is canonical equivalence, under which `/x/\u{212A}export` (KELVIN SIGN) equals `/x/Kexport` and a
/// decomposed `é` equals a precomposed one, although each is another file.
///
/// The attack, as a local user would play it: root keeps the granted program in a directory everyone may write (sticky,
/// as /tmp is) and grants it by `exe`; uid nobody copies the same program next to it under a look-alike name and asks
/// for the token through the copy. It must get 403, while the granted path, run by the same uid, gets 200: the
/// refusal is the executable selector's and nothing else's.
@Suite(
    "Look-alike executable names end to end",
    .offCooperativePool,
    .serialized,
    .timeLimit(.minutes(3)),
    .enabled(if: getuid() == 0, "needs root for setpriv"),
    .enabled(if: ScriptProcess.isAvailable, "needs /usr/bin/python3 for the helper scripts")
)
struct LookalikeExecutableEndToEndTests {
    /// A granted file name and the attacker's look-alike, canonically equivalent to it but other bytes.
    struct Names: Sendable, CustomTestStringConvertible {
        var granted: String
        var lookalike: String
        var testDescription: String

        static let all = [
            Names(granted: "Kexport", lookalike: "\u{212A}export", testDescription: "K and KELVIN SIGN"),
            Names(granted: "caf\u{E9}-export", lookalike: "cafe\u{301}-export", testDescription: "é, then e + U+0301"),
            Names(granted: "cafe\u{301}-export", lookalike: "caf\u{E9}-export", testDescription: "e + U+0301, then é"),
        ]
    }

    @Test("a copy of the granted program under a look-alike name gets no token", arguments: Names.all)
    func lookalikeIsRefused(_ names: Names) async throws {
        // The premise: Swift's String would take one for the other.
        #expect(names.granted == names.lookalike)
        #expect(!names.granted.utf8.elementsEqual(names.lookalike.utf8))
        let shared = try TemporaryDirectory(prefix: "cvk")
        defer { shared.remove() }
        chmod(shared.path, 0o1777)
        let directory = try Self.resolved(shared.path)
        let granted = "\(directory)/\(names.granted)"
        let lookalike = "\(directory)/\(names.lookalike)"
        try Self.installInterpreter(at: granted)
        try await Blocking.run { try Self.copyAsNobody(granted, to: lookalike) }
        // Two files: the file system does not fold the names either.
        #expect(try Self.inode(granted) != Self.inode(lookalike))

        try await BrokerFixture.run { fixture in
            let daemon = fixture.daemon
            daemon.openToOtherUIDs()
            try await CallerExecutableEndToEndTests.addGranted(fixture, "payroll", rule: "exe=\(granted)")
            let (attacker, owner) = try await Blocking.run {
                (
                    try CallerExecutableEndToEndTests.status(daemon, Routes.token("payroll"), interpreter: lookalike),
                    try CallerExecutableEndToEndTests.status(daemon, Routes.token("payroll"), interpreter: granted)
                )
            }
            #expect(attacker == "403", "the look-alike copy got \(attacker ?? "nothing")")
            #expect(owner == "200", "the granted program got \(owner ?? "nothing")")
        }
    }

    // MARK: - Helpers

    /// `path` with every symbolic link resolved (the daemon reads the executable's canonical path).
    static func resolved(_ path: String) throws -> String {
        guard let resolved = realpath(path, nil) else { throw TestSupportError("realpath \(path)") }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Root's copy of Python's interpreter at `path`, mode 0755.
    static func installInterpreter(at path: String) throws {
        try ExecutableFile.copy(try Self.resolved(ScriptProcess.python), to: path)
    }

    /// The attacker's step: uid nobody copies `source` to `destination` with cp(1).
    static func copyAsNobody(_ source: String, to destination: String) throws {
        let copy = try ChildProcess(
            "/usr/bin/setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", "/bin/cp", source, destination],
            standardError: .capture
        )
        let termination = copy.waitForExit(timeout: .seconds(30))
        guard termination.status == 0 else {
            throw TestSupportError("nobody could not copy \(source): \(copy.standardError())")
        }
    }

    static func inode(_ path: String) throws -> UInt {
        var information = stat()
        guard stat(path, &information) == 0 else { throw TestSupportError("stat \(path)") }
        return UInt(information.st_ino)
    }
}
