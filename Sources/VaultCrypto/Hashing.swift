/// Unkeyed and keyed BLAKE2b, and hex.
public enum Hashing {
    /// BLAKE2b-256 of `bytes`.
    public static func blake2b256(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { Sodium.genericHash($0, key: nil, outCount: 32) }
    }

    /// Lower-case hex of `bytes`.
    public static func hex<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Random bytes for ids and jitter (not secret material).
    public static func randomBytes(_ count: Int) -> [UInt8] { Sodium.randomBytes(count) }
}
