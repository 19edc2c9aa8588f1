import Foundation
import PersonioStandIn
import TestSupport
import Testing
import VaultAPI

#if canImport(Glibc)
import Glibc
#endif

/// Crash loops: mixed operations chosen by a seeded generator (add, edit with a new secret, reset, grant with a
/// rule, rotate-key, disconnect, disable, enable), each round ending in a `kill -9` of the daemon during one of them:
/// after a random delay, or paused by the fault shim (`Tests/FaultShim`) in the first WAL write or fsync of a commit,
/// or, for rotate-key, inside one of its two phases (phase 1 while the staged key file is synced, before the database
/// commit; phase 2 at the rename of the staged file, after the commit). No hook in the daemon: the shim pauses the
/// system call, the test waits for its marker file and kills.
///
/// After each crash, on the files: `PRAGMA integrity_check` is ok. After each restart: every acknowledged change is
/// there, the interrupted one either wholly with its audit row or not at all and without (never applied when killed
/// inside its WAL write or in phase 1; always applied in phase 2), every connection decrypts (a token from the
/// stand-in for the active ones, and a key rotation, which unwraps every data key and opens every secret), the audit
/// chain verifies and no staged key file is left. `make test` runs 3 rounds; `make soak` sets
/// `CONNVAULT_SOAK_ROUNDS`. The figures (kill points per operation) are printed at the end.
extension SoakEndToEndTests {
    /// What the test holds the vault to, per connection.
    struct Expected: Equatable, CustomStringConvertible {
        var revision: Int
        var state: ConnectionState
        var uids: Set<UInt32>
        var rules: Int

        init(revision: Int, state: ConnectionState, uids: Set<UInt32>, rules: Int) {
            self.revision = revision
            self.state = state
            self.uids = uids
            self.rules = rules
        }

        init(_ view: ConnectionView) {
            self.init(
                revision: view.revision,
                state: view.state,
                uids: Set(view.grants.uids),
                rules: view.grants.rules.count
            )
        }

        var description: String { "rev \(self.revision) \(self.state) uids \(self.uids.sorted()) rules \(self.rules)" }
    }

    enum Operation: String, CaseIterable {
        case add, edit, reset, grant
        case rotateKey = "rotate-key"
        case disconnect, disable, enable
    }

    /// Where a round's kill landed.
    enum KillPoint: String, CaseIterable {
        case beforeOrDuring = "at a random moment, before the acknowledgement"
        case afterAcknowledgement = "at a random moment, after the acknowledgement"
        case walWrite = "inside a commit (its first WAL write paused)"
        case walSync = "inside a commit (its first WAL fsync paused)"
        case rotationPhase1 = "rotate-key phase 1 (staged key written, database not committed)"
        case rotationPhase2 = "rotate-key phase 2 (database committed, staged key not renamed)"

        var short: String {
            switch self {
            case .beforeOrDuring: "random-unacknowledged"
            case .afterAcknowledgement: "random-acknowledged"
            case .walWrite: "wal-write"
            case .walSync: "wal-fsync"
            case .rotationPhase1: "phase-1"
            case .rotationPhase2: "phase-2"
            }
        }
    }

    static var crashRounds: Int { Int(ProcessInfo.processInfo.environment["CONNVAULT_SOAK_ROUNDS"] ?? "") ?? 3 }

    @Test("kill -9 at random moments of mixed operations and inside rotate-key's phases, round after round")
    func crashLoop() async throws {
        try await Blocking.run { try CrashLoop(rounds: Self.crashRounds, seed: 13).run() }
    }
}

/// One crash-loop run: the daemon, the stand-in, the model of what was acknowledged, and the figures.
final class CrashLoop {
    typealias Expected = SoakEndToEndTests.Expected
    typealias Operation = SoakEndToEndTests.Operation
    typealias KillPoint = SoakEndToEndTests.KillPoint

    let rounds: Int
    var random: SeededGenerator
    var model: [String: Expected] = [:]
    var nextID = 0
    var nextSecret = 0
    var kills: [String: Int] = [:]
    var applied: [String: Int] = [:]
    var acknowledgedOperations = 0
    let directory: TemporaryDirectory
    let daemon: FaultyDaemon
    var standIn: PersonioStandIn!

