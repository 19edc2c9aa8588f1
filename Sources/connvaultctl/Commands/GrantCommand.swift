import ArgumentParser
import VaultAPI

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `connvaultctl grant ID …`: adds to (or with --replace, replaces) who may use a connection, and for what.
struct GrantCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grant",
        abstract: "Allow uids, groups, systemd units or rules to use a connection.",
        discussion: """
            Adds to the current grants unless --replace is given, which sets exactly the grants listed \
            (`grant ID --replace` with none removes them all). New rules go after the current ones; a caller \
            gets the first rule that matches it.

            --rule 'KEY=VALUE,KEY=VALUE,…' is one rule (repeatable). Who, all of which must hold: uid (a number \
            or a user name), group, unit, exe (an absolute path; the daemon resolves symlinks), exe_sha256. \
            What, narrowed: scope (personio-v2; words of the connection's own scope), proxy (METHOD /path, \
            repeatable inside a rule: proxy=GET /v2/persons,proxy=GET /v2/persons/*), token=true|false, \
            rate_per_minute=N. Values cannot contain a comma.

            --json-file FILE (- for standard input) reads a grants object {"uids", "groups", "units", "rules"}, \
            combined with the flags given.
            """
    )

    @Argument(help: "The connection id.")
    var id: String

    @OptionGroup var grants: GrantOptions

    @Option(
        name: .customLong("rule"),
        help: ArgumentHelp(
            "Grant a rule: 'unit=U,exe=PATH,scope=S,proxy=GET /v2/persons*,…' (repeatable).",
            valueName: "rule"
        )
    )
    var rules: [String] = []

    @Option(
        name: .customLong("json-file"),
        help: ArgumentHelp(
            "Read grants {uids, groups, units, rules} as JSON from a file, or - for standard input.",
            valueName: "file"
        ),
        completion: .file()
    )
    var jsonFile: String?

    @Flag(name: .customLong("replace"), help: "Replace the current grants instead of adding to them.")
    var replace = false

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if self.grants.isEmpty && self.rules.isEmpty && self.jsonFile == nil && !self.replace {
            throw ValidationError(
                "nothing to grant: give --allow-uid, --allow-group, --allow-unit, --rule or --json-file"
            )
        }
    }

    func run() async throws {
        let requested = try self.requestedGrants()
        let client = self.global.adminClient
        var grants = requested
        if !self.replace {
            grants = try client.connection(self.id).grants.merging(requested)
        }
        let view = try client.setGrants(self.id, grants)
        try Output.connection(view, global: self.global)
    }

    /// What the flags and the JSON file ask for, together.
    func requestedGrants() throws(CLIError) -> Grants {
        var grants = Grants()
        if let path = self.jsonFile { grants = try GrantsFile.read(path) }
        var flags = self.grants.grants
        for rule in self.rules { flags.rules.append(try GrantRuleSpelling.parse(rule)) }
        return grants.merging(flags)
    }
}

/// `grant --json-file`: a whole grants object, for scripts.
enum GrantsFile {
    /// Larger than any grants the daemon accepts (its request bodies are at most 64 KiB).
    static let maximumBytes = 1 << 20

    static func read(_ path: String) throws(CLIError) -> Grants {
        let name = path == "-" ? "standard input" : "'\(TableFormatter.sanitize(path))'"
        let bytes = try Self.contents(path, name: name)
        return try Self.decode(bytes, name: name)
    }

    static func decode(_ bytes: [UInt8], name: String) throws(CLIError) -> Grants {
        do {
            return try VaultJSON.decoder().decode(Grants.self, from: Data(bytes))
        } catch let error as UnknownFieldError {
            throw CLIError.usage("--json-file \(name): \(TableFormatter.sanitize(error.description))")
        } catch {
            throw CLIError.usage(
                "--json-file \(name): not a grants object {\"uids\": [...], \"groups\": [...], \"units\": [...], \"rules\": [...]}"
            )
        }
    }

    static func contents(_ path: String, name: String) throws(CLIError) -> [UInt8] {
        let descriptor = path == "-" ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw CLIError.usage("--json-file \(name): cannot open: \(String(cString: strerror(errno)))")
        }
        defer { if descriptor != STDIN_FILENO { close(descriptor) } }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw CLIError.usage("--json-file \(name): cannot read: \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            bytes += chunk[..<count]
            if bytes.count > Self.maximumBytes {
                throw CLIError.usage("--json-file \(name): larger than \(Self.maximumBytes) bytes")
            }
        }
        return bytes
    }
}
