/// The `since` of `GET /v1/audit` and `connvaultctl audit --since`: a sequence number (entries after it) or a UTC
/// date or time (entries written at or after it).
public enum AuditSince: Sendable, Equatable {
    /// Entries with a greater `seq`.
    case sequence(Int64)
    /// Entries whose `time` is this or later, spelt as the trail stores times: `2026-12-01T00:00:00Z`.
    case time(String)

    /// Parses digits as a sequence number, `YYYY-MM-DD` as that day's midnight UTC, and `YYYY-MM-DDTHH:MM:SSZ`.
    /// Nil for anything else (an offset other than `Z`, fractions, a date that does not exist).
    public init?(_ text: String) {
        let bytes = Array(text.utf8)
        if !bytes.isEmpty, bytes.count <= 19, bytes.allSatisfy(Self.isDigit), let value = Int64(text) {
            self = .sequence(value)
            return
        }
        func number(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= bytes.count, bytes[range].allSatisfy(Self.isDigit) else { return nil }
            return bytes[range].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        }
        func byte(_ index: Int, _ ascii: Unicode.Scalar) -> Bool {
            index < bytes.count && bytes[index] == UInt8(ascii: ascii)
        }
        guard bytes.count == 10 || bytes.count == 20, let year = number(0..<4), byte(4, "-"),
            let month = number(5..<7), byte(7, "-"), let day = number(8..<10),
            (1...12).contains(month), (1...Self.days(inMonth: month, year: year)).contains(day)
        else { return nil }
        if bytes.count == 10 {
            self = .time(text + "T00:00:00Z")
            return
        }
        guard byte(10, "T"), let hour = number(11..<13), byte(13, ":"), let minute = number(14..<16), byte(16, ":"),
            let second = number(17..<19), byte(19, "Z"), hour < 24, minute < 60, second < 60
        else { return nil }
        self = .time(text)
    }

    /// The query parameter's value.
    public var text: String {
        switch self {
        case .sequence(let value): String(value)
        case .time(let time): time
        }
    }

    public static let expected = "a sequence number, a date (2026-12-01) or a UTC time (2026-12-01T08:00:00Z)"

    static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    static func days(inMonth month: Int, year: Int) -> Int {
        switch month {
        case 2: year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}
