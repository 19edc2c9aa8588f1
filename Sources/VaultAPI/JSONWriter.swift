/// A JSON writer into a byte array that prints exactly what `VaultJSON.encoder()` (Foundation's `JSONEncoder` with
/// `.sortedKeys` and `.withoutEscapingSlashes`) prints for the same value, without building the document as a tree
/// first: `GET /v1/connections` of 100,000 connections is 55 MB, and the encoder's tree of it some 600 MiB
/// (BENCHMARKS.md, "Scale").
///
/// The types that write themselves (``JSONWritable``) spell out their members in sorted order; a test compares
/// their bytes with `JSONEncoder`'s for generated values of every kind (`JSONWriterTests`).
///
/// Strings are escaped as `JSONEncoder` escapes them: `"` and `\` with a backslash, U+0008, U+0009, U+000A, U+000C
/// and U+000D as `\b`, `\t`, `\n`, `\f`, `\r`, every other character below U+0020 as `\u00xx` (lower-case hex);
/// everything else, `/`, U+007F and all non-ASCII among it, as its UTF-8 bytes.
public struct JSONWriter: Sendable {
    public var bytes: [UInt8]

    public init(reservingCapacity capacity: Int = 0) {
        self.bytes = []
        self.bytes.reserveCapacity(capacity)
    }