    init(rounds: Int, seed: UInt64) throws {
        self.rounds = rounds
        self.random = SeededGenerator(seed: seed)
        self.directory = try TemporaryDirectory()
        self.daemon = FaultyDaemon(directory: self.directory, arguments: ["--dev", "--log-level", "notice"])
    }

    func run() throws {
        defer { self.directory.remove() }
        self.standIn = try FaultInjectionEndToEndTests.startStandIn()
        defer { FaultInjectionEndToEndTests.shutDown(self.standIn) }
        defer { self.daemon.stop(signal: SIGKILL) }
        try self.daemon.start()
        for _ in 0..<3 { try self.acknowledged(.add) }
        for round in 0..<self.rounds {
            for _ in 0..<Int.random(in: 1...3, using: &self.random) {
                try self.acknowledged(self.pick())
            }
            try self.crash(round: round)
            try self.check(round: round)
        }
        self.daemon.stop()
        let figures = KillPoint.allCases.map { "\($0.rawValue): \(self.kills[$0.rawValue, default: 0])" }
        let byOperation = Operation.allCases.flatMap { operation in
            KillPoint.allCases.compactMap { point in
                self.kills["\(operation.rawValue) \(point.short)"].map { "\(operation.rawValue) \(point.short) \($0)" }
            }
        }
        let appliedFigures = Operation.allCases.map { "\($0.rawValue) \(self.applied[$0.rawValue, default: 0])" }
        print(
            "crash loop: \(self.rounds) rounds, \(self.acknowledgedOperations) acknowledged operations; kills: "
                + figures.joined(separator: ", ") + "; per operation: " + byOperation.joined(separator: ", ")
                + "; interrupted and found applied after the restart: " + appliedFigures.joined(separator: ", ")
        )
    }

    // MARK: - Operations

    func pick() -> Operation {
        if self.model.isEmpty { return .add }
        var choices: [Operation] = [.edit, .reset, .grant, .rotateKey, .disable, .enable, .edit, .grant]
        if self.model.count < 6 { choices += [.add, .add] }
        if self.model.count > 2 { choices.append(.disconnect) }
        return choices.randomElement(using: &self.random)!
    }

    /// The command for `operation`, its target, and what the target becomes if it takes effect (nil: removed).
    func command(_ operation: Operation) -> (arguments: [String], stdin: String?, target: String?, after: Expected?) {
        let ids = self.model.keys.sorted()
        let target = operation == .add ? "crash-\(self.nextID)" : ids.randomElement(using: &self.random)
        self.nextSecret += 1
        let clientID = "crash-cid-\(self.nextSecret)"
        let secret = "fake-crash-secret-\(self.nextSecret)"
        let current = target.flatMap { self.model[$0] }
        switch operation {
        case .add:
            self.nextID += 1
            self.standIn.register(clientID: clientID, clientSecret: secret, api: .v2)
            return (
                [
                    "add", target!, "--provider", "personio-v2", "--client-id", clientID, "--api-base-url",
                    self.standIn.baseURL, "--allow-uid", "0", "--secret-stdin",
                ],
                secret + "\n",
                target,
                Expected(revision: 1, state: .active, uids: [0], rules: 0)
            )
        case .edit, .reset:
            self.standIn.register(clientID: clientID, clientSecret: secret, api: .v2)
            var after = current!
            after.revision += 1
            if operation == .reset { after.state = .active }
            let verb = operation == .edit ? ["edit", target!, "--new-secret"] : ["reset", target!]
            return (verb + ["--client-id", clientID, "--secret-stdin"], secret + "\n", target, after)
        case .grant:
            let uid = UInt32(10_000 + self.nextSecret)
            var after = current!
            after.uids.insert(uid)
            after.rules += 1
            return (
                ["grant", target!, "--allow-uid", String(uid), "--rule", "uid=\(uid + 1),proxy=GET /v2/persons*"],
                nil,
                target,
                after
            )
        case .disable, .enable:
            var after = current!
            after.state = operation == .disable ? .disabled : .active
            return (
                operation == .disable ? ["disable", target!, "--reason", "crash"] : ["enable", target!], nil, target,
                after
            )
        case .disconnect:
            return (["disconnect", target!, "--yes"], nil, target, nil)
        case .rotateKey:
            return (["rotate-key"], nil, nil, nil)
        }
    }

