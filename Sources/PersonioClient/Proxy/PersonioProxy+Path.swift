/// The path check: a caller picks the path under the API base, never the host, the scheme or a place above the base.
///
/// The raw path is percent-decoded exactly once and the decoded bytes are checked segment by segment; what goes
/// upstream is the caller's own spelling (bytes a URI cannot carry percent-encoded), whose one decoding is what was
/// checked. A `%` left after decoding (double encoding such as `%252e%252e`) is refused rather than passed to a
/// server that might decode it again.
extension PersonioProxy {
    /// The longest path accepted, in bytes, raw and re-encoded.
    public static let maximumPathBytes = 2048
    /// The longest query accepted, in bytes.
    public static let maximumQueryBytes = 4096

    /// The path to send upstream for the route's `{path}`: absolute, under the API base, as the caller spelt it.
    ///
    /// Refused: a path not starting with `/`; `.` and `..` segments (also as `%2e`, or before a `;` parameter);
    /// empty segments (`//`, a trailing `/`); backslashes; NUL and other control bytes; encoded slashes (`%2f`);
    /// `?` or `#`, even encoded; a `%` left after decoding once; a first segment with `:` (a scheme such as
    /// `http:`); bad percent escapes or invalid UTF-8; more than ``maximumPathBytes`` bytes. The query, passed on
    /// unchanged, must be printable ASCII without spaces or `#`, at most ``maximumQueryBytes`` bytes. Checking the
    /// returned path again returns it unchanged.
    ///
    /// - Parameters:
    ///   - rawPath: The part of the route after `/proxy`, as received (still percent-encoded).
    ///   - query: The raw query string without `?`, if any.
    /// - Returns: The path as sent, starting with `/`, with every byte outside RFC 3986's `pchar` set (but the `%` of
    ///   an escape) percent-encoded; or
    ///   why it is refused (`.invalidPath` or `.invalidQuery`; the message never quotes the input).
    public static func validatedPath(_ rawPath: String, query: String?) -> Result<String, ProxyRequestError> {
        Result { () throws(ProxyRequestError) -> String in
            try Self.checkQuery(query)
            return try Self.canonicalPath(rawPath)
        }
    }

    /// The path as grant rules' proxy allow-lists see it: checked as ``validatedPath(_:query:)`` checks it, then
    /// percent-decoded once (what Personio acts on once it has decoded what it is sent).
    ///
    /// - Parameter rawPath: As for ``validatedPath(_:query:)``.
    /// - Returns: The decoded path, starting with `/`, or why the path is refused.
    public static func normalizedPath(_ rawPath: String) -> Result<String, ProxyRequestError> {
        Result { () throws(ProxyRequestError) -> String in
            _ = try Self.canonicalPath(rawPath)
            return String(decoding: try Self.percentDecoded(Array(rawPath.utf8)), as: UTF8.self)
        }
    }

    private static func checkQuery(_ query: String?) throws(ProxyRequestError) {
        guard let query else { return }
        guard query.utf8.count <= Self.maximumQueryBytes else {
            throw ProxyRequestError(.invalidQuery, "the query is longer than \(Self.maximumQueryBytes) bytes")
        }
        guard query.utf8.allSatisfy({ (0x21...0x7E).contains($0) && $0 != UInt8(ascii: "#") }) else {
            throw ProxyRequestError(.invalidQuery, "the query must be printable ASCII without spaces or '#'")
        }
    }

    private static func canonicalPath(_ rawPath: String) throws(ProxyRequestError) -> String {
        func refuse(_ reason: String) -> ProxyRequestError { ProxyRequestError(.invalidPath, "the path " + reason) }

        // The usual path: '/' and path characters only, no escape. It decodes to itself, is ASCII, and goes upstream
        // as it is: only its segments are checked, in place, and the caller's string is returned without a copy.
        var scanned = rawPath
        let plain = scanned.withUTF8 { bytes -> (isPlain: Bool, problem: String?) in
            guard bytes.count <= Self.maximumPathBytes, bytes.first == UInt8(ascii: "/"),
                bytes.allSatisfy({ $0 == UInt8(ascii: "/") || Self.isPathCharacter($0) })
            else { return (false, nil) }
            return (true, Self.segmentProblem(bytes))
        }
        if plain.isPlain {
            if let problem = plain.problem { throw refuse(problem) }
            return rawPath
        }

        let raw = Array(rawPath.utf8)
        guard raw.count <= Self.maximumPathBytes else {
            throw refuse("is longer than \(Self.maximumPathBytes) bytes")
        }
        guard raw.first == UInt8(ascii: "/") else { throw refuse("must start with '/'") }
        guard raw.allSatisfy({ $0 > 0x20 && $0 != 0x7F }) else {
            throw refuse("must not contain spaces or control characters")
        }
        let decoded = try Self.percentDecoded(raw)
        guard String(validating: decoded, as: UTF8.self) != nil else { throw refuse("is not valid UTF-8") }
        // Split on the slashes that were literally there; an encoded one was refused while decoding.
        if let problem = decoded.withUnsafeBufferPointer({ Self.segmentProblem($0) }) { throw refuse(problem) }

        // What goes upstream is the caller's own spelling, so that `%2B` stays `%2B` (not `+`, another character to
        // the server) and escapes keep their letter case: decoding it once gives exactly what was checked, and the
        // checks above leave nothing a second decoding could change. Bytes a URI cannot carry as they are (spaces
        // and controls are refused; this is UTF-8 and `[`, `]`, `{`, `|`, …) are percent-encoded.
        let encoded = Self.uriSafe(raw, allowed: { $0 == UInt8(ascii: "/") || Self.isPathCharacter($0) })
        guard encoded.count <= Self.maximumPathBytes else {
            throw refuse("is longer than \(Self.maximumPathBytes) bytes once encoded")
        }
        return String(decoding: encoded, as: UTF8.self)
    }

