import ArgumentParser
import Foundation
import TestSupport
import Testing
import VaultAPI

@testable import connvaultctl

#if canImport(Glibc)
import Glibc
#endif

@Suite struct SecretReaderTests {
    /// Writes `contents` to a fresh file with `mode`; returns its path.
    static func file(_ contents: String, mode: mode_t = 0o600) throws -> String {
        var template = Array("/tmp/cv-secret-XXXXXX".utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard descriptor >= 0 else { throw TestServerError("mkstemp failed") }
        let path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        _ = Array(contents.utf8).withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        fchmod(descriptor, mode)
        close(descriptor)
        return path
    }

    static func bytes(_ input: SecretInput?) -> String? {
        input.map { $0.withUnsafeBytes { String(decoding: $0, as: UTF8.self) } }
    }

    @Test("a file gives one value per line, in order, newlines (and CRs) stripped")
    func fileLines() throws {
        let path = try Self.file("fake-id-1\nfake-secret-1\r\nfake-hook-1\n")
        defer { unlink(path) }
        let values = try SecretReader(source: .file(path)).read([.clientID, .clientSecret, .webhookToken])
        #expect(Self.bytes(values[.clientID]) == "fake-id-1")
        #expect(Self.bytes(values[.clientSecret]) == "fake-secret-1")
        #expect(Self.bytes(values[.webhookToken]) == "fake-hook-1")
    }

    @Test("the last line needs no newline")
    func lastLineWithoutNewline() throws {
        let path = try Self.file("fake-secret-1")
        defer { unlink(path) }
        let values = try SecretReader(source: .file(path)).read([.clientSecret])
        #expect(Self.bytes(values[.clientSecret]) == "fake-secret-1")
    }

    static let badFiles: [(String, String, mode_t, String)] = [
        ("empty secret", "\n", 0o600, "the client secret is empty"),
        ("missing line", "fake-secret-1\n", 0o600, "expected 2 lines"),
        ("empty file", "", 0o600, "expected 2 lines"),
        ("world-readable", "fake-secret-1\nfake-hook-1\n", 0o644, "readable by other users"),
    ]

    @Test("bad secret files are usage errors that never show the secret", arguments: badFiles)
    func badFile(_ name: String, _ contents: String, _ mode: mode_t, _ message: String) throws {
        let path = try Self.file(contents, mode: mode)
        defer { unlink(path) }
        let error = try #require(throws: CLIError.self, "\(name)") {
            try SecretReader(source: .file(path)).read([.clientSecret, .webhookToken])
        }
        #expect(error.status == .usage)
        #expect(error.message.contains(message), "\(error.message)")
        #expect(!error.message.contains("fake-secret-1"))
    }

    @Test("a missing file is a usage error naming it")
    func missingFile() throws {
        let error = try #require(throws: CLIError.self) {
            try SecretReader(source: .file("/tmp/cv-no-such-secret-file")).read([.clientSecret])
        }
        #expect(error.status == .usage)
        #expect(error.message.contains("/tmp/cv-no-such-secret-file"))
    }

    static let sources: [(Bool, String?, Bool, SecretSource?)] = [
        (true, nil, false, .standardInput),
        (true, nil, true, .standardInput),
        (false, "/tmp/f", false, .file("/tmp/f")),
        (false, nil, true, .prompt),
        (false, nil, false, nil),
    ]

    @Test("the source follows the flags; no flag and no terminal is a usage error", arguments: sources)
    func sourceChoice(_ stdin: Bool, _ file: String?, _ terminal: Bool, _ expected: SecretSource?) throws {
        var arguments = stdin ? ["--secret-stdin"] : []
        if let file { arguments += ["--secret-file", file] }
        let options = try SecretOptions.parse(arguments)
        if let expected {
            #expect(try SecretSource.choose(options, standardInputIsTerminal: terminal) == expected)
        } else {
            let error = try #require(throws: CLIError.self) {
                try SecretSource.choose(options, standardInputIsTerminal: terminal)
            }
            #expect(error.status == .usage)
            #expect(error.message.contains("--secret-stdin") && error.message.contains("--secret-file"))
        }
    }

    static let orders: [(Provider, Bool, Bool, [SecretField])] = [
        (.personioV2, false, false, [.clientID, .clientSecret]),
        (.personioV2, true, false, [.clientSecret]),
        (.personioV1, false, true, [.clientID, .clientSecret, .webhookToken]),
        (.personioV1, true, true, [.clientSecret, .webhookToken]),
        (.personioRecruiting, false, false, [.recruitingToken]),
        (.personioRecruiting, false, true, [.recruitingToken, .webhookToken]),
    ]

    @Test("add reads the values in the documented order", arguments: orders)
    func addOrder(_ provider: Provider, _ clientIDGiven: Bool, _ webhook: Bool, _ fields: [SecretField]) {
        let requests = AddCommand.secretRequests(provider: provider, clientIDGiven: clientIDGiven, webhook: webhook)
        #expect(requests.map(\.field) == fields)
        #expect(requests.allSatisfy { $0.echo == ($0.field == .clientID) })
    }
}
