/// Secret bytes (keys, client secrets) in memory from `sodium_malloc`: guard pages around it, locked against swap
/// where the system allows, and zeroed by `sodium_free` when the last reference goes.
///
/// Never copy the contents into a `String`, `Data` or `[UInt8]` that outlives a request. Compare with `==`, which
/// is constant-time. The description never shows the contents.
public final class SecretBytes: @unchecked Sendable, CustomStringConvertible, Equatable {
    // @unchecked Sendable: the pointer is owned by this instance alone, written only during initialisation
    // (or through `withUnsafeMutableBytes` before the instance is shared) and freed in `deinit`.
    private let pointer: UnsafeMutableRawPointer
    public let count: Int

    /// Uninitialised-then-zeroed secret memory of `count` bytes.
    public init(zeroedCount count: Int) {
        precondition(count >= 0)
        guard let pointer = Sodium.allocate(max(count, 1)) else {
            fatalError("sodium_malloc failed for \(count) bytes")
        }
        self.pointer = pointer
        self.count = count
        Sodium.zero(pointer, max(count, 1))
    }

    /// `count` cryptographically random bytes.
    public convenience init(randomCount count: Int) {
        self.init(zeroedCount: count)
        Sodium.randomBytes(self.pointer, count)
    }

    /// A copy of `bytes`. The caller zeroes its own buffer.
    public convenience init(copying bytes: UnsafeRawBufferPointer) {
        self.init(zeroedCount: bytes.count)
        if let base = bytes.baseAddress, bytes.count > 0 {
            self.pointer.copyMemory(from: base, byteCount: bytes.count)
        }
    }

    /// A copy of `bytes`, which this initialiser zeroes afterwards.
    public convenience init(consuming bytes: inout [UInt8]) {
        self.init(zeroedCount: bytes.count)
        bytes.withUnsafeMutableBytes { buffer in
            if let base = buffer.baseAddress, buffer.count > 0 {
                self.pointer.copyMemory(from: base, byteCount: buffer.count)
                Sodium.zero(base, buffer.count)
            }
        }
        bytes.removeAll()
    }

    deinit {
        Sodium.free(self.pointer)
    }

    /// Calls `body` with the secret's bytes; do not let them escape the closure.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: self.pointer, count: self.count))
    }

    /// Calls `body` with the secret's bytes to fill them in; only before the instance is shared.
    public func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeMutableRawBufferPointer(start: self.pointer, count: self.count))
    }

    /// Zeroes the first `count` bytes (reused secret memory, between two values).
    package func wipe(_ count: Int) {
        Sodium.zero(self.pointer, min(count, self.count))
    }

    /// Constant-time comparison (`sodium_memcmp`); different lengths compare unequal.
    public static func == (lhs: SecretBytes, rhs: SecretBytes) -> Bool {
        guard lhs.count == rhs.count else { return false }
        return Sodium.equal(lhs.pointer, rhs.pointer, lhs.count)
    }

    /// Whether every byte is printable ASCII or UTF-8 without control characters (what Personio secrets are).
    public var isPrintableText: Bool {
        self.withUnsafeBytes { bytes in
            guard bytes.allSatisfy({ $0 >= 0x20 && $0 != 0x7F }) else { return false }
            // C1 controls (U+0080...U+009F, e.g. U+0085 NEXT LINE) are control characters too; in valid UTF-8 they
            // are exactly the pairs 0xC2 0x80...0x9F.
            for index in bytes.indices.dropLast() where bytes[index] == 0xC2 {
                if (0x80...0x9F).contains(bytes[index + 1]) { return false }
            }
            // Validated without building a `String`: that would be a copy of the secret in ordinary heap memory.
            var parser = Unicode.UTF8.ForwardParser()
            var iterator = bytes.makeIterator()
            while true {
                switch parser.parseScalar(from: &iterator) {
                case .valid: continue
                case .emptyInput: return true
                case .error: return false
                }
            }
        }
    }

    public var description: String { "SecretBytes(redacted, \(self.count) bytes)" }
}

extension SecretBytes: CustomDebugStringConvertible {
    public var debugDescription: String { self.description }
}
