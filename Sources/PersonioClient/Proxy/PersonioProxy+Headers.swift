import HTTP1Wire

/// Which headers cross the proxy, each way. Both directions are allow-lists: what is not named here stays behind,
/// so a header invented tomorrow (or a caller's own `Authorization`, `Cookie`, `Host`, `Connection`) never slips
/// through.
extension PersonioProxy {
    /// The most caller headers passed on.
    public static let maximumForwardedHeaders = 32
    /// The longest caller header value passed on, in bytes.
    public static let maximumHeaderValueBytes = 4096

    /// Caller headers passed on, lower-cased; plus `X-Personio-*` other than those below.
    static let forwardedRequestHeaderNames: Set<String> = [
        "accept", "content-type", "if-none-match", "if-modified-since",
    ]
    /// Identification headers come from the connection's settings only: a caller must not speak for the vault.
    static let reservedPersonioHeaderNames: Set<String> = ["x-personio-app-id", "x-personio-partner-id"]
    /// Response headers passed back, lower-cased; plus `X-RateLimit-*`, and `Content-Length` for a body that is not
    /// chunked. `Location` is relayed as Personio sent it: the vault never follows a redirect (the credential would
    /// go wherever it points), the caller decides what to do with it.
    static let returnedResponseHeaderNames: Set<String> = [
        "content-type", "content-disposition", "retry-after", "etag", "last-modified", "location",
    ]

    /// The caller headers that go upstream: `Accept`, `Content-Type`, `If-None-Match`, `If-Modified-Since` and
    /// `X-Personio-*` except `X-Personio-App-ID` and `X-Personio-Partner-ID`; everything else is dropped.
    ///
    /// - Parameter headers: The caller's headers.
    /// - Returns: The headers to send, in the caller's order and spelling.
    /// - Throws: ``ProxyRequestError`` `.invalidHeader` when a passed-on header has a malformed name or value
    ///   (control characters, over ``maximumHeaderValueBytes`` bytes), or there are more than
    ///   ``maximumForwardedHeaders``.
    public static func forwardedRequestHeaders(
        _ headers: [(String, String)]
    ) throws(ProxyRequestError) -> [(String, String)] {
        var forwarded: [(String, String)] = []
        var hopByHop: Set<String> = []
        for (name, value) in headers where HTTPBytes.equalsIgnoringCase(name, "connection") {
            Self.addConnectionOptions(of: value, to: &hopByHop)
        }
        for (name, value) in headers {
            let lowercased = name.lowercased()
            // A header the caller's `Connection` names is for this hop only (RFC 9110 §7.6.1).
            guard hopByHop.isEmpty || !hopByHop.contains(lowercased) else { continue }
            let isPersonio =
                lowercased.hasPrefix("x-personio-") && !Self.reservedPersonioHeaderNames.contains(lowercased)
            guard Self.forwardedRequestHeaderNames.contains(lowercased) || isPersonio else { continue }
            guard lowercased.utf8.count <= 64, lowercased.utf8.allSatisfy(HTTPBytes.isToken) else {
                throw ProxyRequestError(.invalidHeader, "an X-Personio-* header name is malformed")
            }
            guard value.utf8.count <= Self.maximumHeaderValueBytes,
                value.utf8.allSatisfy({ (0x20...0x7E).contains($0) || $0 == 0x09 })
            else {
                throw ProxyRequestError(
                    .invalidHeader,
                    "the \(name) header must be at most \(Self.maximumHeaderValueBytes) bytes of printable ASCII"
                )
            }
            forwarded.append((name, value))
            guard forwarded.count <= Self.maximumForwardedHeaders else {
                throw ProxyRequestError(.invalidHeader, "more than \(Self.maximumForwardedHeaders) headers to forward")
            }
        }
        return forwarded
    }

