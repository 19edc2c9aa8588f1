import VaultAPI

/// Takes the secret members out of a JSON request body before anything else reads it.
///
/// Foundation's `JSONDecoder` turns every string value it decodes into a Swift `String`, in heap memory that is
/// freed without being zeroed: a client secret decoded that way stays readable in the daemon's memory long after the
/// request. So the body is first walked by this small, strict scanner. Each secret member (a member named like a
/// ``SecretField`` of the top-level object, as `reset` sends them, or of its `secrets` object, as `create` and `edit`
/// send them) whose value is a string is unescaped straight into the ``SecretInput`` that will carry it, and its bytes
/// in the body, escapes and all, are overwritten with spaces before the rest goes to `JSONDecoder`. The member stays
/// in the body (unknown-field checks still see its name); ``SecretsInput`` takes the extracted value instead of what
/// the decoder finds there.
///
/// The scanner accepts only well-formed JSON (RFC 8259), so that it and `JSONDecoder` cannot disagree about where a
/// member begins; anything else is refused as invalid JSON without being decoded at all.
enum SecretFieldScanner {
    /// The deepest nesting accepted (objects and arrays); far above anything a request of this API needs.
    static let maximumDepth = 64

    /// The names of the secret members.
    private static let secretNames: [[UInt8]] = SecretField.allCases.map { Array($0.rawValue.utf8) }
    private static let secretsMember = Array("secrets".utf8)

    /// Extracts the secret members of `bytes`, overwriting them in place.
    ///
    /// - Parameter bytes: A request body, changed in place.
    /// - Returns: The values, by path (`client_secret` at the top level, `secrets.client_secret` inside `secrets`).
    /// - Throws: `DecodingError.dataCorrupted` when the body is not well-formed JSON, or names a secret twice.
    static func extract(_ bytes: UnsafeMutableRawBufferPointer) throws(DecodingError) -> [String: SecretInput] {
        var scanner = Scanner(bytes: bytes)
        var found: [String: SecretInput] = [:]
        scanner.skipWhitespace()
        if scanner.peek == UInt8(ascii: "{") {
            try scanner.object(depth: 1) { key, scanner throws(DecodingError) in
                if let field = Self.secretField(key), scanner.peek == UInt8(ascii: "\"") {
                    try Self.take(field, path: [], scanner: &scanner, into: &found)
                } else if key == Self.secretsMember, scanner.peek == UInt8(ascii: "{") {
                    try scanner.object(depth: 2) { key, scanner throws(DecodingError) in
                        if let field = Self.secretField(key), scanner.peek == UInt8(ascii: "\"") {
                            try Self.take(field, path: ["secrets"], scanner: &scanner, into: &found)
                        } else {
                            try scanner.value(depth: 2)
                        }
                    }
                } else {
                    try scanner.value(depth: 1)
                }
            }
        } else {
            try scanner.value(depth: 0)
        }
        scanner.skipWhitespace()
        guard scanner.isAtEnd else { throw Scanner.invalid(path: []) }
        return found
    }

    private static func secretField(_ key: [UInt8]) -> SecretField? {
        guard let index = Self.secretNames.firstIndex(of: key) else { return nil }
        return SecretField.allCases[index]
    }

    private static func take(
        _ field: SecretField,
        path: [String],
        scanner: inout Scanner,
        into found: inout [String: SecretInput]
    ) throws(DecodingError) {
        let key = (path + [field.rawValue]).joined(separator: ".")
        guard found[key] == nil else {
            throw Scanner.invalid(path: path + [field.rawValue], "is given twice")
        }
        found[key] = try scanner.secretString(path: path + [field.rawValue])
    }
}

/// A cursor over a JSON text.
private struct Scanner {
    let bytes: UnsafeMutableRawBufferPointer
    var position = 0

    init(bytes: UnsafeMutableRawBufferPointer) {
        self.bytes = bytes
    }

    var isAtEnd: Bool { self.position >= self.bytes.count }
    var peek: UInt8? { self.isAtEnd ? nil : self.bytes[self.position] }

