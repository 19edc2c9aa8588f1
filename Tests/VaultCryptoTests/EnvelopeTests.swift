import Testing
import VaultCrypto

@Suite struct EnvelopeTests {
    let masterKey = MasterKey.generate(id: 1)

    // MARK: - Fields

    @Test(arguments: availableAlgorithms)
    func fieldRoundTrip(algorithm: AEADAlgorithm) throws {
        let dataKey = Envelope.generateDataKey()
        let box = try Envelope.seal(
            secret("fake-client-secret"),
            field: "client_secret",
            dataKey: dataKey,
            connectionID: "acme",
            revision: 3,
            algorithm: algorithm
        )
        #expect(box.algorithm == algorithm)
        let opened = try Envelope.open(box, field: "client_secret", dataKey: dataKey, connectionID: "acme", revision: 3)
        #expect(text(opened) == "fake-client-secret")
    }

    /// A ciphertext only opens where it was sealed: same connection, field, revision and data key.
    @Test(arguments: availableAlgorithms)
    func aFieldCiphertextMovedElsewhereFails(algorithm: AEADAlgorithm) throws {
        let dataKey = Envelope.generateDataKey()
        let box = try Envelope.seal(
            secret("fake-client-secret"),
            field: "client_secret",
            dataKey: dataKey,
            connectionID: "acme",
            revision: 3,
            algorithm: algorithm
        )
        let elsewhere: [(field: String, connection: String, revision: Int64, key: SecretBytes)] = [
            ("client_secret", "acme2", 3, dataKey),  // another connection
            ("client_secret", "acm", 3, dataKey),
            ("client_id", "acme", 3, dataKey),  // another field
            ("webhook_token", "acme", 3, dataKey),
            ("client_secret", "acme", 4, dataKey),  // a later revision: an old ciphertext replayed
            ("client_secret", "acme", 2, dataKey),
            ("client_secret", "acme", 3, Envelope.generateDataKey()),  // another revision's data key
        ]
        for place in elsewhere {
            #expect(
                throws: VaultCryptoError(.decryptionFailed, ""),
                "\(place.connection)/\(place.field)@\(place.revision)"
            ) {
                try Envelope.open(
                    box,
                    field: place.field,
                    dataKey: place.key,
                    connectionID: place.connection,
                    revision: place.revision
                )
            }
        }
    }

    /// Length prefixes keep the associated data unambiguous: ("ab", "c") and ("a", "bc") differ.
    @Test func associatedDataIsUnambiguous() throws {
        let dataKey = Envelope.generateDataKey()
        let box = try Envelope.seal(
            secret("fake"),
            field: "c_secret",
            dataKey: dataKey,
            connectionID: "ab",
            revision: 1
        )
        #expect(throws: VaultCryptoError(.decryptionFailed, "")) {
            try Envelope.open(box, field: "b_c_secret", dataKey: dataKey, connectionID: "a", revision: 1)
        }
        #expect(throws: VaultCryptoError(.decryptionFailed, "")) {
            try Envelope.open(box, field: "secret", dataKey: dataKey, connectionID: "abc_", revision: 1)
        }
    }

    @Test func bothAlgorithmsOpenSideBySideUnderOneDataKey() throws {
        let dataKey = Envelope.generateDataKey()
        let sealed = try availableAlgorithms.map { algorithm in
            try Envelope.seal(
                secret("fake-\(algorithm)"),
                field: "client_secret",
                dataKey: dataKey,
                connectionID: "acme",
                revision: 1,
                algorithm: algorithm
            )
        }
        for (box, algorithm) in zip(sealed, availableAlgorithms) {
            let opened = try Envelope.open(
                box,
                field: "client_secret",
                dataKey: dataKey,
                connectionID: "acme",
                revision: 1
            )
            #expect(text(opened) == "fake-\(algorithm)")
        }
    }

    // MARK: - Data keys

    @Test(arguments: availableAlgorithms)
    func dataKeyWrapRoundTrip(algorithm: AEADAlgorithm) throws {
        let dataKey = Envelope.generateDataKey()
        #expect(dataKey.count == 32)
        let wrapped = try Envelope.wrap(
            dataKey: dataKey,
            with: self.masterKey,
            connectionID: "acme",
            revision: 7,
            algorithm: algorithm
        )
        #expect(wrapped.ciphertext.count == 32 + algorithm.tagCount)
        let unwrapped = try Envelope.unwrap(wrapped, with: self.masterKey, connectionID: "acme", revision: 7)
        #expect(unwrapped == dataKey)
    }

    @Test(arguments: availableAlgorithms)
    func aDataKeyOnlyUnwrapsUnderItsMasterKeyConnectionAndRevision(algorithm: AEADAlgorithm) throws {
        let dataKey = Envelope.generateDataKey()
        let wrapped = try Envelope.wrap(
            dataKey: dataKey,
            with: self.masterKey,
            connectionID: "acme",
            revision: 7,
            algorithm: algorithm
        )
        // The same 32 key bytes under another id: the key id is bound too.
        let sameBytesOtherID = self.masterKey.withUnsafeKeyBytes { MasterKey(id: 2, key: SecretBytes(copying: $0)) }
        let wrong: [(MasterKey, String, Int64, String)] = [
            (MasterKey.generate(id: 1), "acme", 7, "wrong master key"),
            (sameBytesOtherID, "acme", 7, "other master key id"),
            (self.masterKey, "acme2", 7, "other connection"),
            (self.masterKey, "acme", 6, "older revision"),
            (self.masterKey, "acme", 8, "newer revision"),
        ]
        for (key, connection, revision, why) in wrong {
            #expect(throws: VaultCryptoError(.decryptionFailed, ""), "\(why)") {
                try Envelope.unwrap(wrapped, with: key, connectionID: connection, revision: revision)
            }
        }
    }

    @Test func aFieldSealedUnderADataKeyCannotBeOpenedWithTheMasterKeyOrAnotherRevisionsKey() throws {
        let revision1 = Envelope.generateDataKey()
        let revision2 = Envelope.generateDataKey()
        #expect(revision1 != revision2)
        let box = try Envelope.seal(
            secret("fake"),
            field: "client_secret",
            dataKey: revision1,
            connectionID: "acme",
            revision: 1
        )
        #expect(throws: VaultCryptoError(.decryptionFailed, "")) {
            try Envelope.open(box, field: "client_secret", dataKey: revision2, connectionID: "acme", revision: 1)
        }
    }
}
