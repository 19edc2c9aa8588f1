import Testing
import VaultCrypto

@Suite struct MasterKeyTests {
    @Test func fingerprintsAreSixteenHexCharacters() {
        let key = MasterKey.generate(id: 1)
        for value in ["fake-a", "", String(repeating: "z", count: 4096)] {
            let fingerprint = key.fingerprint(of: secret(value))
            #expect(fingerprint.count == 16)
            #expect(fingerprint.allSatisfy { "0123456789abcdef".contains($0) })
        }
    }

    @Test func equalValuesHaveEqualFingerprintsUnderOneMasterKey() {
        let key = MasterKey.generate(id: 1)
        #expect(key.fingerprint(of: secret("fake-secret")) == key.fingerprint(of: secret("fake-secret")))
        #expect(key.fingerprint(of: secret("fake-secret")) != key.fingerprint(of: secret("fake-secret2")))
        // The same key bytes give the same fingerprints whatever the id (the key, not the row, keys them).
        let sameBytes = key.withUnsafeKeyBytes { MasterKey(id: 9, key: SecretBytes(copying: $0)) }
        #expect(sameBytes.fingerprint(of: secret("fake-secret")) == key.fingerprint(of: secret("fake-secret")))
    }

    @Test func fingerprintsDifferUnderAnotherMasterKey() {
        let one = MasterKey.generate(id: 1)
        let two = MasterKey.generate(id: 2)
        #expect(one.fingerprint(of: secret("fake-secret")) != two.fingerprint(of: secret("fake-secret")))
    }

    @Test func fingerprintIsNotAPlainHashOfTheValue() {
        let value = "fake-secret"
        let plain = Hashing.hex(Hashing.blake2b256(Array(value.utf8)).prefix(8))
        #expect(MasterKey.generate(id: 1).fingerprint(of: secret(value)) != plain)
    }

    @Test func checkValueDiffersBetweenKeysAndIsStable() {
        let one = MasterKey.generate(id: 1)
        let two = MasterKey.generate(id: 1)
        #expect(one.checkValue.count == 16)
        #expect(one.checkValue == one.checkValue)
        #expect(one.checkValue != two.checkValue)
        let copy = one.withUnsafeKeyBytes { MasterKey(id: 1, key: SecretBytes(copying: $0)) }
        #expect(copy.checkValue == one.checkValue)
        // The check value is not the key, nor a prefix of it.
        let keyBytes = one.withUnsafeKeyBytes { Array($0) }
        #expect(!keyBytes.starts(with: one.checkValue))
    }

    @Test func descriptionIsRedacted() {
        let key = MasterKey.generate(id: 4)
        let hex = key.withUnsafeKeyBytes { Hashing.hex($0) }
        #expect(key.description == "MasterKey(id: 4, redacted)")
        #expect(!"\(key)".contains(hex))
        #expect(!String(reflecting: key).contains(hex.prefix(16)))
    }
}

@Suite struct HashingTests {
    @Test func hexIsLowerCase() {
        #expect(Hashing.hex([0x00, 0x0f, 0xa0, 0xff]) == "000fa0ff")
        #expect(Hashing.hex([UInt8]()) == "")
    }

    @Test func blake2b256KnownAnswer() {
        // BLAKE2b-256 of the empty string.
        #expect(
            Hashing.hex(Hashing.blake2b256([])) == "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"
        )
        #expect(Hashing.blake2b256(Array("abc".utf8)).count == 32)
        #expect(Hashing.blake2b256(Array("abc".utf8)) != Hashing.blake2b256(Array("abd".utf8)))
    }

    @Test func randomBytesDiffer() {
        #expect(Hashing.randomBytes(16).count == 16)
        #expect(Hashing.randomBytes(16) != Hashing.randomBytes(16))
    }
}