    static func invalid(path: [String], _ problem: String = "is not valid JSON") -> DecodingError {
        DecodingError.dataCorrupted(
            DecodingError.Context(codingPath: path.map { AnyCodingKey(stringValue: $0) }, debugDescription: problem)
        )
    }

    mutating func skipWhitespace() {
        while let byte = self.peek, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 {
            self.position += 1
        }
    }

    mutating func expect(_ byte: UInt8) throws(DecodingError) {
        guard self.peek == byte else { throw Self.invalid(path: []) }
        self.position += 1
    }

    /// Any value, skipped.
    mutating func value(depth: Int) throws(DecodingError) {
        self.skipWhitespace()
        guard let byte = self.peek else { throw Self.invalid(path: []) }
        switch byte {
        case UInt8(ascii: "{"):
            try self.object(depth: depth + 1) { _, scanner throws(DecodingError) in try scanner.value(depth: depth + 1)
            }
        case UInt8(ascii: "["):
            try self.array(depth: depth + 1)
        case UInt8(ascii: "\""):
            _ = try self.skipString()
        case UInt8(ascii: "t"):
            try self.literal("true")
        case UInt8(ascii: "f"):
            try self.literal("false")
        case UInt8(ascii: "n"):
            try self.literal("null")
        default:
            try self.number()
        }
    }

    /// An object; `member` is called with each key (unescaped) and the cursor at its value, and must consume it.
    mutating func object(
        depth: Int,
        _ member: (_ key: [UInt8], _ scanner: inout Scanner) throws(DecodingError) -> Void
    ) throws(DecodingError) {
        guard depth <= SecretFieldScanner.maximumDepth else { throw Self.invalid(path: [], "is nested too deeply") }
        try self.expect(UInt8(ascii: "{"))
        self.skipWhitespace()
        if self.peek == UInt8(ascii: "}") {
            self.position += 1
            return
        }
        while true {
            self.skipWhitespace()
            guard self.peek == UInt8(ascii: "\"") else { throw Self.invalid(path: []) }
            var key: [UInt8] = []
            try self.walkString { key.append($0) }
            self.skipWhitespace()
            try self.expect(UInt8(ascii: ":"))
            self.skipWhitespace()
            try member(key, &self)
            self.skipWhitespace()
            if self.peek == UInt8(ascii: ",") {
                self.position += 1
                continue
            }
            try self.expect(UInt8(ascii: "}"))
            return
        }
    }

    mutating func array(depth: Int) throws(DecodingError) {
        guard depth <= SecretFieldScanner.maximumDepth else { throw Self.invalid(path: [], "is nested too deeply") }
        try self.expect(UInt8(ascii: "["))
        self.skipWhitespace()
        if self.peek == UInt8(ascii: "]") {
            self.position += 1
            return
        }
        while true {
            try self.value(depth: depth)
            self.skipWhitespace()
            if self.peek == UInt8(ascii: ",") {
                self.position += 1
                continue
            }
            try self.expect(UInt8(ascii: "]"))
            return
        }
    }

    mutating func literal(_ word: StaticString) throws(DecodingError) {
        let count = word.utf8CodeUnitCount
        guard self.bytes.count - self.position >= count else { throw Self.invalid(path: []) }
        for offset in 0..<count where self.bytes[self.position + offset] != word.utf8Start[offset] {
            throw Self.invalid(path: [])
        }
        self.position += count
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    mutating func number() throws(DecodingError) {
        func digits(_ scanner: inout Scanner) -> Int {
            var count = 0
            while let byte = scanner.peek, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) {
                scanner.position += 1
                count += 1
            }
            return count
        }
        if self.peek == UInt8(ascii: "-") { self.position += 1 }
        if self.peek == UInt8(ascii: "0") {
            self.position += 1
        } else if digits(&self) == 0 {
            throw Self.invalid(path: [])
        }
        if self.peek == UInt8(ascii: ".") {
            self.position += 1
            guard digits(&self) > 0 else { throw Self.invalid(path: []) }
        }
        if self.peek == UInt8(ascii: "e") || self.peek == UInt8(ascii: "E") {
            self.position += 1
            if self.peek == UInt8(ascii: "+") || self.peek == UInt8(ascii: "-") { self.position += 1 }
            guard digits(&self) > 0 else { throw Self.invalid(path: []) }
        }
    }

