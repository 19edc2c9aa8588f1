import Foundation
import TestSupport
import Testing

enum UnitFiles {
    static let analyze = "/usr/bin/systemd-analyze"
    static var analyzeAvailable: Bool { FileManager.default.isExecutableFile(atPath: Self.analyze) }
}

/// The unit files as shipped, checked on the host with `systemd-analyze` (no container needed).
@Suite(
    "systemd unit files",
    .offCooperativePool,
    .enabled(if: UnitFiles.analyzeAvailable || SystemdContainer.required, "systemd-analyze is not installed")
)
struct UnitFileTests {
    static let analyze = UnitFiles.analyze

    static let units = ["connvaultd.service", "connvaultd.socket", "connvaultd-admin.socket"]

    /// The units with `ExecStart=` pointing at the built daemon (the installed path does not exist here).
    static func stagedUnits() throws -> TemporaryDirectory {
        let directory = try TemporaryDirectory(prefix: "cvunit")
        let source = "\(ServicePayload.repository)/systemd"
        for name in Self.units {
            let text = try String(contentsOfFile: "\(source)/\(name)", encoding: .utf8)
            try text.replacing("/usr/bin/connvaultd", with: Binaries.daemon)
                .write(toFile: directory.file(name), atomically: true, encoding: .utf8)
        }
        return directory
    }

    @Test("systemd-analyze verify passes on every unit")
    func verify() throws {
        let directory = try Self.stagedUnits()
        defer { directory.remove() }
        let result = try Command.run(
            Self.analyze,
            ["verify", "--man=no"] + Self.units.map { directory.file($0) }
        )
        #expect(result.status == 0 && result.stdout.isEmpty && result.stderr.isEmpty, "\(result)")
    }

    @Test("systemd-analyze security rates the service 2.0 or better (docs/service.md explains what remains)")
    func security() throws {
        let directory = try Self.stagedUnits()
        defer { directory.remove() }
        let result = try Command.run(
            Self.analyze,
            ["security", "--offline=yes", "--threshold=20", directory.file("connvaultd.service")]
        )
        let score = ServiceScenario.exposure(result.stdout)
        print("systemd-analyze security connvaultd.service: \(score.map { "\($0)" } ?? "?")")
        #expect(result.status == 0, "\(result)")
        #expect(score.map { $0 <= 2.0 } == true, "\(result.stdout)")
    }

    @Test("the sysusers file makes the connvault user and the connvault-admin group")
    func sysusers() throws {
        let text = try String(
            contentsOfFile: "\(ServicePayload.repository)/systemd/connvault.sysusers",
            encoding: .utf8
        )
        let lines = text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { $0.split(separator: " ") }
        #expect(lines.contains { $0.count > 1 && $0[0] == "u" && $0[1] == "connvault" })
        #expect(lines.contains { $0.count > 1 && $0[0] == "g" && $0[1] == "connvault-admin" })
    }
}