    /// Runs `operation` to its acknowledgement and takes the answer into the model.
    func acknowledged(_ operation: Operation) throws {
        let (arguments, stdin, target, after) = self.command(operation)
        let result = try self.daemon.ctl(arguments + ["--json"], stdin: stdin)
        guard result.status == 0 else {
            throw TestSupportError("\(arguments) failed:\n\(result)\n\(self.daemon.log().suffix(2000))")
        }
        self.acknowledgedOperations += 1
        self.take(operation, target: target, after: after, output: result.stdout)
    }

    func take(_ operation: Operation, target: String?, after: Expected?, output: String) {
        guard let target else { return }
        if operation == .disconnect {
            self.model[target] = nil
        } else if let view = try? VaultJSON.decoder().decode(ConnectionView.self, from: Data(output.utf8)) {
            self.model[target] = Expected(view)
        } else {
            self.model[target] = after
        }
    }

    // MARK: - The crash

    /// How a round's kill is timed.
    enum Mode: String {
        /// A random delay after the client starts.
        case random
        /// The shim pauses the daemon in the first WAL write after the client starts: inside a commit.
        case walWrite
        /// The shim pauses the daemon in the first WAL fsync after the client starts (of the WAL's header, or of the
        /// commit's frames, or before a checkpoint).
        case walSync
        /// rotate-key stopped while its staged key file is synced, before the database commit.
        case phase1
        /// rotate-key stopped at the rename of its staged key file, after the database commit.
        case phase2
    }

