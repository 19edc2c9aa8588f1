import Testing
import VaultCrypto

@Suite struct SHA256Tests {
    /// FIPS 180-2's examples, and the empty message.
    static let vectors: [(String, String)] = [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (
            "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        ),
    ]

    @Test("known answers", arguments: vectors)
    func knownAnswers(_ message: String, _ digest: String) {
        #expect(Hashing.hex(Hashing.sha256(Array(message.utf8))) == digest)
    }

    @Test("fed in pieces of any size, the digest is the one of the whole")
    func pieces() {
        let bytes = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let whole = Hashing.sha256(bytes)
        for size in [1, 63, 64, 65, 4096, 10_000] {
            var hasher = Hashing.SHA256()
            var offset = 0
            while offset < bytes.count {
                let end = min(offset + size, bytes.count)
                bytes[offset..<end].withUnsafeBytes { hasher.update($0) }
                offset = end
            }
            #expect(hasher.finish() == whole, "pieces of \(size)")
        }
        // A million times "a", the FIPS long example, in 1000-byte pieces.
        var long = Hashing.SHA256()
        let thousand = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 { thousand.withUnsafeBytes { long.update($0) } }
        #expect(Hashing.hex(long.finish()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}
