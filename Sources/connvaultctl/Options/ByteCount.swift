import ArgumentParser

/// A number of bytes on the command line: digits, optionally followed by `KiB`, `MiB` or `GiB` (binary units,
/// case-insensitive, no space), such as `65536`, `512KiB` or `2MiB`. The daemon checks the range.
struct ByteCount: ExpressibleByArgument, Equatable, Sendable {
    /// The value in bytes.
    var bytes: Int

    /// The suffixes accepted, with their factors.
    static let units: [(suffix: String, factor: Int)] = [("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30)]

    init(bytes: Int) {
        self.bytes = bytes
    }

    /// Parses `argument`; nil for anything else (a sign, a fraction, another unit, a space, an overflow).
    init?(argument: String) {
        let lowered = argument.lowercased()
        var digits = Substring(lowered)
        var factor = 1
        if let unit = Self.units.first(where: { lowered.hasSuffix($0.suffix) }) {
            digits = digits.dropLast(unit.suffix.count)
            factor = unit.factor
        }
        guard (1...19).contains(digits.count),
            digits.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
            let number = Int(digits)
        else { return nil }
        let (bytes, overflow) = number.multipliedReportingOverflow(by: factor)
        guard !overflow else { return nil }
        self.bytes = bytes
    }

    static var defaultCompletionKind: CompletionKind { .default }
}
