import VaultAPI
import VaultCore

/// Turns a request body that failed to decode into a problem code and a message.
///
/// The message is built only from the coding path (member names the API defines, array indices) and the kind of
/// problem. It never uses `debugDescription`, the underlying error or any part of the body: the body may hold a
/// secret, and JSON parsers quote the text around a syntax error.
enum DecodingProblem {
    static func describe(_ error: RequestDecodingError) -> (VaultError.Code, String) {
        switch error {
        case .empty:
            return (.invalidJSON, "a JSON body is required")
        case .unknownField(let error):
            let path = error.path.isEmpty ? error.field : "\(error.path).\(error.field)"
            return (.unknownField, "unknown field '\(Self.printable(path))'")
        case .decoding(let error):
            return Self.describe(error)
        }
    }

    static func describe(_ error: DecodingError) -> (VaultError.Code, String) {
        switch error {
        case .typeMismatch(let type, let context):
            if Self.isProvider(context.codingPath) { return Self.invalidProvider }
            if context.codingPath.isEmpty { return (.invalidJSON, "the body must be \(Self.kind(of: type))") }
            return (.invalidJSON, "'\(Self.path(context.codingPath))' must be \(Self.kind(of: type))")
        case .valueNotFound(let type, let context):
            if Self.isProvider(context.codingPath) { return Self.invalidProvider }
            return (.invalidJSON, "'\(Self.path(context.codingPath))' must be \(Self.kind(of: type)), not null")
        case .keyNotFound(let key, let context):
            return (.invalidJSON, "member '\(Self.path(context.codingPath + [key]))' is required")
        case .dataCorrupted(let context):
            if Self.isProvider(context.codingPath) { return Self.invalidProvider }
            if context.codingPath.isEmpty { return (.invalidJSON, "the body is not valid JSON") }
            return (.invalidJSON, "'\(Self.path(context.codingPath))' has an invalid value")
        @unknown default:
            return (.invalidJSON, "the body is not valid JSON for this request")
        }
    }

    static let invalidProvider: (VaultError.Code, String) = (
        .invalidProvider,
        "provider must be one of \(Provider.allCases.map(\.rawValue).joined(separator: ", "))"
    )

    /// Whether the problem is with the top-level `provider` member of a create request.
    static func isProvider(_ path: [any CodingKey]) -> Bool {
        path.count == 1 && path[0].stringValue == "provider"
    }

    /// `settings.permissions[2]`: member names joined with dots, indices in brackets.
    static func path(_ path: [any CodingKey]) -> String {
        var result = ""
        for key in path {
            if let index = key.intValue {
                result += "[\(index)]"
            } else {
                result += result.isEmpty ? key.stringValue : ".\(key.stringValue)"
            }
        }
        return Self.printable(result.isEmpty ? "(body)" : result)
    }

    /// The JSON kind a Swift type decodes from: "a string", "a number", ….
    static func kind(of type: Any.Type) -> String {
        switch type {
        case is String.Type, is Substring.Type: return "a string"
        case is Bool.Type: return "true or false"
        case is Int.Type, is Int8.Type, is Int16.Type, is Int32.Type, is Int64.Type, is UInt.Type, is UInt8.Type,
            is UInt16.Type, is UInt32.Type, is UInt64.Type:
            return "an integer"
        case is Double.Type, is Float.Type: return "a number"
        default:
            let name = String(describing: type)
            if name.hasPrefix("Array<") || name.hasPrefix("[") && !name.contains(":") { return "an array" }
            // Keyed containers report a dictionary type; so does any object-shaped type.
            return "an object"
        }
    }

    /// At most 64 characters of printable ASCII: member names come from the request, and an unknown one is echoed.
    static func printable(_ value: String) -> String {
        let scalars = value.unicodeScalars.prefix(64).map { $0.value >= 0x20 && $0.value < 0x7F ? $0 : "?" }
        let result = String(String.UnicodeScalarView(scalars))
        return value.unicodeScalars.count > 64 ? result + "…" : result
    }
}

extension RequestDecodingError: CustomStringConvertible {
    /// The same text as the problem's detail: safe to log.
    public var description: String {
        let (code, message) = DecodingProblem.describe(self)
        return "\(message) (\(code))"
    }
}
