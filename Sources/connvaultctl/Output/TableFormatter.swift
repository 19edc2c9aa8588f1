/// Aligned plain-text columns, two spaces apart; the last column is not padded.
struct TableFormatter {
    var header: [String]?
    var rows: [[String]]
    /// Spaces before every line.
    var indent: Int

    init(header: [String]? = nil, rows: [[String]] = [], indent: Int = 0) {
        self.header = header
        self.rows = rows
        self.indent = indent
    }

    mutating func append(_ row: [String]) {
        self.rows.append(row)
    }

    /// The table as lines joined by newlines, without a trailing newline.
    func render() -> String {
        let lines = (self.header.map { [$0] } ?? []) + self.rows
        let cleaned = lines.map { $0.map(Self.sanitize) }
        let columnCount = cleaned.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columnCount)
        for row in cleaned {
            for (index, cell) in row.enumerated() {
                widths[index] = max(widths[index], cell.count)
            }
        }
        let padding = String(repeating: " ", count: self.indent)
        return cleaned.map { row in
            var line = padding
            for (index, cell) in row.enumerated() {
                if index == row.count - 1 {
                    line += cell
                } else {
                    line += cell + String(repeating: " ", count: widths[index] - cell.count + 2)
                }
            }
            while line.hasSuffix(" ") { line.removeLast() }
            return line
        }.joined(separator: "\n")
    }

    /// Text from the daemon, made safe for a terminal: control characters (escape sequences, newlines) become `?`.
    static func sanitize(_ text: String) -> String {
        String(
            String.UnicodeScalarView(
                text.unicodeScalars.map { scalar in
                    scalar.properties.generalCategory == .control ? "?" : scalar
                }
            )
        )
    }
}
