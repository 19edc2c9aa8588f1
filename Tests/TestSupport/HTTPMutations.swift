/// Edits of HTTP/1.1 messages for the differential parser tests (the request parser's and the upstream answer
/// parser's, each against NIO's decoder): one to three changes of the kinds that break framing.
public enum HTTPMutations {
    /// Bytes that matter to HTTP/1.1's grammar, and a few that do not.
    public static let interestingBytes: [UInt8] = [
        0x00, 0x09, 0x0A, 0x0D, 0x20, 0x3A, 0x3B, 0x2C, 0x7F, 0xFF, 0x80, 0x41, 0x30, 0x66, 0x2F,
    ]

    /// One to three edits: a byte changed to one of ``interestingBytes`` or to any byte, a byte dropped or added, a
    /// line doubled, one of `framingLines` slipped in after the first line, the end cut off.
    public static func mutate(
        _ bytes: [UInt8],
        framingLines: [String],
        using random: inout SeededGenerator
    ) -> [UInt8] {
        var bytes = bytes
        let interesting = Self.interestingBytes
        for _ in 0...random.below(3) where !bytes.isEmpty {
            let at = random.below(bytes.count)
            switch random.below(7) {
            case 0: bytes[at] = interesting[random.below(interesting.count)]
            case 1: bytes.remove(at: at)
            case 2: bytes.insert(interesting[random.below(interesting.count)], at: at)
            case 3:
                // Doubles the line `at` is in.
                let start = bytes[..<at].lastIndex(of: 0x0A).map { $0 + 1 } ?? 0
                let end = bytes[at...].firstIndex(of: 0x0A).map { $0 + 1 } ?? bytes.count
                bytes.insert(contentsOf: bytes[start..<end], at: end)
            case 4:
                let line = Array(framingLines[random.below(framingLines.count)].utf8)
                let afterFirstLine = (bytes.firstIndex(of: 0x0A) ?? 0) + 1
                bytes.insert(contentsOf: line, at: min(afterFirstLine, bytes.count))
            case 5: bytes.removeLast(random.below(min(bytes.count, 8)) + 1)
            default: bytes[at] = UInt8(truncatingIfNeeded: random.next())
            }
        }
        return bytes
    }

    /// The first 600 bytes, escaped, for a failure's message.
    public static func printable(_ bytes: [UInt8]) -> String {
        String(decoding: bytes.prefix(600), as: UTF8.self).debugDescription
    }
}
