import Logging
import NIOCore
import NIOHTTP1
import VaultAPI
import VaultCore
import VaultLocks

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One HTTP request, complete with its body, as a route sees it.
public struct Request: Sendable {
    /// An unguessable id for this request, in every log line about it and in 500 answers.
    public var id: RequestID
    public var method: HTTPMethod
    /// The path without the query, exactly as sent (not percent-decoded).
    public var path: Substring
    /// The query without the `?`, exactly as sent.
    public var query: Substring
    public var headers: HTTPHeaders
    /// Who sent it, from the connection's peer credentials.
    public var caller: Caller
    /// The `{name}` segments of the matched route.
    public var parameters: PathParameters
    /// The body; empty when none was sent.
    public var body: RequestBody
    /// The connection's logger, with the peer's metadata; ``logger`` adds the request's.
    var connectionLogger: Logger

    /// A logger with the peer's metadata, `request.id` and, on routes with an `{id}`, `connection.id`. Built when
    /// asked for: most requests log nothing, and metadata costs a dictionary copy per key.
    public var logger: Logger {
        RequestDispatcher.requestLogger(self.connectionLogger, requestID: self.id, connectionID: self.parameters["id"])
    }

    /// The path parameter `name`; routes only ask for names in their own pattern.
    public func parameter(_ name: String) -> String {
        guard let value = self.parameters[name] else { preconditionFailure("route has no parameter \(name)") }
        return value
    }

    /// Decodes the JSON body as `T`.
    ///
    /// - Parameter containsSecrets: When true, secret members are taken out of the raw body and copied straight into
    ///   ``SecretInput``s before the rest is decoded (``SecretFieldScanner``: no `String` ever holds a secret), and
    ///   the body's bytes are zeroed right after decoding (they are zeroed when the request ends in any case).
    /// - Throws: ``RequestDecodingError`` when the body is not a valid `T`; the error boundary turns it into a 400
    ///   that names the member and the kind of problem, never the body's content.
    public func decode<T: Decodable & Sendable>(_ type: T.Type, containsSecrets: Bool = false) throws -> T {
        defer { if containsSecrets { self.body.zero() } }
        return try self.body.decode(type, extractingSecrets: containsSecrets)
    }

    /// Decodes the JSON body as `T`, or returns nil when there is none.
    public func decodeIfPresent<T: Decodable & Sendable>(_ type: T.Type, containsSecrets: Bool = false) throws -> T? {
        self.body.isEmpty ? nil : try self.decode(type, containsSecrets: containsSecrets)
    }
}

/// A request body, owned by one request. Its bytes are zeroed on ``zero()`` and when the last reference goes: bodies
/// may carry secrets (create, edit, reset), and the buffer is the first place they land in the daemon.
public final class RequestBody: Sendable {
    private let buffer: Locked<ByteBuffer>
    /// The number of bytes, fixed when the body is complete.
    public let count: Int

    /// - Parameter buffer: The body; the caller must hold no other reference to its storage, or zeroing it here
    ///   would zero a copy.
    init(_ buffer: ByteBuffer) {
        self.count = buffer.readableBytes
        self.buffer = Locked(buffer)
    }

    /// No body.
    static let empty = RequestBody(ByteBuffer())

    public var isEmpty: Bool { self.count == 0 }

    /// Overwrites every byte of the body with zeroes.
    public func zero() {
        self.buffer.withLock { buffer in
            guard buffer.readableBytes > 0 else { return }
            buffer.withUnsafeMutableReadableBytes { bytes in
                zeroBytes(bytes)
            }
        }
    }

    /// The bytes, to forward them (the proxy); not for bodies that hold secrets.
    public func bytes() -> ByteBuffer {
        self.buffer.withLock { ByteBuffer(bytes: $0.readableBytesView) }
    }

    /// A copy of the bytes, for tests.
    func snapshot() -> [UInt8] {
        self.buffer.withLock { Array($0.readableBytesView) }
    }

    func decode<T: Decodable & Sendable>(_ type: T.Type, extractingSecrets: Bool = false) throws -> T {
        try self.buffer.withLock { buffer in
            try buffer.withUnsafeMutableReadableBytes { bytes in
                guard let base = bytes.baseAddress, bytes.count > 0 else {
                    throw RequestDecodingError.empty
                }
                let decoder = VaultJSON.decoder()
                do {
                    if extractingSecrets {
                        // Before the decoder sees the body: it would turn each secret into a `String`.
                        decoder.userInfo[ExtractedSecrets.userInfoKey] = ExtractedSecrets(
                            try SecretFieldScanner.extract(bytes)
                        )
                    }
                    // Decode straight from the buffer: a `Data` copy would be one more copy to zero.
                    let data = Data(bytesNoCopy: base, count: bytes.count, deallocator: .none)
                    return try decoder.decode(type, from: data)
                } catch let error as UnknownFieldError {
                    throw RequestDecodingError.unknownField(error)
                } catch let error as DecodingError {
                    throw RequestDecodingError.decoding(error)
                }
            }
        }
    }

    deinit {
        self.zero()
    }
}

/// A request body that is not the JSON its route expects. Mapped to a problem at the error boundary
/// (``ErrorResponse``), which never includes the body's content.
public enum RequestDecodingError: Error, Sendable {
    /// The route requires a body and none was sent.
    case empty
    /// A member the type does not define.
    case unknownField(UnknownFieldError)
    /// Not JSON, or JSON of the wrong shape.
    case decoding(DecodingError)
}
