import Foundation
import TestSupport
import Testing

/// The libFuzzer targets' committed seeds (Fuzz/Corpus/TARGET), replayed through the same targets in the plain
/// debug build of `connvault-fuzz` (no instrumentation, no libFuzzer): every seed, the regression seeds of the
/// crashes fuzzing found included, must pass its target's invariants. `make test` also runs every target briefly
/// under libFuzzer and AddressSanitizer (Fuzz/run.sh --short).
@Suite("Fuzz corpus replay", .offCooperativePool, .timeLimit(.minutes(5)))
struct FuzzCorpusTests {
    static let targets = [
        "http-admin", "http-app", "json-requests", "store-records", "proc-parsers", "proxy-path", "upstream-answer",
        "cli-args",
    ]

    static var root: URL {
        // Tests/EndToEndTests/FuzzCorpusTests.swift → the package root.
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    static var binary: String { "\(Binaries.directory)/connvault-fuzz" }

    @Test("every committed seed passes its target", arguments: Self.targets)
    func replay(target: String) throws {
        let corpus = Self.root.appendingPathComponent("Fuzz/Corpus/\(target)").path
        let seeds = try FileManager.default.contentsOfDirectory(atPath: corpus).filter { !$0.hasPrefix(".") }
        #expect(!seeds.isEmpty, "no seeds in \(corpus)")
        let result = try Command.run(Self.binary, [target, corpus], timeout: .seconds(120))
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.contains("\(target): replayed \(seeds.count) inputs"), "\(result)")
    }

    @Test("an input that breaks an invariant fails the replay")
    func brokenInvariantFails() throws {
        // A cgroup line naming a unit the parser must return is fine; an unknown target name is a usage error, and a
        // missing file fails: the replay never passes silently.
        let missing = Self.root.appendingPathComponent("Fuzz/Corpus/no-such-target/none").path
        // These replays abort on purpose. Without the Swift runtime's backtracer, which a crashing process starts
        // through clone(): under ThreadSanitizer that clone from a signal handler fails a CHECK of the sanitizer's
        // own runtime, a report about nothing in the code.
        let quiet = ["SWIFT_BACKTRACE": "enable=no"]
        let unknown = try Command.run(
            Self.binary,
            ["no-such-target", missing],
            environment: quiet,
            timeout: .seconds(60)
        )
        #expect(unknown.status != 0)
        #expect(unknown.stderr.contains("unknown fuzz target"))
        let unreadable = try Command.run(
            Self.binary,
            ["proc-parsers", missing],
            environment: quiet,
            timeout: .seconds(60)
        )
        #expect(unreadable.status != 0)
        #expect(unreadable.stderr.contains("cannot read"))
    }

    @Test("the seeds hold canaries, never a real-looking secret")
    func seedsHoldCanariesOnly() throws {
        for target in Self.targets {
            let corpus = Self.root.appendingPathComponent("Fuzz/Corpus/\(target)")
            for name in try FileManager.default.contentsOfDirectory(atPath: corpus.path) {
                let text = String(decoding: try Data(contentsOf: corpus.appendingPathComponent(name)), as: UTF8.self)
                for member in ["client_secret", "recruiting_token", "webhook_token"] {
                    for match in text.matches(of: try Regex("\"\(member)\":\"([^\"]*)\"")) {
                        let value = match.output[1].substring.map(String.init) ?? ""
                        #expect(value.hasPrefix("CANARY-"), "\(target)/\(name): \(member) is not a canary")
                    }
                }
            }
        }
    }
}
