import VaultCrypto

/// The ways a secret's bytes are written on the wire, applied byte by byte so that the secret never passes
/// through a `String`. The redactor uses the same encodings to recognise a secret that Personio echoed back.
enum SecretEncoding: CaseIterable {
    /// The bytes unchanged.
    case raw
    /// `application/x-www-form-urlencoded`: RFC 3986 unreserved bytes as they are, every other byte as `%XX`.
    case form
    /// The inside of a JSON string: `"` and `\` escaped, control bytes as `\u00XX`, everything else unchanged
    /// (the bytes are checked to be UTF-8 text before they get here).
    case json

    private static let hexDigits = Array("0123456789ABCDEF".utf8)

    /// How many bytes `encode` emits for `bytes`.
    func encodedLength(of bytes: some Sequence<UInt8>) -> Int {
        var length = 0
        for byte in bytes { length += self.encodedLength(of: byte) }
        return length
    }

    /// Calls `emit` with each encoded byte of `bytes`, in order.
    func encode(_ bytes: some Sequence<UInt8>, _ emit: (UInt8) -> Void) {
        for byte in bytes { self.encode(byte, emit) }
    }

    /// `secret` encoded, in locked memory of its own (the redactor's and the scrubber's search patterns).
    func encoded(_ secret: SecretBytes) -> SecretBytes {
        let length = secret.withUnsafeBytes { self.encodedLength(of: $0) }
        let pattern = SecretBytes(zeroedCount: length)
        pattern.withUnsafeMutableBytes { target in
            var index = 0
            secret.withUnsafeBytes { source in
                self.encode(source) { byte in
                    target[index] = byte
                    index += 1
                }
            }
        }
        return pattern
    }

    private func encodedLength(of byte: UInt8) -> Int {
        switch self {
        case .raw: 1
        case .form: Self.isUnreserved(byte) ? 1 : 3
        case .json:
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): 2
            case 0x00..<0x20: 6
            default: 1
            }
        }
    }

    private func encode(_ byte: UInt8, _ emit: (UInt8) -> Void) {
        switch self {
        case .raw:
            emit(byte)
        case .form:
            if Self.isUnreserved(byte) {
                emit(byte)
            } else {
                emit(UInt8(ascii: "%"))
                emit(Self.hexDigits[Int(byte >> 4)])
                emit(Self.hexDigits[Int(byte & 0x0F)])
            }
        case .json:
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                emit(UInt8(ascii: "\\"))
                emit(byte)
            case 0x00..<0x20:
                for escaped in "\\u00".utf8 { emit(escaped) }
                emit(Self.hexDigits[Int(byte >> 4)])
                emit(Self.hexDigits[Int(byte & 0x0F)])
            default:
                emit(byte)
            }
        }
    }

    private static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"):
            true
        default:
            false
        }
    }
}
