import Foundation
import TestSupport
import Testing
import VaultAPI

/// Rounds of edits interrupted by `kill -9`, each followed by a restart that must find every acknowledged change,
/// every connection decryptable and the audit chain intact. `make test` runs 2 rounds; `make soak` sets
/// `CONNVAULT_SOAK_ROUNDS`.
@Suite("Soak end to end", .offCooperativePool, .timeLimit(.minutes(60)))
struct SoakEndToEndTests {
    static var rounds: Int { Int(ProcessInfo.processInfo.environment["CONNVAULT_SOAK_ROUNDS"] ?? "") ?? 2 }

    @Test("kill -9 and restart, round after round")
    func soak() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let daemon = DaemonProcess(directory: directory, arguments: ["--dev", "--log-level", "warning"])
        try daemon.start()
        for index in 0..<4 {
            let result = try daemon.ctl(
                [
                    "add", "soak-\(index)", "--provider", "personio-v2", "--client-id", "fake-\(index)",
                    "--secret-stdin",
                ],
                stdin: "fake-s-\(index)\n"
            )
            #expect(result.status == 0, "\(result)")
        }
        var acknowledged: [String: Int] = [:]
        var random = SeededGenerator(seed: 7)
        for round in 0..<Self.rounds {
            let deadline = ContinuousClock.now + .milliseconds(Int64.random(in: 300...1200, using: &random))
            var edits = 0
            while ContinuousClock.now < deadline {
                let id = "soak-\(edits % 4)"
                let result = try daemon.ctl(
                    ["edit", id, "--new-secret", "--secret-stdin", "--json"],
                    stdin: "fake-r\(round)-\(edits)\n"
                )
                guard result.status == 0 else { break }
                let view = try VaultJSON.decoder().decode(ConnectionView.self, from: Data(result.stdout.utf8))
                acknowledged[id] = view.revision
                edits += 1
            }
            daemon.stop(signal: SIGKILL)
            try daemon.start()
            let list = try VaultJSON.decoder().decode(
                ConnectionList.self,
                from: Data(try daemon.ctl(["list", "--json"]).stdout.utf8)
            )
            for view in list.connections {
                #expect(
                    view.revision >= acknowledged[view.id] ?? 0,
                    "round \(round): \(view.id) lost an acknowledged edit"
                )
            }
            #expect(try daemon.ctl(["rotate-key"]).status == 0, "round \(round): a connection no longer decrypts")
            let chain = try VaultJSON.decoder().decode(
                AuditVerification.self,
                from: Data(try daemon.ctl(["audit", "--verify", "--json"]).stdout.utf8)
            )
            #expect(chain.intact, "round \(round)")
        }
        daemon.stop()
    }
}
