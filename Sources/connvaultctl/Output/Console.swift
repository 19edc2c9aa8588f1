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

    private static func write(_ text: String, to descriptor: Int32) {
        var text = text
        text.withUTF8 { buffer in
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
}
