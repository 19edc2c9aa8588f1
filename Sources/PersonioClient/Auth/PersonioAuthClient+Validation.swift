import VaultCrypto

/// Checks on the configuration, made before anything is sent, so that a bad setting fails as `.invalidRequest`
/// with a clear message instead of as a confusing answer from Personio. Messages never quote the rejected value.
extension PersonioAuthClient {
    /// Longest client id or secret accepted; Personio's are far shorter.
    static let maximumCredentialLength = 4096
    /// Longest `X-Personio-App-ID` / `X-Personio-Partner-ID` value accepted.
    static let maximumHeaderValueLength = 256

    /// `baseURL` without a trailing `/`, if it is an `http` or `https` URL without query, fragment or spaces.
    static func validatedBaseURL(_ baseURL: String) throws(PersonioAuthError) -> String {
        var trimmed = Substring(baseURL)
        while trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        let lowercased = trimmed.lowercased()
        let hasScheme = lowercased.hasPrefix("https://") || lowercased.hasPrefix("http://")
        let hostStart = trimmed.firstRange(of: "://").map { trimmed[$0.upperBound...] } ?? ""
        let clean = trimmed.utf8.allSatisfy {
            $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#")
        }
        guard hasScheme, !hostStart.isEmpty, clean else {
            throw PersonioAuthError(
                .invalidRequest,
                "the base URL must be an http or https URL without query or fragment"
            )
        }
        return String(trimmed)
    }

    /// `X-Personio-App-ID` and `X-Personio-Partner-ID`, for those configured; printable ASCII only, so that a
    /// value cannot smuggle in another header.
    static func identificationHeaders(
        appID: String?,
        partnerID: String?
    ) throws(PersonioAuthError) -> [(String, String)] {
        var headers: [(String, String)] = []
        for (name, value) in [("X-Personio-App-ID", appID), ("X-Personio-Partner-ID", partnerID)] {
            guard let value else { continue }
            guard !value.isEmpty, value.utf8.count <= Self.maximumHeaderValueLength,
                value.utf8.allSatisfy({ (0x20...0x7E).contains($0) })
            else {
                throw PersonioAuthError(
                    .invalidRequest,
                    "\(name) must be 1 to \(Self.maximumHeaderValueLength) printable ASCII characters"
                )
            }
            headers.append((name, value))
        }
        return headers
    }

    /// The client id and secret must be non-empty UTF-8 text without control characters (what Personio issues);
    /// the scope printable ASCII.
    static func validate(_ credentials: PersonioCredentials) throws(PersonioAuthError) {
        for (name, secret) in [("client id", credentials.clientID), ("client secret", credentials.clientSecret)] {
            guard secret.count > 0, secret.count <= Self.maximumCredentialLength, secret.isPrintableText else {
                throw PersonioAuthError(
                    .invalidRequest,
                    "the \(name) must be 1 to \(Self.maximumCredentialLength) bytes of text without control characters"
                )
            }
        }
        if credentials.api == .v2, let scope = credentials.scope {
            guard scope.utf8.count <= Self.maximumHeaderValueLength * 4,
                scope.utf8.allSatisfy({ (0x20...0x7E).contains($0) })
            else {
                throw PersonioAuthError(.invalidRequest, "the scope must be printable ASCII, space-delimited")
            }
        }
    }
}