    func crash(round: Int) throws {
        // Every fifth round, and the first two, stop rotate-key inside one of its phases; the others kill a random
        // operation at a random moment or paused inside its commit.
        let mode: Mode =
            round % 5 == 0
            ? .phase1
            : round % 5 == 1 ? .phase2 : [.random, .random, .walWrite, .walSync].randomElement(using: &self.random)!
        let operation = mode == .phase1 || mode == .phase2 ? Operation.rotateKey : self.pick()
        let (arguments, stdin, target, after) = self.command(operation)
        let mark = try self.auditRows(after: 0).map(\.seq).max() ?? 0
        let keyName = (self.daemon.keyFile as NSString).lastPathComponent + ".new"
        let walName = (self.daemon.databasePath as NSString).lastPathComponent + "-wal"
        switch mode {
        case .random: break
        case .walWrite: try self.daemon.control.set(["pause write \(walName)"])
        case .walSync: try self.daemon.control.set(["pause fsync \(walName)"])
        case .phase1: try self.daemon.control.set(["pause fsync \(keyName)"])
        case .phase2: try self.daemon.control.set(["pause rename \(keyName)"])
        }
        let client = try ChildProcess(
            Binaries.control,
            arguments + ["--json"],
            environment: ProcessInfo.processInfo.environment.merging([
                "CONNVAULT_ADMIN_SOCKET": self.daemon.adminSocket, "CONNVAULT_APP_SOCKET": self.daemon.appSocket,
            ]) { _, new in new },
            directory: self.directory.path,
            standardInput: stdin.map { .bytes(Array($0.utf8)) } ?? .null,
            standardOutput: .capture,
            standardError: .capture
        )
        var paused = false
        if mode == .random {
            usleep(UInt32.random(in: 0...40_000, using: &self.random))
        } else {
            // Until the daemon is paused, or the client is done without a write (an operation already in effect).
            let deadline = ContinuousClock.now + .seconds(20)
            while self.daemon.control.paused == nil && ContinuousClock.now < deadline && client.isRunning {
                usleep(2_000)
            }
            paused = self.daemon.control.paused != nil
            if (mode == .phase1 || mode == .phase2) && !paused {
                throw TestSupportError(
                    "round \(round): rotate-key never reached \(mode):\n\(client.standardError())\n\(self.daemon.log().suffix(2000))"
                )
            }
        }
        self.daemon.stop(signal: SIGKILL)
        try self.daemon.control.clear()
        let termination = client.waitForExit(timeout: .seconds(20))
        let output = client.standardOutput()
        let acknowledged = termination.status == 0 && !termination.signaled
        let point: KillPoint =
            switch mode {
            case .phase1: .rotationPhase1
            case .phase2: .rotationPhase2
            case .walWrite where paused: .walWrite
            case .walSync where paused: .walSync
            default: acknowledged ? .afterAcknowledgement : .beforeOrDuring
            }
        // An operation that changes something writes, so it cannot have been acknowledged while the daemon was paused
        // in a write (one already in effect writes nothing, and a pause may then be a background commit's).
        let changes = target.map { self.model[$0] != after } ?? true
        #expect(
            !(paused && acknowledged && changes),
            "round \(round): \(operation.rawValue) acknowledged while paused in \(mode)"
        )
        self.kills["\(operation.rawValue) \(point.short)", default: 0] += 1
        self.kills[point.rawValue, default: 0] += 1
        // The files as the crash left them.
        let integrity = try FaultInjectionEndToEndTests.runAsync { [path = self.daemon.databasePath] in
            try await StoreCheck.integrity(of: path)
        }
        #expect(integrity == "ok", "round \(round): integrity_check after the crash")
        try self.daemon.start()
        // Settle the interrupted operation: acknowledged, it must be there; otherwise wholly there or wholly not,
        // with its audit row or without.
        let observed = try self.observed()
        let rows = try self.auditRows(after: mark).map { "\($0.action) \($0.connection ?? "-")" }
        let row = "\(Self.action(operation)) \(target ?? "-")"
        if point == .afterAcknowledgement {
            self.acknowledgedOperations += 1
            #expect(rows == (changes ? [row] : []), "round \(round): audit rows of the acknowledged \(row)")
            self.take(operation, target: target, after: after, output: output)
        } else if operation == .rotateKey {
            let expected: [[String]] =
                mode == .phase1 || point == .walWrite ? [[]] : mode == .phase2 ? [[row]] : [[], [row]]
            #expect(expected.contains(rows), "round \(round): rotate-key killed at \(point.short): rows \(rows)")
            if rows == [row] { self.applied[operation.rawValue, default: 0] += 1 }
        } else if let target {
            let applied = observed[target] != self.model[target]
            // Paused inside its commit's WAL write (or behind another commit paused there), it cannot be applied.
            #expect(!(point == .walWrite && applied), "round \(round): \(row) applied though killed inside its commit")
            #expect(
                rows == (applied ? [row] : []),
                "round \(round): \(row) \(applied ? "applied" : "not applied") but audit rows \(rows)"
            )
            let before = self.model[target]
            let now = observed[target]
            #expect(
                now == before || now == after,
                "round \(round): \(operation.rawValue) of \(target) half done: before \(before.map { "\($0)" } ?? "none"), after \(after.map { "\($0)" } ?? "none"), found \(now.map { "\($0)" } ?? "none")"
            )
            if now != before {
                self.applied[operation.rawValue, default: 0] += 1
                self.model[target] = now
            }
        }
    }

    /// The audit action of `operation`.
    static func action(_ operation: Operation) -> String {
        switch operation {
        case .add: "connection.create"
        case .grant: "connection.grants"
        case .rotateKey: "key.rotate"
        default: "connection.\(operation.rawValue)"
        }
    }

    /// Audit rows after `seq`, without the broker's token rows (issued, revoked), which it writes on its own.
    func auditRows(after seq: Int64) throws -> [AuditEntry] {
        try self.daemon.ctlJSON(AuditList.self, ["audit"]).entries.filter {
            $0.seq > seq && !$0.action.hasPrefix("token.") && !$0.action.hasPrefix("proxy.")
        }
    }

    // MARK: - The checks after a restart

    func observed() throws -> [String: Expected] {
        let list = try self.daemon.ctlJSON(ConnectionList.self, ["list"])
        return Dictionary(uniqueKeysWithValues: list.connections.map { ($0.id, Expected($0)) })
    }

    func check(round: Int) throws {
        let observed = try self.observed()
        #expect(observed == self.model, "round \(round): the vault differs from what was acknowledged")
        self.model = observed
        // Every active connection decrypts to a pair the stand-in accepts (fresh after the restart).
        for (id, expected) in observed.sorted(by: { $0.key < $1.key }) where expected.state == .active {
            let token = try self.daemon.ctl(["token", id])
            #expect(token.status == 0, "round \(round): \(id) does not decrypt to its credentials: \(token)")
        }
        let rotated = try self.daemon.ctl(["rotate-key"])
        #expect(rotated.status == 0, "round \(round): a data key or secret does not decrypt: \(rotated)")
        let chain = try self.daemon.ctlJSON(AuditVerification.self, ["audit", "--verify"])
        #expect(chain.intact, "round \(round): \(chain)")
        #expect(
            !FileManager.default.fileExists(atPath: self.daemon.keyFile + ".new"),
            "round \(round): a staged key file is left behind"
        )
    }
}
