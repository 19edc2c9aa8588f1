import NIOCore
import VaultCrypto
import VaultLocks

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Overwrites every occurrence of the credential a proxied request carried (the recruiting key, or the access token)
/// in Personio's answer, byte for byte with `*`.
///
/// An upstream that echoes its request (a debug endpoint, a misconfigured gateway) would otherwise hand the injected
/// credential to the caller, who must never see a recruiting key and, under a proxy-only rule, not the token either.
/// The credential is matched as written on the wire and in the encodings an echo is likely to use (raw, JSON string,
/// form-encoded). Replacing rather than removing keeps every length, `Content-Length` included, valid.
///
/// The patterns live in `sodium_malloc` memory, like the credential itself.
struct CredentialScrubber: Sendable {
    /// Encoded forms of the credential, distinct and non-empty.
    private let patterns: [SecretBytes]
    /// The longest pattern's length minus one: the bytes a body stream holds back between chunks, so that an
    /// occurrence split across two chunks is still seen whole.
    let overlap: Int

    static let replacement = UInt8(ascii: "*")

    /// A scrubber that finds nothing.
    static let none = CredentialScrubber(secrets: [])

    /// - Parameter secrets: The credentials to scrub.
    init(secrets: [SecretBytes]) {
        var patterns: [SecretBytes] = []
        for secret in secrets where secret.count > 0 {
            for encoding in SecretEncoding.allCases {
                let pattern = encoding.encoded(secret)
                if !patterns.contains(pattern) { patterns.append(pattern) }
            }
        }
        self.patterns = patterns
        self.overlap = max(0, (patterns.map(\.count).max() ?? 0) - 1)
        self.shortest = patterns.map(\.count).min() ?? Int.max
    }

    /// The shortest pattern's length: anything shorter holds no occurrence.
    private let shortest: Int

    var isEmpty: Bool { self.patterns.isEmpty }

    /// Overwrites every occurrence in `bytes` with `*`.
    ///
    /// - Parameter bytes: The bytes to scan, changed in place.
    /// - Returns: Whether anything was overwritten.
    @discardableResult
    func scrub(_ bytes: UnsafeMutableRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return false }
        var found = false
        for pattern in self.patterns {
            pattern.withUnsafeBytes { needle in
                if Self.overwrite(needle, in: base, count: bytes.count) { found = true }
            }
        }
        return found
    }

    /// `value` with every occurrence overwritten, and whether there was one.
    func scrub(_ value: String) -> (String, Bool) {
        var value = value
        let scrubbed = value.withUTF8 { self.scrubbed(UnsafeRawBufferPointer($0)) }
        return scrubbed.map { ($0, true) } ?? (value, false)
    }

    /// `value`'s bytes with every occurrence overwritten, as a string; nil when there is none (nearly always: it
    /// looks first, and copies only to overwrite).
    func scrubbed(_ value: UnsafeRawBufferPointer) -> String? {
        guard !self.isEmpty, value.count >= self.shortest, self.occurs(in: value) else { return nil }
        var bytes = Array(value)
        bytes.withUnsafeMutableBytes { _ = self.scrub($0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Whether any pattern occurs in `bytes`.
    private func occurs(in bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return false }
        for pattern in self.patterns {
            let found = pattern.withUnsafeBytes { needle in
                guard let needleBase = needle.baseAddress, needle.count > 0, bytes.count >= needle.count else {
                    return false
                }
                let first = Int32(needle[0])
                let last = bytes.count - needle.count
                var position = 0
                while position <= last {
                    guard let hit = memchr(base + position, first, last - position + 1) else { return false }
                    if memcmp(hit, needleBase, needle.count) == 0 { return true }
                    position = base.distance(to: UnsafeRawPointer(hit)) + 1
                }
                return false
            }
            if found { return true }
        }
        return false
    }

    /// Overwrites `buffer`'s readable bytes in place (copy-on-write gives it storage of its own first if shared).
    func scrub(_ buffer: inout ByteBuffer) -> Bool {
        guard !self.isEmpty, buffer.readableBytes >= self.shortest else { return false }
        // Looked at first: a piece of Personio's answer shares its storage with the decoder's buffer, and asking
        // for it mutable would copy it, for nothing in nearly every answer.
        guard buffer.withUnsafeReadableBytes({ self.occurs(in: $0) }) else { return false }
        return buffer.withUnsafeMutableReadableBytes { self.scrub($0) }
    }

    /// memchr for the first byte, then memcmp for the rest: the common case (no occurrence) is a memchr per
    /// pattern over the buffer.
    private static func overwrite(
        _ needle: UnsafeRawBufferPointer,
        in base: UnsafeMutableRawPointer,
        count: Int
    ) -> Bool {
        guard let needleBase = needle.baseAddress, needle.count > 0, count >= needle.count else { return false }
        let first = Int32(needle[0])
        let last = count - needle.count
        var position = 0
        var found = false
        while position <= last {
            guard let hit = memchr(base + position, first, last - position + 1) else { break }
            let offset = base.distance(to: hit)
            if memcmp(hit, needleBase, needle.count) == 0 {
                memset(hit, Int32(Self.replacement), needle.count)
                found = true
                position = offset + needle.count
            } else {
                position = offset + 1
            }
        }
        return found
    }
}

/// Reports, at most once per response, that the credential was found in it and overwritten.
final class CredentialEchoReport: Sendable {
    private let reported = Locked(false)
    private let onEcho: (@Sendable () async -> Void)?

    init(_ onEcho: (@Sendable () async -> Void)?) {
        self.onEcho = onEcho
    }

    /// Calls the handler the first time only.
    func report() async {
        let first = self.reported.withLock { reported in
            defer { reported = true }
            return !reported
        }
        if first, let onEcho = self.onEcho { await onEcho() }
    }
}
