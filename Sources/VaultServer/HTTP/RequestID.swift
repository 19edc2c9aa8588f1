import Synchronization

/// An unguessable id for one request: a per-process counter keyed-hashed under a random seed (`Hasher` is SipHash
/// with a seed drawn from the system's CSPRNG at start), so ids are unique and an id in an answer says nothing about
/// others. Drawing from the CSPRNG itself would cost a `getrandom` system call per request.
///
/// Kept as a number and written as 16 hex digits only when something shows it (a log line, a 500's detail): most
/// requests do neither, and a 16-character string is one character too long to be stored without an allocation.
public struct RequestID: Sendable, Hashable, CustomStringConvertible {
    let value: UInt64

    /// The next id of this process.
    static func next() -> RequestID {
        var hasher = Hasher()
        hasher.combine(Self.counter.wrappingAdd(1, ordering: .relaxed).newValue)
        return RequestID(value: UInt64(bitPattern: Int64(hasher.finalize())))
    }

    private static let counter = Atomic<UInt64>(0)

    /// 16 lower-case hex digits.
    public var description: String {
        String(unsafeUninitializedCapacity: 16) { digits in
            for position in 0..<16 {
                let nibble = UInt8(truncatingIfNeeded: self.value >> (60 - 4 * UInt64(position))) & 0x0f
                digits[position] = nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
            }
            return 16
        }
    }
}
