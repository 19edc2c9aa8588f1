/// Why a caller's request cannot be proxied as it is, found before anything is sent.
///
/// `message` never quotes the rejected path, query or header value: they come from the caller and may carry
/// anything, including text meant to be confused with the vault's own.
public struct ProxyRequestError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What is wrong with the request, stable for callers to switch on (and to map to an HTTP status).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case invalidPath, invalidQuery, invalidHeader, methodNotAllowed, bodyTooLarge
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The path is not an absolute path that stays under the API base (or is too long).
        public static let invalidPath = Code(.invalidPath)
        /// The query has bytes that cannot go on the request line, or is too long.
        public static let invalidQuery = Code(.invalidQuery)
        /// A forwarded header has a malformed name or value, or there are too many.
        public static let invalidHeader = Code(.invalidHeader)
        /// Not one of ``PersonioProxy/allowedMethods``.
        public static let methodNotAllowed = Code(.methodNotAllowed)
        /// The body is larger than ``PersonioProxy/maximumRequestBodyBytes``.
        public static let bodyTooLarge = Code(.bodyTooLarge)

        public var description: String {
            switch self.value {
            case .invalidPath: "invalid_path"
            case .invalidQuery: "invalid_query"
            case .invalidHeader: "invalid_header"
            case .methodNotAllowed: "method_not_allowed"
            case .bodyTooLarge: "body_too_large"
            }
        }
    }

    public var code: Code
    /// What is wrong, in words of the vault's own (never the caller's bytes).
    public var message: String

    /// - Parameters:
    ///   - code: What is wrong.
    ///   - message: An explanation that quotes nothing from the request.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(self.code): \(self.message)" }

    /// Equal by code, as the house style asks.
    public static func == (lhs: ProxyRequestError, rhs: ProxyRequestError) -> Bool { lhs.code == rhs.code }
}
