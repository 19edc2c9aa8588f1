import CSodium

/// The one place that calls libsodium. Everything else in the code base goes through the types of this module.
enum Sodium {
    /// `sodium_init` is idempotent and thread-safe; every entry point of the module calls this first.
    static let initialized: Bool = sodium_init() >= 0

    static func ensureInitialized() {
        precondition(Self.initialized, "libsodium failed to initialise")
    }

    // MARK: - Memory

    static func allocate(_ count: Int) -> UnsafeMutableRawPointer? {
        Self.ensureInitialized()
        return sodium_malloc(count)
    }

    static func free(_ pointer: UnsafeMutableRawPointer) { sodium_free(pointer) }

    static func zero(_ pointer: UnsafeMutableRawPointer, _ count: Int) { sodium_memzero(pointer, count) }

    static func lock(_ pointer: UnsafeMutableRawPointer, _ count: Int) { _ = sodium_mlock(pointer, count) }

    static func equal(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ count: Int) -> Bool {
        sodium_memcmp(a, b, count) == 0
    }

    static func randomBytes(_ pointer: UnsafeMutableRawPointer, _ count: Int) {
        Self.ensureInitialized()
        randombytes_buf(pointer, count)
    }

    static func randomBytes(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBytes { Self.randomBytes($0.baseAddress!, count) }
        return bytes
    }

    // MARK: - AEAD

    static var aes256gcmAvailable: Bool {
        Self.ensureInitialized()
        return crypto_aead_aes256gcm_is_available() == 1
    }

    static let aes256gcmNonceBytes = Int(crypto_aead_aes256gcm_NPUBBYTES)
    static let aes256gcmTagBytes = Int(crypto_aead_aes256gcm_ABYTES)
    static let xchachaNonceBytes = Int(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
    static let xchachaTagBytes = Int(crypto_aead_xchacha20poly1305_ietf_ABYTES)
    static let aeadKeyBytes = 32

    /// Encrypts `message` into `out` (message count + tag bytes). Returns false on failure.
    static func aeadEncrypt(
        algorithm: AEADAlgorithm,
        out: UnsafeMutablePointer<UInt8>,
        message: UnsafeRawBufferPointer,
        ad: UnsafeRawBufferPointer,
        nonce: UnsafeRawBufferPointer,
        key: UnsafeRawBufferPointer
    ) -> Bool {
        Self.ensureInitialized()
        var outLength: UInt64 = 0
        let m = message.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let a = ad.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let n = nonce.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let k = key.baseAddress!.assumingMemoryBound(to: UInt8.self)
        // The two constructions take the same arguments; only the function differs.
        if case .aes256gcm = algorithm, !Self.aes256gcmAvailable { return false }
        let encrypt =
            switch algorithm {
            case .aes256gcm: crypto_aead_aes256gcm_encrypt
            case .xchacha20poly1305: crypto_aead_xchacha20poly1305_ietf_encrypt
            }
        return encrypt(out, &outLength, m, UInt64(message.count), a, UInt64(ad.count), nil, n, k) == 0
    }

    /// Decrypts and authenticates `ciphertext` (message + tag) into `out`. Returns false when it does not verify.
    static func aeadDecrypt(
        algorithm: AEADAlgorithm,
        out: UnsafeMutablePointer<UInt8>?,
        ciphertext: UnsafeRawBufferPointer,
        ad: UnsafeRawBufferPointer,
        nonce: UnsafeRawBufferPointer,
        key: UnsafeRawBufferPointer
    ) -> Bool {
        Self.ensureInitialized()
        var outLength: UInt64 = 0
        let c = ciphertext.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let a = ad.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let n = nonce.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let k = key.baseAddress!.assumingMemoryBound(to: UInt8.self)
        if case .aes256gcm = algorithm, !Self.aes256gcmAvailable { return false }
        let decrypt =
            switch algorithm {
            case .aes256gcm: crypto_aead_aes256gcm_decrypt
            case .xchacha20poly1305: crypto_aead_xchacha20poly1305_ietf_decrypt
            }
        return decrypt(out, &outLength, nil, c, UInt64(ciphertext.count), a, UInt64(ad.count), n, k) == 0
    }

    // MARK: - Hashing and key derivation

    /// BLAKE2b of `message`, keyed when `key` is given, `outCount` bytes (16...64).
    static func genericHash(
        _ message: UnsafeRawBufferPointer,
        key: UnsafeRawBufferPointer?,
        outCount: Int
    ) -> [UInt8] {
        Self.ensureInitialized()
        var out = [UInt8](repeating: 0, count: outCount)
        let result = out.withUnsafeMutableBufferPointer { outBuffer in
            crypto_generichash(
                outBuffer.baseAddress!,
                outCount,
                message.baseAddress?.assumingMemoryBound(to: UInt8.self),
                UInt64(message.count),
                key?.baseAddress?.assumingMemoryBound(to: UInt8.self),
                key?.count ?? 0
            )
        }
        precondition(result == 0, "crypto_generichash failed")
        return out
    }

    /// Derives subkey number `id` in `context` (exactly 8 bytes) from a 32-byte master key into `out`.
    static func deriveSubkey(
        out: UnsafeMutableRawBufferPointer,
        id: UInt64,
        context: StaticString,
        key: UnsafeRawBufferPointer
    ) {
        Self.ensureInitialized()
        precondition(context.utf8CodeUnitCount == Int(crypto_kdf_CONTEXTBYTES), "KDF context must be 8 bytes")
        precondition(key.count == Int(crypto_kdf_KEYBYTES))
        let result = context.withUTF8Buffer { contextBytes in
            contextBytes.withMemoryRebound(to: CChar.self) { ctx in
                crypto_kdf_derive_from_key(
                    out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                    out.count,
                    id,
                    ctx.baseAddress!,
                    key.baseAddress!.assumingMemoryBound(to: UInt8.self)
                )
            }
        }
        precondition(result == 0, "crypto_kdf_derive_from_key failed")
    }
}
