import VaultAPI

/// Reads a connection's stored settings without `JSONDecoder` when they are in the form the vault writes them:
/// `VaultJSON.encoder()`'s compact object, keys sorted, each of ``ConnectionSettings``' members at most once (strings,
/// an array of strings, a decimal integer). `JSONDecoder` was a quarter of a 100,000-connection list's time in the
/// daemon.
///
/// Anything else (white space, an unknown or repeated key, `null`, a number with a fraction or exponent, a lone
/// surrogate, …) returns nil, and the caller decodes with `JSONDecoder` as before: this reader only ever accepts a
/// subset of what the decoder accepts, and reads it to the same value (`StoredSettingsTests` compares the two on
/// generated settings and on mutations of them).
enum StoredSettings {
    /// The settings `text` holds, or nil when it is not in the vault's own form.
    static func decode(_ text: String) -> ConnectionSettings? {
        var text = text
        return text.withUTF8 { bytes in
            var reader = Reader(bytes: bytes)
            return reader.settings()
        }
    }

    private struct Reader {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0

        init(bytes: UnsafeBufferPointer<UInt8>) {
            self.bytes = bytes
        }

        mutating func settings() -> ConnectionSettings? {
            guard self.take(UInt8(ascii: "{")) else { return nil }
            var settings = ConnectionSettings()
            var seen = Set<String>()
            if self.take(UInt8(ascii: "}")) { return self.index == self.bytes.count ? settings : nil }
            repeat {
                guard let key = self.string(), seen.insert(key).inserted, self.take(UInt8(ascii: ":")) else {
                    return nil
                }
                switch key {
                case "api_base_url":
                    guard let value = self.string() else { return nil }
                    settings.apiBaseURL = value
                case "app_id":
                    guard let value = self.string() else { return nil }
                    settings.appID = value
                case "partner_id":
                    guard let value = self.string() else { return nil }
                    settings.partnerID = value
                case "scope":
                    guard let value = self.string() else { return nil }
                    settings.scope = value
                case "company_id":
                    guard let value = self.string() else { return nil }
                    settings.companyID = value
                case "permissions":
                    guard let value = self.strings() else { return nil }
                    settings.permissions = value
                case "proxy_max_body":
                    guard let value = self.integer() else { return nil }
                    settings.proxyMaxBody = value
                default: return nil
                }
            } while self.take(UInt8(ascii: ","))
            guard self.take(UInt8(ascii: "}")), self.index == self.bytes.count else { return nil }
            return settings
        }

        mutating func take(_ byte: UInt8) -> Bool {
            guard self.index < self.bytes.count, self.bytes[self.index] == byte else { return false }
            self.index += 1
            return true
        }

        mutating func strings() -> [String]? {
            guard self.take(UInt8(ascii: "[")) else { return nil }
            var values: [String] = []
            if self.take(UInt8(ascii: "]")) { return values }
            repeat {
                guard let value = self.string() else { return nil }
                values.append(value)
            } while self.take(UInt8(ascii: ","))
            return self.take(UInt8(ascii: "]")) ? values : nil
        }

        /// A decimal integer without a sign but `-`, leading zeros, fraction or exponent, that fits in `Int`.
        mutating func integer() -> Int? {
            let negative = self.take(UInt8(ascii: "-"))
            let start = self.index
            var value = 0
            while self.index < self.bytes.count, (48...57).contains(self.bytes[self.index]) {
                let digit = Int(self.bytes[self.index] - 48)
                let (times, overflowTimes) = value.multipliedReportingOverflow(by: 10)
                let (sum, overflowSum) =
                    negative ? times.subtractingReportingOverflow(digit) : times.addingReportingOverflow(digit)
                guard !overflowTimes, !overflowSum else { return nil }
                value = sum
                self.index += 1
            }
            let count = self.index - start
            guard count > 0, count == 1 || self.bytes[start] != 48 else { return nil }
            if self.index < self.bytes.count,
                [UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E")].contains(self.bytes[self.index])
            {
                return nil
            }
            return value
        }

        /// A JSON string: escapes as JSON has them (a `\u` surrogate only as a pair); no control character.
        mutating func string() -> String? {
            guard self.take(UInt8(ascii: "\"")) else { return nil }
            let start = self.index
            // Most strings have no escape: one copy of their bytes.
            while self.index < self.bytes.count {
                let byte = self.bytes[self.index]
                if byte == UInt8(ascii: "\"") {
                    let value = String(
                        decoding: UnsafeBufferPointer(rebasing: self.bytes[start..<self.index]),
                        as: UTF8.self
                    )
                    self.index += 1
                    return value
                }
                if byte == UInt8(ascii: "\\") { break }
                guard byte >= 0x20 else { return nil }
                self.index += 1
            }
            var scalars = String.UnicodeScalarView()
            var utf8 = Array(self.bytes[start..<self.index])
            func flush() {
                scalars.append(contentsOf: String(decoding: utf8, as: UTF8.self).unicodeScalars)
                utf8.removeAll(keepingCapacity: true)
            }
            while self.index < self.bytes.count {
                let byte = self.bytes[self.index]
                self.index += 1
                switch byte {
                case UInt8(ascii: "\""):
                    flush()
                    return String(scalars)
                case UInt8(ascii: "\\"):
                    guard self.index < self.bytes.count else { return nil }
                    let escape = self.bytes[self.index]
                    self.index += 1
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escape)
                    case UInt8(ascii: "b"): utf8.append(0x08)
                    case UInt8(ascii: "f"): utf8.append(0x0C)
                    case UInt8(ascii: "n"): utf8.append(0x0A)
                    case UInt8(ascii: "r"): utf8.append(0x0D)
                    case UInt8(ascii: "t"): utf8.append(0x09)
                    case UInt8(ascii: "u"):
                        guard let unit = self.hex4() else { return nil }
                        let scalar: Unicode.Scalar?
                        if (0xD800..<0xDC00).contains(unit) {
                            guard self.take(UInt8(ascii: "\\")), self.take(UInt8(ascii: "u")), let low = self.hex4(),
                                (0xDC00..<0xE000).contains(low)
                            else { return nil }
                            scalar = Unicode.Scalar(0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00))
                        } else {
                            scalar = Unicode.Scalar(UInt32(unit))
                        }
                        // A lone low surrogate is not ours.
                        guard let scalar else { return nil }
                        flush()
                        scalars.append(scalar)
                    default: return nil
                    }
                default:
                    guard byte >= 0x20 else { return nil }
                    utf8.append(byte)
                }
            }
            return nil
        }

        mutating func hex4() -> UInt16? {
            guard self.index + 4 <= self.bytes.count else { return nil }
            var value: UInt16 = 0
            for _ in 0..<4 {
                let byte = self.bytes[self.index]
                let digit: UInt8
                switch byte {
                case 48...57: digit = byte - 48
                case 97...102: digit = byte - 87
                case 65...70: digit = byte - 55
                default: return nil
                }
                value = value << 4 | UInt16(digit)
                self.index += 1
            }
            return value
        }
    }
}
