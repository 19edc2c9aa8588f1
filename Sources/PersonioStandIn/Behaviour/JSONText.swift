/// A JSON value rendered with keys in the order given, so that bodies are predictable byte for byte.
indirect enum JSONText {
    case string(String)
    case int(Int)
    case bool(Bool)
    case null
    case object([(String, JSONText)])
    case array([JSONText])

    /// `value` as a string, or `null`.
    static func optional(_ value: String?) -> JSONText { value.map { .string($0) } ?? .null }

    var rendered: String {
        switch self {
        case .string(let value): Self.quoted(value)
        case .int(let value): String(value)
        case .bool(let value): value ? "true" : "false"
        case .null: "null"
        case .object(let members):
            "{" + members.map { Self.quoted($0.0) + ":" + $0.1.rendered }.joined(separator: ",") + "}"
        case .array(let elements): "[" + elements.map(\.rendered).joined(separator: ",") + "]"
        }
    }

    private static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}