    /// A string at the cursor, checked and skipped.
    /// - Returns: The number of bytes it unescapes to.
    mutating func skipString() throws(DecodingError) -> Int {
        var length = 0
        try self.walkString { _ in length += 1 }
        return length
    }

    /// The secret string at the cursor, unescaped straight into the storage of a ``SecretInput``; its bytes in the
    /// body, quotes excepted, are overwritten with spaces.
    mutating func secretString(path: [String]) throws(DecodingError) -> SecretInput {
        let start = self.position
        let length = try self.skipString()
        let end = self.position
        self.position = start
        // Sized exactly, so that the array never grows (a reallocation would leave a copy behind).
        var value = [UInt8](repeating: 0, count: length)
        var index = 0
        value.withUnsafeMutableBufferPointer { buffer in
            // Checked by the first pass: the second cannot fail.
            try? self.walkString { byte in
                buffer[index] = byte
                index += 1
            }
        }
        precondition(self.position == end && index == length)
        // Keep the quotes: the body stays well-formed JSON, with a string of spaces where the secret was.
        for offset in (start + 1)..<(end - 1) { self.bytes[offset] = UInt8(ascii: " ") }
        return SecretInput(bytes: value)
    }

    /// Walks a string at the cursor, calling `emit` with each unescaped byte (UTF-8 for `\u` escapes).
    private mutating func walkString(_ emit: (UInt8) -> Void) throws(DecodingError) {
        try self.expect(UInt8(ascii: "\""))
        while true {
            guard let byte = self.peek else { throw Self.invalid(path: []) }
            self.position += 1
            switch byte {
            case UInt8(ascii: "\""):
                return
            case 0x00..<0x20:
                throw Self.invalid(path: [])
            case UInt8(ascii: "\\"):
                guard let escaped = self.peek else { throw Self.invalid(path: []) }
                self.position += 1
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): emit(escaped)
                case UInt8(ascii: "b"): emit(0x08)
                case UInt8(ascii: "f"): emit(0x0C)
                case UInt8(ascii: "n"): emit(0x0A)
                case UInt8(ascii: "r"): emit(0x0D)
                case UInt8(ascii: "t"): emit(0x09)
                case UInt8(ascii: "u"): try self.unicodeEscape(emit)
                default: throw Self.invalid(path: [])
                }
            default:
                emit(byte)
            }
        }
    }

    /// After `\u`: four hex digits, a surrogate pair as two escapes; emitted as UTF-8.
    private mutating func unicodeEscape(_ emit: (UInt8) -> Void) throws(DecodingError) {
        var scalar = try self.hex4()
        if (0xD800...0xDBFF).contains(scalar) {
            try self.expect(UInt8(ascii: "\\"))
            try self.expect(UInt8(ascii: "u"))
            let low = try self.hex4()
            guard (0xDC00...0xDFFF).contains(low) else { throw Self.invalid(path: []) }
            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
        } else if (0xDC00...0xDFFF).contains(scalar) {
            throw Self.invalid(path: [])
        }
        switch scalar {
        case 0..<0x80:
            emit(UInt8(scalar))
        case 0x80..<0x800:
            emit(UInt8(0xC0 | (scalar >> 6)))
            emit(UInt8(0x80 | (scalar & 0x3F)))
        case 0x800..<0x10000:
            emit(UInt8(0xE0 | (scalar >> 12)))
            emit(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            emit(UInt8(0x80 | (scalar & 0x3F)))
        default:
            emit(UInt8(0xF0 | (scalar >> 18)))
            emit(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
            emit(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            emit(UInt8(0x80 | (scalar & 0x3F)))
        }
    }

    private mutating func hex4() throws(DecodingError) -> UInt32 {
        guard self.bytes.count - self.position >= 4 else { throw Self.invalid(path: []) }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = self.bytes[self.position]
            self.position += 1
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw Self.invalid(path: [])
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }
}