    /// Why the segments of `path` (decoded once, starting with '/') are refused, or nil: each is checked in order,
    /// walking the bytes once without splitting them.
    private static func segmentProblem(_ path: UnsafeBufferPointer<UInt8>) -> String? {
        var start = 1
        var first = true
        while true {
            var end = start
            while end < path.count && path[end] != UInt8(ascii: "/") { end += 1 }
            guard end > start else { return "must not contain empty segments ('//' or a trailing '/')" }
            // `..;x` is `..` to servers that strip path parameters before resolving dot segments.
            var nameEnd = start
            while nameEnd < end && path[nameEnd] != UInt8(ascii: ";") { nameEnd += 1 }
            guard nameEnd > start else { return "must not contain segments without a name" }
            guard !path[start..<nameEnd].allSatisfy({ $0 == UInt8(ascii: ".") }) else {
                return "must not contain '.' or '..' segments"
            }
            for byte in path[start..<end] {
                switch byte {
                case 0x00..<0x20, 0x7F: return "must not contain control characters"
                case UInt8(ascii: "\\"): return "must not contain backslashes"
                case UInt8(ascii: "%"): return "must not be percent-encoded twice"
                case UInt8(ascii: "?"), UInt8(ascii: "#"): return "must not contain '?' or '#'"
                case UInt8(ascii: ":") where first: return "must not start with a scheme or authority"
                default: continue
                }
            }
            if end == path.count { return nil }
            start = end + 1
            first = false
        }
    }

    /// The query to send upstream: the caller's, with the bytes RFC 3986 does not allow in a query (`[`, `]`, `{`,
    /// `}`, `|`, `\`, `^`, `` ` ``, `"`, `<`, `>`, a `%` that begins no escape) percent-encoded; everything else, the
    /// caller's escapes included, unchanged. (An HTTP client that meets one such byte may re-encode the whole URL,
    /// `%40` becoming `%2540`.)
    ///
    /// - Parameter query: A query that passed ``validatedPath(_:query:)``.
    public static func forwardedQuery(_ query: String) -> String {
        let raw = Array(query.utf8)
        let allowed = { (byte: UInt8) in
            Self.isPathCharacter(byte) || byte == UInt8(ascii: "/") || byte == UInt8(ascii: "?")
        }
        guard raw.contains(where: { !allowed($0) && $0 != UInt8(ascii: "%") }) || Self.hasBarePercent(raw) else {
            return query
        }
        return String(decoding: Self.uriSafe(raw, allowed: allowed), as: UTF8.self)
    }

    /// `raw` with every byte that is not `allowed` and does not begin a well-formed `%XX` escape percent-encoded.
    private static func uriSafe(_ raw: [UInt8], allowed: (UInt8) -> Bool) -> [UInt8] {
        var encoded: [UInt8] = []
        encoded.reserveCapacity(raw.count)
        var index = 0
        while index < raw.count {
            let byte = raw[index]
            if allowed(byte) || (byte == UInt8(ascii: "%") && Self.isEscape(raw, at: index)) {
                encoded.append(byte)
            } else {
                encoded += [UInt8(ascii: "%"), Self.hexDigits[Int(byte >> 4)], Self.hexDigits[Int(byte & 0x0F)]]
            }
            index += 1
        }
        return encoded
    }

    private static func isEscape(_ raw: [UInt8], at index: Int) -> Bool {
        index + 2 < raw.count && Self.hexValue(raw[index + 1]) != nil && Self.hexValue(raw[index + 2]) != nil
    }

    private static func hasBarePercent(_ raw: [UInt8]) -> Bool {
        raw.indices.contains { raw[$0] == UInt8(ascii: "%") && !Self.isEscape(raw, at: $0) }
    }

    /// `raw` with each `%XX` replaced by its byte; refuses malformed escapes and encoded slashes.
    private static func percentDecoded(_ raw: [UInt8]) throws(ProxyRequestError) -> [UInt8] {
        var decoded: [UInt8] = []
        decoded.reserveCapacity(raw.count)
        var index = 0
        while index < raw.count {
            guard raw[index] == UInt8(ascii: "%") else {
                decoded.append(raw[index])
                index += 1
                continue
            }
            guard index + 2 < raw.count, let high = Self.hexValue(raw[index + 1]),
                let low = Self.hexValue(raw[index + 2])
            else {
                throw ProxyRequestError(.invalidPath, "the path has a malformed percent escape")
            }
            let byte = high << 4 | low
            guard byte != UInt8(ascii: "/") else {
                throw ProxyRequestError(.invalidPath, "the path must not contain an encoded '/'")
            }
            decoded.append(byte)
            index += 3
        }
        return decoded
    }

    private static let hexDigits = Array("0123456789ABCDEF".utf8)

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// RFC 3986 `pchar` minus `%`: unreserved, sub-delims, `:` and `@`; every other byte is sent percent-encoded.
    private static func isPathCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"), UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"),
            UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","),
            UInt8(ascii: ";"), UInt8(ascii: "="), UInt8(ascii: ":"), UInt8(ascii: "@"):
            true
        default:
            false
        }
    }
}
