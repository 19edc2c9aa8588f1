import NIOCore
import VaultCrypto

/// Where a proxied request goes and what it carries besides the caller's own parts: the checked API base, the
/// identification headers and the credential, with the scrubber and redactor for that credential.
///
/// Built once per access token and shared by every request that uses it (the scrubber's and redactor's patterns
/// live in `sodium_malloc` memory, which costs system calls to allocate and free: not something to do per request);
/// built per request for a recruiting key, which is decrypted for that request only.
///
/// Neither `description` nor reflection shows the credential.
public final class ProxyDestination: Sendable, CustomStringConvertible, CustomReflectable {
    /// The API base without a trailing `/`.
    let base: String
    /// Where the connections go: scheme, host, port.
    let origin: UpstreamOrigin
    /// The base URL's path, sent before every proxied path (empty, or starting with `/`).
    let pathPrefix: String
    /// `Host`, the identification headers and an access token's `Authorization`, encoded as header lines once.
    let headerLines: ByteBuffer
    /// A recruiting key's header lines, in `sodium_malloc` memory: a request with them is encoded into a buffer
    /// that is zeroed when freed.
    let secretHeaderLines: SecretBytes?
    let scrubber: CredentialScrubber
    let redactor: Redactor
    /// What kind of credential it injects, for logs and the audit trail: never its value.
    public let credentialKind: String

    /// - Parameters:
    ///   - baseURL: The connection's API base (`https://api.personio.de`, or one with a path prefix).
    ///   - authorization: The credential to inject.
    ///   - appID: Value of `X-Personio-App-ID`, if configured.
    ///   - partnerID: Value of `X-Personio-Partner-ID`, if configured.
    /// - Throws: ``PersonioAuthError`` `.invalidRequest` when the base URL, an identification header or the
    ///   credential cannot go into a request (no message contains the credential).
    public init(
        baseURL: String,
        authorization: ProxyAuthorization,
        appID: String?,
        partnerID: String?
    ) throws(PersonioAuthError) {
        self.base = try PersonioAuthClient.validatedBaseURL(baseURL)
        (self.origin, self.pathPrefix) = try UpstreamOrigin.parse(self.base)
        let identification = try PersonioAuthClient.identificationHeaders(appID: appID, partnerID: partnerID)
        let (credential, secret) = try PersonioProxy.credentialLines(authorization)
        var lines = "Host: \(self.origin.hostHeader)\r\n"
        for (name, value) in identification { lines += "\(name): \(value)\r\n" }
        lines += credential
        self.headerLines = ByteBuffer(string: lines)
        self.secretHeaderLines = secret
        self.scrubber = authorization.scrubber
        self.redactor = authorization.redactor
        self.credentialKind = authorization.kind
    }

    public var description: String { "ProxyDestination(base: \(self.base), credential: \(self.credentialKind))" }

    public var customMirror: Mirror { Mirror(self, children: ["base": self.base], displayStyle: .class) }
}

extension ProxyAuthorization {
    /// What the proxy injects, for logs and the audit trail: never the value.
    public var kind: String {
        switch self {
        case .bearer: "access token"
        case .recruiting: "recruiting key"
        }
    }
}
