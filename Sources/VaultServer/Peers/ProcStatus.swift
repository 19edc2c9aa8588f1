/// Parses `/proc/PID/status`: `Name:\tvalue` lines. (Never for a caller's groups: those come from `SO_PEERGROUPS`.)
package enum ProcStatus {
    /// The value of field `name` with surrounding white space removed, or nil when there is no such field.
    package static func field(_ name: String, in status: String) -> String? {
        for line in status.split(separator: "\n", omittingEmptySubsequences: true) {
            guard let colon = line.firstIndex(of: ":"), line[..<colon] == name else { continue }
            return String(line[line.index(after: colon)...].trimmingWhitespace())
        }
        return nil
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
