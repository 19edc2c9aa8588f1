import Foundation
import TestSupport
import Testing
import VaultAPI

/// The admin socket serves only root, the daemon's uid and `--admin-group`, decided by peer credentials even when
/// the socket's mode lets anyone connect. Needs root (CI runs as root) to switch uid with setpriv.
@Suite(
    "Admin authorization end to end",
    .offCooperativePool,
    .timeLimit(.minutes(3)),
    .enabled(if: getuid() == 0, "needs root for setpriv")
)
struct AuthorizationEndToEndTests {
    /// Lets another uid reach the socket through the file system, so only peer credentials can refuse it.
    func openUp(_ daemon: DaemonProcess) {
        daemon.openToOtherUIDs()
        chmod(daemon.adminSocket, 0o666)
    }

    func asNobody(_ daemon: DaemonProcess, group: String = "65534", _ arguments: [String]) throws -> CommandResult {
        try Command.run(
            "/usr/bin/setpriv",
            ["--reuid", "65534", "--regid", group, "--clear-groups", Binaries.control] + arguments,
            environment: daemon.clientEnvironment
        )
    }

    @Test("another uid is refused even when the socket mode lets it connect")
    func otherUIDRefused() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let daemon = DaemonProcess(directory: directory)
        try daemon.start()
        defer { daemon.stop() }
        let mode = try FileManager.default.attributesOfItem(atPath: daemon.adminSocket)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let appMode = try FileManager.default.attributesOfItem(atPath: daemon.appSocket)[.posixPermissions] as? Int
        #expect(appMode == 0o666)
        self.openUp(daemon)

        let list = try self.asNobody(daemon, ["list"])
        #expect(list.status == 1, "\(list)")
        #expect(list.stderr.contains("forbidden"))
        let add = try self.asNobody(
            daemon,
            ["add", "x", "--provider", "personio-v2", "--client-id", "fake", "--secret-stdin"]
        )
        #expect(add.status != 0)
        let list2 = try VaultJSON.decoder().decode(
            ConnectionList.self,
            from: Data(try daemon.ctl(["list", "--json"]).stdout.utf8)
        )
        #expect(list2.connections.isEmpty)
        let audit = try daemon.ctl(["audit", "--json"])
        #expect(!audit.stdout.contains("connection.create"))
    }

    @Test("members of --admin-group are served")
    func adminGroupServed() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let daemon = DaemonProcess(directory: directory, arguments: ["--dev", "--admin-group", "nogroup"])
        try daemon.start()
        defer { daemon.stop() }
        let mode = try FileManager.default.attributesOfItem(atPath: daemon.adminSocket)[.posixPermissions] as? Int
        #expect(mode == 0o660)
        self.openUp(daemon)
        let list = try self.asNobody(daemon, group: "65534", ["list", "--json"])
        #expect(list.status == 0, "\(list)")
    }

    @Test("the daemon runs with umask 077 and without core files")
    func hardening() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let daemon = DaemonProcess(directory: directory)
        try daemon.start()
        defer { daemon.stop() }
        let pid = try #require(daemon.pid)
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        #expect(status.contains("Umask:\t0077"))
        let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
        let core = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max core file size") })
        #expect(core.split(separator: " ", omittingEmptySubsequences: true).dropFirst(4).prefix(2) == ["0", "0"])
        for file in [daemon.databasePath, daemon.keyFile] {
            let mode = try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(file)")
        }
    }
}
