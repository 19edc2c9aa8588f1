import Testing
import VaultCrypto

@Suite struct AEADTests {
    let ad = Array("fake associated data".utf8)

    @Test func xchachaIsAlwaysAvailable() {
        #expect(AEADAlgorithm.xchacha20poly1305.isAvailable)
        #expect(availableAlgorithms.contains(.xchacha20poly1305))
        #expect(AEADAlgorithm.preferred.isAvailable)
        #expect(AEADAlgorithm.preferred == (AEADAlgorithm.aes256gcm.isAvailable ? .aes256gcm : .xchacha20poly1305))
    }

    @Test(arguments: availableAlgorithms)
    func roundTrip(algorithm: AEADAlgorithm) throws {
        let key = SecretBytes(randomCount: 32)
        for plaintext in ["fake-client-secret", "", String(repeating: "x", count: 4096)] {
            let box = try AEAD.seal(secret(plaintext), key: key, associatedData: self.ad, algorithm: algorithm)
            #expect(box.algorithm == algorithm)
            #expect(box.nonce.count == algorithm.nonceCount)
            #expect(box.ciphertext.count == plaintext.utf8.count + algorithm.tagCount)
            let opened = try AEAD.open(box, key: key, associatedData: self.ad)
            #expect(text(opened) == plaintext)
        }
    }

    @Test(arguments: availableAlgorithms)
    func nonceSizesAreTheAlgorithms(algorithm: AEADAlgorithm) {
        switch algorithm {
        case .aes256gcm: #expect(algorithm.nonceCount == 12)
        case .xchacha20poly1305: #expect(algorithm.nonceCount == 24)
        }
        #expect(algorithm.tagCount == 16)
    }

    @Test(arguments: availableAlgorithms)
    func everySealUsesAFreshNonce(algorithm: AEADAlgorithm) throws {
        let key = SecretBytes(randomCount: 32)
        let boxes = try (0..<16).map { _ in
            try AEAD.seal(secret("fake-same-value"), key: key, associatedData: self.ad, algorithm: algorithm)
        }
        #expect(Set(boxes.map(\.nonce)).count == boxes.count)
        #expect(Set(boxes.map(\.ciphertext)).count == boxes.count)
    }

