/// An error from the crypto layer. Its text names what failed and why, never key material or a credential.
public struct VaultCryptoError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What went wrong, stable for callers to switch on.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case decryptionFailed, algorithmUnavailable, unknownAlgorithm, keyFile, encryptionFailed, malformed
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// A ciphertext did not authenticate: wrong key, tampered bytes, or moved to another row, field or revision.
        public static let decryptionFailed = Code(.decryptionFailed)
        /// The record's algorithm cannot run on this CPU.
        public static let algorithmUnavailable = Code(.algorithmUnavailable)
        /// The record names an algorithm id this build does not know.
        public static let unknownAlgorithm = Code(.unknownAlgorithm)
        /// The master key file is missing, unsafe or malformed.
        public static let keyFile = Code(.keyFile)
        /// libsodium refused to encrypt.
        public static let encryptionFailed = Code(.encryptionFailed)
        /// A stored record has the wrong shape (nonce or key length).
        public static let malformed = Code(.malformed)

        public var description: String { "\(self.value)" }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { self.message }

    public static func == (lhs: VaultCryptoError, rhs: VaultCryptoError) -> Bool { lhs.code == rhs.code }
}