    /// Bytes written as they are: punctuation and member names, which the callers spell escaped already.
    @inlinable
    public mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { self.bytes.append(contentsOf: $0) }
    }

    /// The name of an object member and its colon, after a comma unless it is the object's first.
    @inlinable
    public mutating func key(_ name: StaticString, first: inout Bool) {
        if first {
            first = false
        } else {
            self.bytes.append(UInt8(ascii: ","))
        }
        self.raw(name)
        self.bytes.append(UInt8(ascii: ":"))
    }

    public mutating func null() { self.raw("null") }

    public mutating func bool(_ value: Bool) { self.raw(value ? "true" : "false") }

    /// An integer in decimal, as `JSONEncoder` prints every integer type.
    public mutating func integer<Value: FixedWidthInteger>(_ value: Value) {
        if value < 0 { self.bytes.append(UInt8(ascii: "-")) }
        var magnitude = UInt64(value.magnitude)
        // 20 digits hold UInt64.max.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var start = 20
            repeat {
                start -= 1
                digits[start] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            self.bytes.append(contentsOf: UnsafeBufferPointer(rebasing: digits[start..<20]))
        }
    }

    /// `value` as a JSON string.
    public mutating func string(_ value: String) {
        var value = value
        value.withUTF8 { self.string(utf8: $0) }
    }

    /// A JSON string of valid UTF-8 `text`.
    public mutating func string(utf8 text: UnsafeBufferPointer<UInt8>) {
        self.bytes.append(UInt8(ascii: "\""))
        var runStart = 0
        for index in 0..<text.count {
            let byte = text[index]
            guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
            if runStart < index {
                self.bytes.append(contentsOf: UnsafeBufferPointer(rebasing: text[runStart..<index]))
            }
            runStart = index + 1
            switch byte {
            case UInt8(ascii: "\""): self.raw(#"\""#)
            case UInt8(ascii: "\\"): self.raw(#"\\"#)
            case 0x08: self.raw(#"\b"#)
            case 0x09: self.raw(#"\t"#)
            case 0x0A: self.raw(#"\n"#)
            case 0x0C: self.raw(#"\f"#)
            case 0x0D: self.raw(#"\r"#)
            default:
                self.raw(#"\u00"#)
                self.bytes.append(Self.hexDigits[Int(byte >> 4)])
                self.bytes.append(Self.hexDigits[Int(byte & 0x0F)])
            }
        }
        if runStart < text.count {
            self.bytes.append(contentsOf: UnsafeBufferPointer(rebasing: text[runStart..<text.count]))
        }
        self.bytes.append(UInt8(ascii: "\""))
    }

    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// A string member that is always present: `null` when nil (as `encode(_:forKey:)` of an optional writes it).
    public mutating func stringOrNull(_ value: String?) {
        if let value { self.string(value) } else { self.null() }
    }

    /// `[a,b,…]` of `values`, each written by `element`.
    public mutating func array<Element>(_ values: [Element], _ element: (inout JSONWriter, Element) -> Void) {
        self.bytes.append(UInt8(ascii: "["))
        var first = true
        for value in values {
            if first { first = false } else { self.bytes.append(UInt8(ascii: ",")) }
            element(&self, value)
        }
        self.bytes.append(UInt8(ascii: "]"))
    }

    public mutating func stringArray(_ values: [String]) {
        self.array(values) { writer, value in writer.string(value) }
    }

    public mutating func value(_ value: some JSONWritable) { value.writeJSON(to: &self) }
}

/// A value that writes itself with ``JSONWriter`` into exactly the bytes `VaultJSON.encoder()` makes of it.
public protocol JSONWritable {
    func writeJSON(to writer: inout JSONWriter)
}

extension JSONWritable {
    /// This value's compact JSON, as `VaultJSON.encoder().encode(self)` would print it.
    public var jsonBytes: [UInt8] {
        var writer = JSONWriter()
        writer.value(self)
        return writer.bytes
    }
}

// MARK: - The views of `GET /v1/connections` and `GET /v1/connections/{id}`

extension ConnectionList: JSONWritable {
    public func writeJSON(to writer: inout JSONWriter) {
        writer.raw(#"{"connections":"#)
        writer.array(self.connections) { writer, view in view.writeJSON(to: &writer) }
        writer.raw("}")
    }
}

extension ConnectionView: JSONWritable {
    /// Every member always present (the custom `encode(to:)`: the optionals as `null`), in sorted order.
    public func writeJSON(to writer: inout JSONWriter) {
        writer.raw(#"{"created_at":"#)
        writer.string(self.createdAt)
        writer.raw(#","disabled_reason":"#)
        writer.stringOrNull(self.disabledReason)
        writer.raw(#","grants":"#)
        self.grants.writeJSON(to: &writer)
        writer.raw(#","id":"#)
        writer.string(self.id)
        writer.raw(#","last_error":"#)
        writer.stringOrNull(self.lastError)
        writer.raw(#","pending_revocations":"#)
        writer.integer(self.pendingRevocations)
        writer.raw(#","provider":"#)
        writer.string(self.provider.rawValue)
        writer.raw(#","revision":"#)
        writer.integer(self.revision)
        writer.raw(#","secrets":"#)
        writer.raw("{")
        var first = true
        // `.sortedKeys` orders by UTF-8 bytes, without Unicode normalization (`String`'s `<` would normalize).
        for name in self.secrets.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
            if first { first = false } else { writer.raw(",") }
            writer.string(name)
            writer.raw(":")
            self.secrets[name].unsafelyUnwrapped.writeJSON(to: &writer)
        }
        writer.raw("}")
        writer.raw(#","settings":"#)
        self.settings.writeJSON(to: &writer)
        writer.raw(#","state":"#)
        writer.string(self.state.rawValue)
        writer.raw(#","tokens_valid_until":"#)
        writer.stringOrNull(self.tokensValidUntil)
        writer.raw(#","updated_at":"#)
        writer.string(self.updatedAt)
        writer.raw("}")
    }
}

extension SecretFieldView: JSONWritable {
    public func writeJSON(to writer: inout JSONWriter) {
        writer.raw(#"{"fingerprint":"#)
        writer.string(self.fingerprint)
        writer.raw(#","set":"#)
        writer.bool(self.set)
        writer.raw(#","updated_at":"#)
        writer.string(self.updatedAt)
        writer.raw("}")
    }
}

extension ConnectionSettings: JSONWritable {
    /// The synthesized `encode(to:)`: a nil member is left out.
    public func writeJSON(to writer: inout JSONWriter) {
        writer.raw("{")
        var first = true
        if let value = self.apiBaseURL {
            writer.key(#""api_base_url""#, first: &first)
            writer.string(value)
        }
        if let value = self.appID {
            writer.key(#""app_id""#, first: &first)
            writer.string(value)
        }
        if let value = self.companyID {
            writer.key(#""company_id""#, first: &first)
            writer.string(value)
        }
        if let value = self.partnerID {
            writer.key(#""partner_id""#, first: &first)
            writer.string(value)
        }
        if let value = self.permissions {
            writer.key(#""permissions""#, first: &first)
            writer.stringArray(value)
        }
        if let value = self.proxyMaxBody {
            writer.key(#""proxy_max_body""#, first: &first)
            writer.integer(value)
        }
        if let value = self.scope {
            writer.key(#""scope""#, first: &first)
            writer.string(value)
        }
        writer.raw("}")
    }
}

extension Grants: JSONWritable {
    public func writeJSON(to writer: inout JSONWriter) {
        writer.raw(#"{"groups":"#)
        writer.stringArray(self.groups)
        writer.raw(#","rules":"#)
        writer.array(self.rules) { writer, rule in rule.writeJSON(to: &writer) }
        writer.raw(#","uids":"#)
        writer.array(self.uids) { writer, uid in writer.integer(uid) }
        writer.raw(#","units":"#)
        writer.stringArray(self.units)
        writer.raw("}")
    }
}

extension GrantRule: JSONWritable {
    /// The synthesized `encode(to:)`: a nil member is left out.
    public func writeJSON(to writer: inout JSONWriter) {
        writer.raw("{")
        var first = true
        if let value = self.exe {
            writer.key(#""exe""#, first: &first)
            writer.string(value)
        }
        if let value = self.exeSHA256 {
            writer.key(#""exe_sha256""#, first: &first)
            writer.string(value)
        }
        if let value = self.group {
            writer.key(#""group""#, first: &first)
            writer.string(value)
        }
        if let value = self.proxy {
            writer.key(#""proxy""#, first: &first)
            writer.stringArray(value)
        }
        if let value = self.ratePerMinute {
            writer.key(#""rate_per_minute""#, first: &first)
            writer.integer(value)
        }
        if let value = self.scope {
            writer.key(#""scope""#, first: &first)
            writer.string(value)
        }
        if let value = self.token {
            writer.key(#""token""#, first: &first)
            writer.bool(value)
        }
        if let value = self.uid {
            writer.key(#""uid""#, first: &first)
            writer.integer(value)
        }
        if let value = self.unit {
            writer.key(#""unit""#, first: &first)
            writer.string(value)
        }
        writer.raw("}")
    }
}
