import Foundation
import Logging
import TestSupport
import Testing
import VaultAPI
import VaultStore

/// Acknowledged changes survive `kill -9`; the database stays sound and the audit chain intact.
@Suite("Durability end to end", .offCooperativePool, .timeLimit(.minutes(5)))
struct DurabilityEndToEndTests {
    @Test("SIGKILL during a burst of edits loses no acknowledged change")
    func sigkillDuringEdits() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let daemon = DaemonProcess(directory: directory)
        try daemon.start()
        let ids = (0..<6).map { "burst-\($0)" }
        for id in ids {
            let result = try daemon.ctl(
                ["add", id, "--provider", "personio-v2", "--client-id", "fake-\(id)", "--secret-stdin"],
                stdin: "fake-secret-\(id)\n"
            )
            #expect(result.status == 0, "\(result)")
        }

        // Three writers edit in a loop (secret edits: decrypt, re-encrypt, new revision) until the daemon dies. Each
        // `connvaultctl` runs off the cooperative pool, so that the task that kills the daemon always gets to run;
        // the writers also give up after a minute, should the kill never come.
        let acknowledged = Acknowledged()
        let giveUp = ContinuousClock.now + .seconds(60)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<3 {
                group.addTask {
                    var round = 0
                    while ContinuousClock.now < giveUp {
                        let id = ids[(writer + round * 3) % ids.count]
                        round += 1
                        let secret = "fake-secret-\(round)\n"
                        guard
                            let result = try? await Blocking.run({
                                try daemon.ctl(["edit", id, "--new-secret", "--secret-stdin", "--json"], stdin: secret)
                            }),
                            result.status == 0,
                            let view = try? VaultJSON.decoder().decode(
                                ConnectionView.self,
                                from: Data(result.stdout.utf8)
                            )
                        else { return }
                        await acknowledged.record(id, view.revision)
                    }
                }
            }
            group.addTask {
                // The kill comes in the middle of the burst: once the writers have had edits acknowledged (so the
                // check below has something to hold the daemon to), however slow the machine.
                let deadline = ContinuousClock.now + .seconds(30)
                while await acknowledged.count < 9 && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
                daemon.stop(signal: SIGKILL)
            }
            try await group.waitForAll()
        }
        let highest = await acknowledged.highest
        #expect(highest.values.reduce(0, +) > 0, "no edit was acknowledged before the kill")

        try daemon.start()
        let list = try VaultJSON.decoder().decode(
            ConnectionList.self,
            from: Data(try daemon.ctl(["list", "--json"]).stdout.utf8)
        )
        for view in list.connections {
            #expect(
                view.revision >= highest[view.id] ?? 0,
                "\(view.id): revision \(view.revision) < acknowledged \(highest[view.id] ?? 0)"
            )
        }
        let rotated = try daemon.ctl(["rotate-key"])
        #expect(rotated.status == 0, "every connection decrypts: \(rotated)")
        let chain = try VaultJSON.decoder().decode(
            AuditVerification.self,
            from: Data(try daemon.ctl(["audit", "--verify", "--json"]).stdout.utf8)
        )
        #expect(chain.intact)
        daemon.stop()

        let database = try VaultDatabase(path: daemon.databasePath, chainHash: { $0 }, logger: Logger(label: "test"))
        #expect(try await database.integrityCheck() == "ok")
        try database.close()
    }
}

/// The highest revision each connection was acknowledged at.
actor Acknowledged {
    var highest: [String: Int] = [:]
    /// Edits acknowledged so far.
    private(set) var count = 0

    func record(_ id: String, _ revision: Int) {
        self.highest[id] = max(self.highest[id] ?? 0, revision)
        self.count += 1
    }
}
