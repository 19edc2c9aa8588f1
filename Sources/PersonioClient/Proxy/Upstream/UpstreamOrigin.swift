/// Where the proxy's upstream connections go: scheme, host and port of a connection's API base, parsed once per
/// ``ProxyDestination``, and the key of the connection pools (one pool per origin and event loop).
struct UpstreamOrigin: Hashable, Sendable, CustomStringConvertible {
    /// Whether the connection speaks TLS (`https`).
    var tls: Bool
    /// The host name or IP address, without brackets for IPv6.
    var host: String
    var port: Int
    /// The `Host` header sent: the host as the URL spells it (IPv6 in brackets), with the port when it is not the
    /// scheme's default.
    var hostHeader: String

    var description: String { "\(self.tls ? "https" : "http")://\(self.hostHeader)" }

    /// The origin and path prefix of a base URL that ``PersonioAuthClient/validatedBaseURL(_:)`` accepted
    /// (`http(s)://host[:port][/prefix]`, no trailing `/`, no query or fragment).
    ///
    /// - Returns: The origin and the path prefix (empty, or starting with `/`).
    /// - Throws: ``PersonioAuthError`` `.invalidRequest` for user information, an empty host, a port that is not a
    ///   number from 1 to 65535, or an unclosed IPv6 bracket.
    static func parse(_ base: String) throws(PersonioAuthError) -> (origin: UpstreamOrigin, pathPrefix: String) {
        let invalid = PersonioAuthError(.invalidRequest, "the base URL is not a valid http(s) URL")
        guard let separator = base.firstRange(of: "://") else { throw invalid }
        let scheme = base[..<separator.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else { throw invalid }
        let rest = base[separator.upperBound...]
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let pathPrefix = String(rest[authorityEnd...])
        // A user name in the URL would be sent nowhere, and is a classic way to disguise where a URL points.
        guard !authority.isEmpty, !authority.contains("@") else { throw invalid }
        let host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw invalid }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw invalid }
                portText = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        let defaultPort = scheme == "https" ? 443 : 80
        var port = defaultPort
        if let portText {
            guard !portText.isEmpty, portText.count <= 5, portText.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
                let number = Int(portText), (1...65535).contains(number)
            else { throw invalid }
            port = number
        }
        guard !host.isEmpty, !host.contains(":") || authority.hasPrefix("[") else { throw invalid }
        let spelled = authority.hasPrefix("[") ? "[\(host)]" : String(host).lowercased()
        let origin = UpstreamOrigin(
            tls: scheme == "https",
            host: authority.hasPrefix("[") ? String(host) : String(host).lowercased(),
            port: port,
            hostHeader: port == defaultPort ? spelled : "\(spelled):\(port)"
        )
        return (origin, pathPrefix)
    }
}
