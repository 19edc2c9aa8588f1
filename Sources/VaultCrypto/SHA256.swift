import CSodium

extension Hashing {
    /// SHA-256 (libsodium's `crypto_hash_sha256`), fed piece by piece: for contents too large to hold at once, such as
    /// a caller's executable.
    public struct SHA256: ~Copyable {
        private var state = Sodium.SHA256State()

        public init() {
            Sodium.sha256Start(&self.state)
        }

        /// Adds `bytes` to what is hashed.
        public mutating func update(_ bytes: UnsafeRawBufferPointer) {
            Sodium.sha256Add(&self.state, bytes)
        }

        /// The 32-byte digest of everything added.
        public consuming func finish() -> [UInt8] {
            Sodium.sha256Finish(&self.state)
        }
    }

    /// SHA-256 of `bytes`.
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var hasher = SHA256()
        bytes.withUnsafeBytes { hasher.update($0) }
        return hasher.finish()
    }
}

// MARK: - SHA-256 (beside the rest of the libsodium calls, on the same type)

extension Sodium {
    typealias SHA256State = crypto_hash_sha256_state

    static func sha256Start(_ state: inout SHA256State) {
        Self.ensureInitialized()
        _ = crypto_hash_sha256_init(&state)
    }

    static func sha256Add(_ state: inout SHA256State, _ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        _ = crypto_hash_sha256_update(&state, base.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
    }

    static func sha256Finish(_ state: inout SHA256State) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        _ = digest.withUnsafeMutableBufferPointer { crypto_hash_sha256_final(&state, $0.baseAddress!) }
        return digest
    }
}
