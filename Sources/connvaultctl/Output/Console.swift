import VaultAPI

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Standard output and standard error, written unbuffered with `write(2)`: each call's text is out before the
/// next line runs, so prompts, errors and results interleave in order.
enum Console {
    /// Writes `text` and a newline to standard output.
    static func output(_ text: String) {
        Self.write(text.hasSuffix("\n") ? text : text + "\n", to: STDOUT_FILENO)
    }

    /// Writes `text` and a newline to standard error.
    static func error(_ text: String) {
        Self.write(text.hasSuffix("\n") ? text : text + "\n", to: STDERR_FILENO)
    }

    /// Writes `text` as is (a prompt, without a newline) to standard error.
    static func prompt(_ text: String) {
        Self.write(text, to: STDERR_FILENO)
    }

    /// Writes `bytes` (UTF-8) and a newline to standard output, without making a `String` of them first.
    static func output(bytes: [UInt8]) {
        // The newline is written apart: appending it to a shared array would copy the whole document first.
        bytes.withUnsafeBufferPointer { Self.write($0, to: STDOUT_FILENO) }
        if bytes.last != UInt8(ascii: "\n") { Self.write("\n", to: STDOUT_FILENO) }
    }

    private static func write(_ text: String, to descriptor: Int32) {
        var text = text
        text.withUTF8 { Self.write($0, to: descriptor) }
    }

    private static func write(_ buffer: UnsafeBufferPointer<UInt8>, to descriptor: Int32) {
        var offset = 0
        while offset < buffer.count {
            let written = Glibc.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
            if written > 0 {
                offset += written
            } else if written < 0 && errno == EINTR {
                continue
            } else {
                return
            }
        }
    }

    /// A warning on standard error that does not change the exit status.
    static func warning(_ text: String) {
        Self.error("connvaultctl: warning: " + text)
    }

    /// Prints `value` as the daemon's JSON: pretty, keys sorted.
    static func json(_ value: some Encodable) throws {
        let data = try VaultJSON.encoder(pretty: true).encode(value)
        Self.output(String(decoding: data, as: UTF8.self))
    }

    /// Prints the daemon's own compact JSON answer as ``json(_:)`` prints the value it holds, re-indented instead of
    /// decoded and encoded again (``JSONReindenter``: the same bytes for a document the daemon wrote).
    ///
    /// - Parameter rootMember: The one member the answer's root object must have, holding an array
    ///   (`connections`).
    /// - Throws: `DaemonError.invalidResponse` when the body is not JSON, or not an object of that one array.
    static func json(
        reindenting body: [UInt8],
        rootMember: String,
        of type: String,
        response: ClientResponse,
        socketPath: String
    ) throws {
        let invalid = DaemonError(
            .invalidResponse,
            "\(socketPath) answered HTTP \(response.status) with a body that is not the expected \(type) JSON",
            socketPath: socketPath
        )
        let result: (bytes: [UInt8], rootMembers: [(name: String, valueStart: UInt8)])
        do {
            result = try JSONReindenter.reindent(body)
        } catch {
            throw invalid
        }
        guard result.rootMembers.count == 1, result.rootMembers[0].name == rootMember,
            result.rootMembers[0].valueStart == UInt8(ascii: "[")
        else { throw invalid }
        Self.output(bytes: result.bytes)
    }
}