    /// Flips bits at the start, middle and end of the ciphertext, in the tag, and in the nonce.
    @Test(arguments: availableAlgorithms)
    func aFlippedBitFailsToDecrypt(algorithm: AEADAlgorithm) throws {
        let key = SecretBytes(randomCount: 32)
        let box = try AEAD.seal(secret("fake-client-secret"), key: key, associatedData: self.ad, algorithm: algorithm)
        let messageCount = box.ciphertext.count - algorithm.tagCount
        var tampered: [SealedBox] = []
        for index in [0, messageCount / 2, messageCount - 1] {
            for bit in [UInt8(0x01), 0x80] {
                tampered.append(
                    SealedBox(
                        algorithm: algorithm,
                        nonce: box.nonce,
                        ciphertext: flippingBit(box.ciphertext, at: index, bit: bit)
                    )
                )
            }
        }
        for index in [messageCount, box.ciphertext.count - 1] {  // the tag
            tampered.append(
                SealedBox(algorithm: algorithm, nonce: box.nonce, ciphertext: flippingBit(box.ciphertext, at: index))
            )
        }
        for index in [0, box.nonce.count - 1] {
            tampered.append(
                SealedBox(algorithm: algorithm, nonce: flippingBit(box.nonce, at: index), ciphertext: box.ciphertext)
            )
        }
        for bad in tampered {
            #expect(throws: VaultCryptoError(.decryptionFailed, "")) {
                try AEAD.open(bad, key: key, associatedData: self.ad)
            }
        }
        // The untouched box still opens: the failures above are the flipped bits.
        #expect(text(try AEAD.open(box, key: key, associatedData: self.ad)) == "fake-client-secret")
    }

    @Test(arguments: availableAlgorithms)
    func wrongKeyOrAssociatedDataFails(algorithm: AEADAlgorithm) throws {
        let key = SecretBytes(randomCount: 32)
        let box = try AEAD.seal(secret("fake-client-secret"), key: key, associatedData: self.ad, algorithm: algorithm)
        #expect(throws: VaultCryptoError(.decryptionFailed, "")) {
            try AEAD.open(box, key: SecretBytes(randomCount: 32), associatedData: self.ad)
        }
        #expect(throws: VaultCryptoError(.decryptionFailed, "")) {
            try AEAD.open(box, key: key, associatedData: flippingBit(self.ad, at: 3))
        }
        #expect(throws: VaultCryptoError(.decryptionFailed, "")) {
            try AEAD.open(box, key: key, associatedData: [])
        }
    }

    @Test func bothAlgorithmsDecryptSideBySide() throws {
        let key = SecretBytes(randomCount: 32)
        let boxes = try availableAlgorithms.map { algorithm in
            (
                algorithm,
                try AEAD.seal(secret("fake-\(algorithm)"), key: key, associatedData: self.ad, algorithm: algorithm)
            )
        }
        for (algorithm, box) in boxes {
            #expect(text(try AEAD.open(box, key: key, associatedData: self.ad)) == "fake-\(algorithm)")
        }
        // A record claiming the other algorithm does not open: the algorithm id is part of what must match.
        if AEADAlgorithm.aes256gcm.isAvailable {
            let chacha = try AEAD.seal(secret("fake"), key: key, associatedData: self.ad, algorithm: .xchacha20poly1305)
            let relabelled = SealedBox(
                algorithm: .aes256gcm,
                nonce: Array(chacha.nonce.prefix(12)),
                ciphertext: chacha.ciphertext
            )
            #expect(throws: VaultCryptoError(.decryptionFailed, "")) {
                try AEAD.open(relabelled, key: key, associatedData: self.ad)
            }
        }
    }

    @Test func malformedRecordsGiveAClearError() throws {
        let key = SecretBytes(randomCount: 32)
        let box = try AEAD.seal(secret("fake"), key: key, associatedData: self.ad, algorithm: .xchacha20poly1305)
        let shortNonce = SealedBox(
            algorithm: .xchacha20poly1305,
            nonce: Array(box.nonce.dropLast()),
            ciphertext: box.ciphertext
        )
        let shortCiphertext = SealedBox(
            algorithm: .xchacha20poly1305,
            nonce: box.nonce,
            ciphertext: Array(box.ciphertext.prefix(15))
        )
        for bad in [shortNonce, shortCiphertext] {
            let error = #expect(throws: VaultCryptoError.self) { try AEAD.open(bad, key: key, associatedData: self.ad) }
            #expect(error?.code == .malformed)
        }
    }

    @Test(arguments: [0, 3, 99, 255, 256, -1])
    func unknownAlgorithmIDIsAClearError(id: Int) {
        let error = #expect(throws: VaultCryptoError.self) { try AEADAlgorithm.stored(id) }
        #expect(error?.code == .unknownAlgorithm)
        #expect(error?.description.contains("unknown algorithm id \(id)") == true)
    }

    @Test func storedIDsRoundTrip() throws {
        for algorithm in AEADAlgorithm.allCases {
            #expect(try AEADAlgorithm.stored(Int(algorithm.rawValue)) == algorithm)
        }
        #expect(AEADAlgorithm.aes256gcm.rawValue == 1)
        #expect(AEADAlgorithm.xchacha20poly1305.rawValue == 2)
    }

    @Test(.enabled(if: !AEADAlgorithm.aes256gcm.isAvailable, "only on a CPU without AES-NI"))
    func aesWithoutAESNIIsRefusedClearly() throws {
        let key = SecretBytes(randomCount: 32)
        let error = #expect(throws: VaultCryptoError.self) {
            try AEAD.seal(secret("fake"), key: key, associatedData: [], algorithm: .aes256gcm)
        }
        #expect(error?.code == .algorithmUnavailable)
    }
}
