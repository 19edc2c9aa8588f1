import NIOCore
import VaultCrypto
import ZeroedBuffers

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Request bodies that carry secrets, written byte by byte from `SecretBytes` straight into a `ByteBuffer` of
/// exactly the right capacity from ``ZeroingAllocator``, so that the bytes are zeroed when the last reference to the
/// buffer goes, once the request is over.
enum RequestBody {
    /// One piece of a body: literal text of our own, or bytes to encode.
    private enum Part {
        case literal(String)
        case secret(SecretBytes, SecretEncoding)
        case text(String, SecretEncoding)

        var length: Int {
            switch self {
            case .literal(let text): text.utf8.count
            case .secret(let secret, let encoding): secret.withUnsafeBytes { encoding.encodedLength(of: $0) }
            case .text(let text, let encoding): encoding.encodedLength(of: text.utf8)
            }
        }

        func write(into buffer: inout ByteBuffer) {
            switch self {
            case .literal(let text):
                buffer.writeString(text)
            case .secret(let secret, let encoding):
                secret.withUnsafeBytes { bytes in encoding.encode(bytes) { buffer.writeInteger($0) } }
            case .text(let text, let encoding):
                encoding.encode(text.utf8) { buffer.writeInteger($0) }
            }
        }
    }

    /// v2: `grant_type=client_credentials&client_id=…&client_secret=…[&scope=…]`, form-encoded.
    static func v2Token(_ credentials: PersonioCredentials) -> ByteBuffer {
        var parts: [Part] = [
            .literal("grant_type=client_credentials&client_id="), .secret(credentials.clientID, .form),
            .literal("&client_secret="), .secret(credentials.clientSecret, .form),
        ]
        if let scope = credentials.scope {
            parts += [.literal("&scope="), .text(scope, .form)]
        }
        return Self.assemble(parts)
    }

    /// v1: `{"client_id":"…","client_secret":"…"}`.
    static func v1Auth(_ credentials: PersonioCredentials) -> ByteBuffer {
        Self.assemble([
            .literal("{\"client_id\":\""), .secret(credentials.clientID, .json),
            .literal("\",\"client_secret\":\""), .secret(credentials.clientSecret, .json), .literal("\"}"),
        ])
    }

    /// v2 revocation: `token=…`, form-encoded.
    static func v2Revoke(token: String) -> ByteBuffer {
        Self.assemble([.literal("token="), .text(token, .form)])
    }

    private static func assemble(_ parts: [Part]) -> ByteBuffer {
        let length = parts.reduce(0) { $0 + $1.length }
        var buffer = ZeroingAllocator.allocator.buffer(capacity: length)
        let storage = buffer.capacity
        for part in parts { part.write(into: &buffer) }
        assert(buffer.readableBytes == length && buffer.capacity == storage, "request body outgrew its buffer")
        return buffer
    }
}
