/// The byte classes and comparisons the vault's HTTP/1.1 code shares: the proxy's header filters, the upstream answer
/// parser and the server's request parser and codec. They compare bytes as they are, without building lower-cased
/// strings: they run for every header of every request and proxied answer.
///
/// Not generic: they are called from other modules, where a generic function runs unspecialized, through the
/// collection's witness table (measured at twelve times the cost: 218,000 instructions per proxied request).
package enum HTTPBytes {
    /// RFC 9110 `tchar`: the characters of a header name, a method or a chunk extension.
    @inlinable package static func isToken(_ byte: UInt8) -> Bool {
        Self.tokenBytes[Int(byte)]
    }

    /// Whether `bytes` start with `prefix` (lower-case ASCII) in any letter case.
    ///
    /// Eight bytes at a time once `prefix` has eight: most names compared are 10 to 19 bytes long, and a byte at a
    /// time cost about 90 instructions a name.
    package static func hasPrefixIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ prefix: StaticString) -> Bool {
        let count = prefix.utf8CodeUnitCount
        guard bytes.count >= count else { return false }
        guard count > 0, let base = bytes.baseAddress else { return true }
        let expected = UnsafeRawPointer(prefix.utf8Start)
        guard count >= 8 else {
            for index in 0..<count {
                let byte = bytes[index]
                let letter = expected.load(fromByteOffset: index, as: UInt8.self)
                guard byte == letter || (byte &- UInt8(ascii: "A") < 26 && byte | 0x20 == letter) else { return false }
            }
            return true
        }
        var index = 0
        while true {
            let word = expected.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            let seen = base.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            guard seen | Self.lowerCaseLetterBits(word) == word else { return false }
            if index + 8 == count { return true }
            // The last eight bytes may overlap the ones compared before.
            index = min(index + 8, count - 8)
        }
    }

    /// `0x20` in each byte of `word` that is a lower-case ASCII letter, 0 in the others (every byte of `word` is
    /// ASCII, so no sum carries into the next byte). A byte seen matches a lower-case letter of `word` when setting
    /// its `0x20` bit gives the letter (it is the letter or its capital), any other byte of `word` only as it is.
    @inline(__always) private static func lowerCaseLetterBits(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let fromA = word &+ ones &* (0x80 - 0x61)  // high bit set where the byte is at least "a"
        let pastZ = word &+ ones &* (0x80 - 0x7B)  // high bit set where the byte is past "z"
        return (fromA & ~pastZ & (ones &* 0x80)) >> 2
    }

    /// Whether `bytes` spell `word` (lower-case ASCII) in any letter case.
    package static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ word: StaticString) -> Bool {
        bytes.count == word.utf8CodeUnitCount && Self.hasPrefixIgnoringCase(bytes, word)
    }

    package static func equalsIgnoringCase(_ bytes: UnsafeBufferPointer<UInt8>, _ word: StaticString) -> Bool {
        Self.equalsIgnoringCase(UnsafeRawBufferPointer(bytes), word)
    }

    package static func hasPrefixIgnoringCase(_ bytes: UnsafeBufferPointer<UInt8>, _ prefix: StaticString) -> Bool {
        Self.hasPrefixIgnoringCase(UnsafeRawBufferPointer(bytes), prefix)
    }

    /// Whether `string` spells `word` (lower-case ASCII) in any letter case; a header name, say.
    package static func equalsIgnoringCase(_ string: String, _ word: StaticString) -> Bool {
        guard string.utf8.count == word.utf8CodeUnitCount else { return false }
        return string.utf8.withContiguousStorageIfAvailable { Self.equalsIgnoringCase($0, word) }
            ?? Array(string.utf8).withUnsafeBufferPointer { Self.equalsIgnoringCase($0, word) }
    }

    @usableFromInline static let tokenBytes: [Bool] = (0..<256).map { value in
        switch UInt8(value) {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        case let byte:
            "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}

// MARK: - Writing heads

extension HTTPBytes {
    /// Copies `bytes` into `out` at `at`; returns the position after them.
    ///
    /// A head's writer copies its pieces with these, inside one `ByteBuffer.writeWithUnsafeMutableBytes`, into a
    /// buffer sized for them: a `ByteBuffer` write per piece costs about 230 instructions, and a position captured
    /// and changed by nested functions would be checked for exclusive access on every write, hence the position
    /// returned.
    @inlinable package static func put(
        _ bytes: UnsafeRawBufferPointer,
        into out: UnsafeMutableRawBufferPointer,
        at: Int
    ) -> Int {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return at }
        precondition(at + bytes.count <= out.count, "a head's buffer was sized too small")
        out.baseAddress!.advanced(by: at).copyMemory(from: base, byteCount: bytes.count)
        return at + bytes.count
    }

    @inlinable package static func put(_ text: String, into out: UnsafeMutableRawBufferPointer, at: Int) -> Int {
        var text = text
        return text.withUTF8 { Self.put(UnsafeRawBufferPointer($0), into: out, at: at) }
    }

    @inlinable package static func put(_ text: StaticString, into out: UnsafeMutableRawBufferPointer, at: Int) -> Int {
        text.withUTF8Buffer { Self.put(UnsafeRawBufferPointer($0), into: out, at: at) }
    }
}
