/// The AEAD algorithms a ciphertext may be sealed with; the id is stored beside every ciphertext.
public enum AEADAlgorithm: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case aes256gcm = 1
    case xchacha20poly1305 = 2

    /// AES-256-GCM where the CPU has AES-NI and CLMUL (libsodium's condition), XChaCha20-Poly1305 otherwise.
    public static var preferred: AEADAlgorithm { Sodium.aes256gcmAvailable ? .aes256gcm : .xchacha20poly1305 }

    public var isAvailable: Bool { self == .xchacha20poly1305 || Sodium.aes256gcmAvailable }

    public var nonceCount: Int {
        switch self {
        case .aes256gcm: Sodium.aes256gcmNonceBytes
        case .xchacha20poly1305: Sodium.xchachaNonceBytes
        }
    }

    public var tagCount: Int {
        switch self {
        case .aes256gcm: Sodium.aes256gcmTagBytes
        case .xchacha20poly1305: Sodium.xchachaTagBytes
        }
    }

    public var description: String {
        switch self {
        case .aes256gcm: "aes256gcm"
        case .xchacha20poly1305: "xchacha20poly1305-ietf"
        }
    }

    /// The algorithm with stored id `id`, or a clear error.
    public static func stored(_ id: Int) throws -> AEADAlgorithm {
        guard let value = UInt8(exactly: id), let algorithm = AEADAlgorithm(rawValue: value) else {
            throw VaultCryptoError(.unknownAlgorithm, "ciphertext uses unknown algorithm id \(id)")
        }
        return algorithm
    }
}

/// A ciphertext with what is needed to open it, except the key and the associated data.
public struct SealedBox: Sendable, Equatable {
    public var algorithm: AEADAlgorithm
    public var nonce: [UInt8]
    /// Ciphertext followed by the authentication tag.
    public var ciphertext: [UInt8]

    public init(algorithm: AEADAlgorithm, nonce: [UInt8], ciphertext: [UInt8]) {
        self.algorithm = algorithm
        self.nonce = nonce
        self.ciphertext = ciphertext
    }
}

/// Authenticated encryption with associated data over libsodium.
public enum AEAD {
    /// Seals `plaintext` under `key` with a fresh random nonce.
    ///
    /// Random nonces are safe here: each data key seals a handful of fields and is then discarded, and the master
    /// key wraps one data key per connection revision, far below the 2^32 messages per key that bounds 96-bit
    /// random nonces.
    public static func seal(
        _ plaintext: SecretBytes,
        key: SecretBytes,
        associatedData: [UInt8],
        algorithm: AEADAlgorithm
    ) throws -> SealedBox {
        precondition(key.count == Sodium.aeadKeyBytes, "AEAD keys are 32 bytes")
        guard algorithm.isAvailable else {
            throw VaultCryptoError(.algorithmUnavailable, "\(algorithm) is not available on this CPU")
        }
        let nonce = Sodium.randomBytes(algorithm.nonceCount)
        var ciphertext = [UInt8](repeating: 0, count: plaintext.count + algorithm.tagCount)
        let ok = ciphertext.withUnsafeMutableBufferPointer { out in
            plaintext.withUnsafeBytes { message in
                associatedData.withUnsafeBytes { ad in
                    nonce.withUnsafeBytes { n in
                        key.withUnsafeBytes { k in
                            Sodium.aeadEncrypt(
                                algorithm: algorithm,
                                out: out.baseAddress!,
                                message: message,
                                ad: ad,
                                nonce: n,
                                key: k
                            )
                        }
                    }
                }
            }
        }
        guard ok else { throw VaultCryptoError(.encryptionFailed, "\(algorithm) encryption failed") }
        return SealedBox(algorithm: algorithm, nonce: nonce, ciphertext: ciphertext)
    }

    /// Opens `box` into fresh secret memory, or throws `decryptionFailed` when it does not authenticate.
    public static func open(_ box: SealedBox, key: SecretBytes, associatedData: [UInt8]) throws -> SecretBytes {
        let plaintext = SecretBytes(zeroedCount: max(0, box.ciphertext.count - box.algorithm.tagCount))
        _ = try Self.open(box, key: key, associatedData: associatedData, into: plaintext)
        return plaintext
    }

    /// Opens `box` into the first bytes of `buffer` (reused secret memory, for a loop over many ciphertexts: no
    /// `sodium_malloc` per value); returns how many bytes the plaintext has. The caller wipes them after use.
    /// - Throws: `malformed` when the plaintext would not fit, `decryptionFailed` as ``open(_:key:associatedData:)``.
    package static func open(
        _ box: SealedBox,
        key: SecretBytes,
        associatedData: [UInt8],
        into buffer: SecretBytes
    ) throws -> Int {
        precondition(key.count == Sodium.aeadKeyBytes, "AEAD keys are 32 bytes")
        guard box.algorithm.isAvailable else {
            throw VaultCryptoError(
                .algorithmUnavailable,
                "ciphertext was sealed with \(box.algorithm), which this CPU cannot run; decrypt it on a machine with AES-NI or rotate it there"
            )
        }
        guard box.nonce.count == box.algorithm.nonceCount, box.ciphertext.count >= box.algorithm.tagCount else {
            throw VaultCryptoError(.malformed, "ciphertext record has a malformed nonce or length")
        }
        let count = box.ciphertext.count - box.algorithm.tagCount
        guard count <= buffer.count else {
            throw VaultCryptoError(.malformed, "plaintext of \(count) bytes does not fit the buffer")
        }
        let ok = buffer.withUnsafeMutableBytes { out in
            box.ciphertext.withUnsafeBytes { c in
                associatedData.withUnsafeBytes { ad in
                    box.nonce.withUnsafeBytes { n in
                        key.withUnsafeBytes { k in
                            Sodium.aeadDecrypt(
                                algorithm: box.algorithm,
                                out: out.baseAddress?.assumingMemoryBound(to: UInt8.self),
                                ciphertext: c,
                                ad: ad,
                                nonce: n,
                                key: k
                            )
                        }
                    }
                }
            }
        }
        guard ok else {
            throw VaultCryptoError(
                .decryptionFailed,
                "ciphertext failed authentication (wrong key, tampered, or moved)"
            )
        }
        return count
    }
}
