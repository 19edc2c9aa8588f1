import VaultCrypto

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns text that may come from Personio into something safe to put in an error or a log line: every occurrence
/// of a secret (raw, form-encoded or JSON-escaped, or a fragment of ``fragmentLength`` bytes or more of one) becomes
/// `[redacted]`, then anything but printable ASCII becomes `?` and the result is cut to a bounded length.
///
/// Fragments count because a truncated echo ("client_secret=abcdefgh…") still gives part of the secret away.
/// Redaction runs on the raw bytes before anything else, so that neither truncation nor the printable-ASCII filter
/// can break a secret into pieces that no longer match.
struct Redactor {
    /// A redactor that knows no secret: it only filters and truncates.
    static let none = Redactor(secrets: [])

    /// A run of this many bytes of a secret (or the whole secret, if shorter) is redacted.
    static let fragmentLength = 12
    /// Bytes of input looked at; the rest is dropped before redaction (a cut-off secret is still caught as a fragment).
    static let inspectedLength = 2048

    private static let marker = Array("[redacted]".utf8)

    /// Encoded forms of the secrets, to match against the raw text.
    private let patterns: [SecretBytes]
    /// The same forms after the printable-ASCII filter, for secrets that contain other bytes.
    private let filteredPatterns: [SecretBytes]

    /// - Parameter secrets: Everything that must never appear in the output: client id, client secret, a token.
    init(secrets: [SecretBytes]) {
        var patterns: [SecretBytes] = []
        var filteredPatterns: [SecretBytes] = []
        for secret in secrets where secret.count > 0 {
            for encoding in SecretEncoding.allCases {
                let pattern = encoding.encoded(secret)
                if !patterns.contains(pattern) { patterns.append(pattern) }
                let filtered = Self.filtered(pattern)
                if filtered != pattern, !filteredPatterns.contains(filtered) { filteredPatterns.append(filtered) }
            }
        }
        self.patterns = patterns
        self.filteredPatterns = filteredPatterns
        self.shortestFragment =
            (patterns + filteredPatterns).map { min($0.count, Self.fragmentLength) }.min() ?? Int.max
    }

    /// The fewest bytes a redacted fragment has.
    private let shortestFragment: Int

    /// `text` redacted, reduced to printable ASCII and cut to `limit` characters (ending in `...` when cut).
    func sanitize(_ text: String, limit: Int = PersonioAuthError.maximumMessageLength) -> String {
        var bytes = Array(text.utf8.prefix(Self.inspectedLength))
        for pattern in self.patterns { bytes = pattern.withUnsafeBytes { Self.redact(bytes, $0) } }
        bytes = bytes.map(Self.printable)
        for pattern in self.filteredPatterns { bytes = pattern.withUnsafeBytes { Self.redact(bytes, $0) } }
        if bytes.count > limit {
            bytes = Array(bytes.prefix(max(0, limit - 3))) + Array("...".utf8)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Whether `text` would come out of ``sanitize(_:limit:)`` (with the limit ``inspectedLength``) unchanged:
    /// printable ASCII, at most ``inspectedLength`` bytes, and no fragment of a secret. Allocates nothing, and reads
    /// the bytes in place (this runs for every header returned of every proxied answer).
    func isClean(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { self.isClean(UnsafeRawBufferPointer($0)) }
    }

    /// ``isClean(_:)`` for text as UTF-8 bytes.
    func isClean(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count <= Self.inspectedLength else { return false }
        for byte in bytes where byte < 0x20 || byte > 0x7E { return false }
        // Shorter than every fragment: nothing to find.
        guard bytes.count >= self.shortestFragment else { return true }
        // Printable text is its own printable form: both pattern lists are matched against the same bytes.
        for pattern in self.patterns where pattern.withUnsafeBytes({ Self.hasFragment(of: $0, in: bytes) }) {
            return false
        }
        for pattern in self.filteredPatterns where pattern.withUnsafeBytes({ Self.hasFragment(of: $0, in: bytes) }) {
            return false
        }
        return true
    }

    /// Whether `text` contains a run of `min(pattern.count, fragmentLength)` bytes that also occurs in `pattern`:
    /// exactly when ``redact(_:_:)`` would change it.
    private static func hasFragment(of pattern: UnsafeRawBufferPointer, in text: UnsafeRawBufferPointer) -> Bool {
        let threshold = min(pattern.count, Self.fragmentLength)
        guard threshold > 0, text.count >= threshold, let textBase = text.baseAddress,
            let patternBase = pattern.baseAddress
        else { return false }
        for position in 0...(text.count - threshold) {
            let first = text[position]
            for start in 0...(pattern.count - threshold) where pattern[start] == first {
                if memcmp(textBase + position, patternBase + start, threshold) == 0 { return true }
            }
        }
        return false
    }

    /// An error code such as `invalid_client`: sanitized, then only letters, digits, `_`, `-` and `.`, at most 64.
    func sanitizeCode(_ text: String) -> String {
        let allowed = self.sanitize(text, limit: Self.inspectedLength).utf8.filter { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "."):
                true
            default:
                false
            }
        }
        return String(decoding: allowed.prefix(64), as: UTF8.self)
    }

    // MARK: - Helpers

    private static func printable(_ byte: UInt8) -> UInt8 {
        (0x20...0x7E).contains(byte) ? byte : UInt8(ascii: "?")
    }

    private static func filtered(_ secret: SecretBytes) -> SecretBytes {
        let filtered = SecretBytes(zeroedCount: secret.count)
        filtered.withUnsafeMutableBytes { target in
            secret.withUnsafeBytes { source in
                for index in source.indices { target[index] = Self.printable(source[index]) }
            }
        }
        return filtered
    }

    /// `text` with every run of at least `min(pattern.count, fragmentLength)` bytes that also occurs in `pattern`
    /// replaced by the marker. Quadratic, on inputs bounded by `inspectedLength` and secret sizes.
    private static func redact(_ text: [UInt8], _ pattern: UnsafeRawBufferPointer) -> [UInt8] {
        let threshold = min(pattern.count, Self.fragmentLength)
        guard threshold > 0, text.count >= threshold else { return text }
        var output: [UInt8] = []
        output.reserveCapacity(text.count)
        var position = 0
        while position < text.count {
            var longest = 0
            if text.count - position >= threshold {
                for start in pattern.indices where pattern[start] == text[position] {
                    var length = 1
                    while position + length < text.count, start + length < pattern.count,
                        text[position + length] == pattern[start + length]
                    {
                        length += 1
                    }
                    longest = max(longest, length)
                }
            }
            if longest >= threshold {
                output += Self.marker
                position += longest
            } else {
                output.append(text[position])
                position += 1
            }
        }
        return output
    }
}
