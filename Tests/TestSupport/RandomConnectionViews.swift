import VaultAPI

/// Connection views of every kind, for comparing the list's hand-written JSON with `JSONEncoder`'s: every provider
/// and state, each optional member set and unset, and strings with quotes, backslashes, slashes, every control
/// character, DEL, non-ASCII (two-, three- and four-byte UTF-8, combining marks, U+2028) and the empty string.
public struct RandomConnectionViews {
    public var generator: SeededGenerator

    public init(seed: UInt64) { self.generator = SeededGenerator(seed: seed) }

    /// Characters the strings are drawn from, the awkward ones often.
    public static let pieces: [String] =
        [
            "a", "Z", "0", "acme", "-", "_", ".", " ", "/", "https://api.personio.de/v2", "\"", "\\", "\\u0041",
            "\u{7F}",
            "é", "e\u{301}", "ß", "€", "日本", "𝄞", "🙂", "\u{2028}", "\u{FEFF}", "CANARY-not-a-secret", "{", "}", "[",
            ":",
            ",",
        ]
        + (0..<0x20).map { String(Character(Unicode.Scalar(UInt8($0)))) }

    public mutating func string(maxPieces: Int = 6) -> String {
        let count = Int.random(in: 0...maxPieces, using: &self.generator)
        var text = ""
        for _ in 0..<count { text += Self.pieces.randomElement(using: &self.generator)! }
        return text
    }

    mutating func maybe<Value>(_ make: (inout Self) -> Value) -> Value? {
        Bool.random(using: &self.generator) ? make(&self) : nil
    }

    mutating func strings(max: Int = 3) -> [String] {
        (0..<Int.random(in: 0...max, using: &self.generator)).map { _ in self.string() }
    }

    mutating func integer() -> Int {
        switch Int.random(in: 0..<5, using: &self.generator) {
        case 0: 0
        case 1: Int.min
        case 2: Int.max
        case 3: -Int.random(in: 1...1_000_000, using: &self.generator)
        default: Int.random(in: 1...Int.max, using: &self.generator)
        }
    }

    mutating func uid() -> UInt32 {
        Bool.random(using: &self.generator) ? UInt32.random(in: 0...UInt32.max, using: &self.generator) : UInt32.max
    }

    public mutating func settings() -> ConnectionSettings {
        ConnectionSettings(
            apiBaseURL: self.maybe { $0.string() },
            appID: self.maybe { $0.string() },
            partnerID: self.maybe { $0.string() },
            scope: self.maybe { $0.string() },
            companyID: self.maybe { $0.string() },
            permissions: self.maybe { $0.strings() },
            proxyMaxBody: self.maybe { $0.integer() }
        )
    }

    public mutating func rule() -> GrantRule {
        GrantRule(
            uid: self.maybe { $0.uid() },
            group: self.maybe { $0.string() },
            unit: self.maybe { $0.string() },
            exe: self.maybe { $0.string() },
            exeSHA256: self.maybe { $0.string() },
            scope: self.maybe { $0.string() },
            proxy: self.maybe { $0.strings() },
            token: self.maybe { Bool.random(using: &$0.generator) },
            ratePerMinute: self.maybe { $0.integer() }
        )
    }

    public mutating func grants() -> Grants {
        Grants(
            uids: (0..<Int.random(in: 0...3, using: &self.generator)).map { _ in self.uid() },
            groups: self.strings(),
            units: self.strings(),
            rules: (0..<Int.random(in: 0...3, using: &self.generator)).map { _ in self.rule() }
        )
    }

    public mutating func secrets() -> [String: SecretFieldView] {
        var secrets: [String: SecretFieldView] = [:]
        for _ in 0..<Int.random(in: 0...4, using: &self.generator) {
            let name =
                Bool.random(using: &self.generator)
                ? SecretField.allCases.randomElement(using: &self.generator)!.rawValue : self.string()
            secrets[name] = SecretFieldView(
                set: Bool.random(using: &self.generator),
                fingerprint: self.string(),
                updatedAt: self.string()
            )
        }
        return secrets
    }

    public mutating func view() -> ConnectionView {
        ConnectionView(
            id: self.string(),
            provider: Provider.allCases.randomElement(using: &self.generator)!,
            state: ConnectionState.allCases.randomElement(using: &self.generator)!,
            revision: self.integer(),
            settings: self.settings(),
            secrets: self.secrets(),
            grants: self.grants(),
            createdAt: self.string(),
            updatedAt: self.string(),
            lastError: self.maybe { $0.string(maxPieces: 20) },
            disabledReason: self.maybe { $0.string() },
            tokensValidUntil: self.maybe { $0.string() },
            pendingRevocations: self.integer()
        )
    }

    public mutating func list(maxCount: Int = 8) -> ConnectionList {
        ConnectionList(connections: (0..<Int.random(in: 0...maxCount, using: &self.generator)).map { _ in self.view() })
    }
}