    /// The response headers that go back to the caller, and whether one of them carried the credential, from the
    /// head as the upstream parser hands it on, with the framing it found: `Content-Length` is returned only when the
    /// body is not `chunked`. Every occurrence of the credential the request carried is overwritten with `*`; a value
    /// that is not printable ASCII, is over 2 KiB, or still contains a long fragment of the credential is dropped: an
    /// upstream that echoes `Authorization` into some header must not hand the recruiting key to the caller.
    ///
    /// Read from the head's bytes in place: only the headers returned become strings.
    static func returnedResponseHeaders(
        _ head: UpstreamResponseParser.Head,
        redactor: Redactor,
        scrubber: CredentialScrubber = .none
    ) -> (headers: [(String, String)], echoed: Bool) {
        head.withFieldBytes { bytes in
            func name(_ field: UpstreamResponseParser.Head.Field) -> UnsafeRawBufferPointer {
                UnsafeRawBufferPointer(rebasing: bytes[field.name])
            }
            func value(_ field: UpstreamResponseParser.Head.Field) -> UnsafeRawBufferPointer {
                UnsafeRawBufferPointer(rebasing: bytes[field.value])
            }
            var hopByHop: Set<String> = []
            for field in head.fields where HTTPBytes.equalsIgnoringCase(name(field), "connection") {
                Self.addConnectionOptions(of: value(field), to: &hopByHop)
            }
            var returned: [(String, String)] = []
            returned.reserveCapacity(head.fields.count)
            var echoed = false
            for field in head.fields {
                // Every header is scrubbed, the dropped ones too: an echo anywhere in the answer is reported.
                let scrubbed = scrubber.scrubbed(value(field))
                echoed = echoed || scrubbed != nil
                guard Self.isReturned(name(field), chunked: head.chunked) else { continue }
                guard scrubbed.map(redactor.isClean) ?? redactor.isClean(value(field)) else { continue }
                let returnedName = String(decoding: name(field), as: UTF8.self)
                // A header Personio's `Connection` names is for that hop only (RFC 9110 §7.6.1).
                guard hopByHop.isEmpty || !hopByHop.contains(returnedName.lowercased()) else { continue }
                returned.append((returnedName, scrubbed ?? String(decoding: value(field), as: UTF8.self)))
            }
            return (returned, echoed)
        }
    }

    /// Whether a response header named `name` goes back to the caller: one of ``returnedResponseHeaderNames``,
    /// `X-RateLimit-*`, or `Content-Length` of a body that is not chunked.
    static func isReturned(_ name: String, chunked: Bool) -> Bool {
        var name = name
        return name.withUTF8 { Self.isReturned(UnsafeRawBufferPointer($0), chunked: chunked) }
    }

    /// ``isReturned(_:chunked:)`` for a name's bytes, compared in any letter case without building a lower-cased
    /// copy (this runs for every header of every proxied answer).
    static func isReturned(_ bytes: UnsafeRawBufferPointer, chunked: Bool) -> Bool {
        func equals(_ word: StaticString) -> Bool { HTTPBytes.equalsIgnoringCase(bytes, word) }
        if bytes.count > 12, HTTPBytes.hasPrefixIgnoringCase(bytes, "x-ratelimit-") {
            // The rest of the name is Personio's: the upstream parser lets only token characters into a name, and
            // this holds it to that as well, because the server writes the names it returns unchecked.
            return bytes[12...].allSatisfy(HTTPBytes.isToken)
        }
        switch bytes.count {
        case 4: return equals("etag")
        case 8: return equals("location")
        case 11: return equals("retry-after")
        case 12: return equals("content-type")
        case 13: return equals("last-modified")
        case 14: return !chunked && equals("content-length")
        case 19: return equals("content-disposition")
        default: return false
        }
    }

    /// Adds the header names a `Connection` value lists to `names`, lower-cased. `close` and `keep-alive` (what
    /// nearly every answer carries) are left out without building a string: neither names a header either
    /// allow-list passes. Scanned in place, without splitting the value into an array of pieces.
    private static func addConnectionOptions(of value: String, to names: inout Set<String>) {
        var value = value
        value.withUTF8 { Self.addConnectionOptions(of: UnsafeRawBufferPointer($0), to: &names) }
    }

    private static func addConnectionOptions(of bytes: UnsafeRawBufferPointer, to names: inout Set<String>) {
        func isSpace(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        var start = 0
        while start < bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != UInt8(ascii: ",") { end += 1 }
            var first = start
            var last = end
            while first < last && isSpace(bytes[first]) { first += 1 }
            while last > first && isSpace(bytes[last - 1]) { last -= 1 }
            let option = UnsafeRawBufferPointer(rebasing: bytes[first..<last])
            if !option.isEmpty, !HTTPBytes.equalsIgnoringCase(option, "close"),
                !HTTPBytes.equalsIgnoringCase(option, "keep-alive")
            {
                names.insert(String(decoding: option.filter { !isSpace($0) }, as: UTF8.self).lowercased())
            }
            start = end + 1
        }
    }
}
