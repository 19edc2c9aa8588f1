/// Parses `/proc/PID/status`: `Name:\tvalue` lines.
enum ProcStatus {
    /// The value of field `name` with surrounding white space removed, or nil when there is no such field.
    static func field(_ name: String, in status: String) -> String? {
        for line in status.split(separator: "\n", omittingEmptySubsequences: true) {
            guard let colon = line.firstIndex(of: ":"), line[..<colon] == name else { continue }
            return String(line[line.index(after: colon)...].trimmingWhitespace())
        }
        return nil
    }

    /// The supplementary groups from the `Groups:` line (`Groups:\t4 24 27 \n`); empty when the line is missing or
    /// empty. Entries that are not numbers are skipped.
    static func supplementaryGroups(in status: String) -> [UInt32] {
        guard let value = Self.field("Groups", in: status) else { return [] }
        return value.split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { UInt32($0) }
    }
}

extension Substring {
    /// Without leading and trailing spaces, tabs and line breaks.
    func trimmingWhitespace() -> Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = self.firstIndex(where: { !isSpace($0) }), let last = self.lastIndex(where: { !isSpace($0) })
        else { return self[self.endIndex...] }
        return self[first...last]
    }
}
