/// The byte classes and comparisons the proxy's HTTP/1.1 code shares: the header filters
/// (`PersonioProxy+Headers.swift`) and the upstream answer parser (``UpstreamResponseParser``). They compare bytes as
/// they are, without building lower-cased strings: they run for every header of every proxied request and answer.
enum HTTPBytes {
    /// RFC 9110 `tchar`: the characters of a header name, a method or a chunk extension.
    static func isToken(_ byte: UInt8) -> Bool {
        Self.tokenBytes[Int(byte)]
    }

    /// Whether `bytes` start with `prefix` (lower-case ASCII) in any letter case.
    static func hasPrefixIgnoringCase<Bytes: Collection<UInt8>>(_ bytes: Bytes, _ prefix: StaticString) -> Bool {
        guard bytes.count >= prefix.utf8CodeUnitCount else { return false }
        return prefix.withUTF8Buffer { expected in
            zip(bytes, expected).allSatisfy { byte, letter in
                byte == letter || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") && byte | 0x20 == letter)
            }
        }
    }

    /// Whether `bytes` spell `word` (lower-case ASCII) in any letter case.
    static func equalsIgnoringCase<Bytes: Collection<UInt8>>(_ bytes: Bytes, _ word: StaticString) -> Bool {
        bytes.count == word.utf8CodeUnitCount && Self.hasPrefixIgnoringCase(bytes, word)
    }

    private static let tokenBytes: [Bool] = (0..<256).map { value in
        switch UInt8(value) {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        case let byte:
            "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}
