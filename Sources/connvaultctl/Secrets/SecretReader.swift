import VaultAPI

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One value to read: which secret field it fills, what to call it, and whether the prompt may echo it.
struct SecretRequest: Equatable {
    var field: SecretField
    var label: String
    var echo: Bool

    static let clientID = SecretRequest(field: .clientID, label: "client id", echo: true)
    static let clientSecret = SecretRequest(field: .clientSecret, label: "client secret", echo: false)
    static let recruitingKey = SecretRequest(field: .recruitingToken, label: "recruiting key", echo: false)
    static let webhookToken = SecretRequest(field: .webhookToken, label: "webhook token", echo: false)

    /// The provider's main secret: the client secret, or the recruiting key.
    static func primary(for provider: Provider) -> SecretRequest {
        provider == .personioRecruiting ? .recruitingKey : .clientSecret
    }
}

/// Where secrets are read from.
enum SecretSource: Equatable {
    /// A no-echo prompt on the terminal (standard input).
    case prompt
    /// Standard input, one line per value.
    case standardInput
    /// A file, one line per value.
    case file(String)

    /// The source the options ask for.
    ///
    /// - Throws: `CLIError.usage` when neither option is given and standard input is not a terminal.
    static func choose(_ options: SecretOptions, standardInputIsTerminal: Bool) throws -> SecretSource {
        if options.secretStdin { return .standardInput }
        if let file = options.secretFile { return .file(file) }
        if standardInputIsTerminal { return .prompt }
        throw CLIError.usage(
            "standard input is not a terminal, so the secret cannot be prompted for; "
                + "use --secret-stdin or --secret-file"
        )
    }
}

/// Reads secrets in the order asked, never echoing them and never putting them in a `String`.
struct SecretReader {
    /// The largest secret file accepted.
    static let maximumFileBytes = 64 * 1024

    let source: SecretSource

    init(source: SecretSource) {
        self.source = source
    }

    init(options: SecretOptions) throws {
        self.source = try SecretSource.choose(options, standardInputIsTerminal: TerminalPrompt.standardInputIsTerminal)
    }

    /// Reads one value per request, in order.
    ///
    /// - Throws: `CLIError.usage` for a missing or empty value, an unreadable or unsafe file.
    func read(_ requests: [SecretRequest]) throws -> [SecretField: SecretInput] {
        guard !requests.isEmpty else { return [:] }
        switch self.source {
        case .prompt:
            var values: [SecretField: SecretInput] = [:]
            for request in requests {
                let prompt = Self.capitalized(request.label) + ": "
                guard let line = try TerminalPrompt.readLine(prompt: prompt, echo: request.echo) else {
                    throw CLIError.usage("no \(request.label) entered (end of input)")
                }
                values[request.field] = try Self.value(line, for: request)
            }
            return values
        case .standardInput:
            var values: [SecretField: SecretInput] = [:]
            for (index, request) in requests.enumerated() {
                guard let line = try TerminalPrompt.readLine(from: STDIN_FILENO) else {
                    throw Self.missingLine(index: index, requests: requests, where: "on standard input")
                }
                values[request.field] = try Self.value(line, for: request)
            }
            return values
        case .file(let path):
            return try Self.readFile(path, requests: requests)
        }
    }

    // MARK: - Files

    private static func readFile(_ path: String, requests: [SecretRequest]) throws -> [SecretField: SecretInput] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw CLIError.usage("cannot open the secret file \(path): \(String(cString: strerror(errno)))")
        }
        defer { Glibc.close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            throw CLIError.usage("cannot inspect the secret file \(path): \(String(cString: strerror(errno)))")
        }
        try Self.checkPermissions(path: path, mode: info.st_mode)

        var contents: [UInt8] = []
        contents.reserveCapacity(Self.maximumFileBytes + 1)
        defer { SecretMemory.zero(&contents) }
        var chunk = [UInt8](repeating: 0, count: 4096)
        defer { SecretMemory.zero(&chunk) }
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR { continue }
                throw CLIError.usage("cannot read the secret file \(path): \(String(cString: strerror(errno)))")
            }
            guard contents.count + count <= Self.maximumFileBytes else {
                throw CLIError.usage("the secret file \(path) is larger than \(Self.maximumFileBytes) bytes")
            }
            contents.append(contentsOf: chunk[0..<count])
        }

        var values: [SecretField: SecretInput] = [:]
        var start = 0
        for (index, request) in requests.enumerated() {
            guard start < contents.count else {
                throw Self.missingLine(index: index, requests: requests, where: "in \(path)")
            }
            let newline = contents[start...].firstIndex(of: UInt8(ascii: "\n")) ?? contents.count
            var end = newline
            if end > start && contents[end - 1] == UInt8(ascii: "\r") { end -= 1 }
            values[request.field] = try Self.value(Array(contents[start..<end]), for: request)
            start = newline + 1
        }
        return values
    }

    /// Refuses a secret file other users can read; warns when its group can.
    static func checkPermissions(path: String, mode: mode_t) throws {
        // Only regular files: a pipe such as <(pass show …) is private to this process already.
        guard mode & S_IFMT == S_IFREG else { return }
        let permissions = String(mode & 0o777, radix: 8)
        if mode & 0o004 != 0 {
            throw CLIError.usage(
                "the secret file \(path) is readable by other users (mode \(permissions)); run chmod 600 \(path)"
            )
        }
        if mode & 0o040 != 0 {
            Console.warning(
                "the secret file \(path) is readable by its group (mode \(permissions)); consider chmod 600"
            )
        }
    }

    // MARK: - Values

    /// Wraps a line as a secret input, refusing an empty one. `line` is moved into the `SecretInput`, which zeroes it
    /// when released.
    private static func value(_ line: consuming [UInt8], for request: SecretRequest) throws -> SecretInput {
        if line.isEmpty {
            throw CLIError.usage("the \(request.label) is empty")
        }
        return SecretInput(bytes: line)
    }

    private static func missingLine(index: Int, requests: [SecretRequest], where place: String) -> CLIError {
        let expected = requests.map(\.label).joined(separator: ", ")
        return CLIError.usage(
            "expected \(requests.count) line\(requests.count == 1 ? "" : "s") \(place) (\(expected)) but found \(index)"
        )
    }

    private static func capitalized(_ label: String) -> String {
        label.prefix(1).uppercased() + label.dropFirst()
    }
}
