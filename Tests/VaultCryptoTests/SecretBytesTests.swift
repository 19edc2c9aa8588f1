import Testing
import VaultCrypto

@Suite struct SecretBytesTests {
    @Test func equalityIsByContent() {
        #expect(secret("fake-secret-1") == secret("fake-secret-1"))
        #expect(secret("fake-secret-1") != secret("fake-secret-2"))
        // Same prefix, different length: unequal, and no out-of-bounds read.
        #expect(secret("fake-secret") != secret("fake-secret-1"))
        #expect(secret("") == secret(""))
    }

    @Test func descriptionNeverShowsTheContent() {
        let value = secret("fake-DISTINCTIVE-value")
        for rendered in [
            value.description, value.debugDescription, String(describing: value), "\(value)", String(reflecting: value),
        ] {
            #expect(!rendered.contains("DISTINCTIVE"))
            #expect(rendered.contains("redacted"))
        }
        #expect(value.description.contains("22 bytes"))
    }

    @Test func copyingAndConsumingKeepTheBytes() {
        #expect(text(secret("fake-copy")) == "fake-copy")
        var buffer = Array("fake-consume".utf8)
        let consumed = SecretBytes(consuming: &buffer)
        #expect(buffer.isEmpty)
        #expect(text(consumed) == "fake-consume")
    }

    @Test func zeroedAndRandom() {
        let zeroed = SecretBytes(zeroedCount: 32)
        #expect(zeroed.count == 32)
        #expect(bytes(zeroed).allSatisfy { $0 == 0 })
        let a = SecretBytes(randomCount: 32)
        let b = SecretBytes(randomCount: 32)
        #expect(a.count == 32)
        #expect(a != b)
        #expect(a != zeroed)
    }

    @Test(arguments: [
        ("fake-client-secret_0123456789", true),
        ("fake secret with spaces ~!@#$%^&*()", true),
        ("fäke-sécret-ünïcode", true),
        ("", true),
        ("fake\nsecret", false),
        ("fake\rsecret", false),
        ("fake\tsecret", false),
        ("fake\u{07}secret", false),
        ("fake\u{7F}secret", false),
        ("fake\u{85}secret", false),  // NEXT LINE, a C1 control
        ("fake\u{9F}secret", false),
        ("fake\u{00}secret", false),
    ])
    func printableText(value: String, printable: Bool) {
        #expect(secret(value).isPrintableText == printable)
    }

    @Test func invalidUTF8IsNotPrintableText() {
        let invalid = [UInt8(ascii: "a"), 0xFF, 0xC2, UInt8(ascii: "b")]
        #expect(!invalid.withUnsafeBytes { SecretBytes(copying: $0) }.isPrintableText)
        let truncated = [UInt8(ascii: "a"), 0xC2]
        #expect(!truncated.withUnsafeBytes { SecretBytes(copying: $0) }.isPrintableText)
    }
}
