import Foundation
import VaultCrypto

#if canImport(Glibc)
import Glibc
#endif

/// A `SecretBytes` holding `text` (test values only; they are obviously fake).
func secret(_ text: String) -> SecretBytes {
    Array(text.utf8).withUnsafeBytes { SecretBytes(copying: $0) }
}

/// The contents of `secret` as a string, for assertions on fake test values.
func text(_ secret: SecretBytes) -> String {
    secret.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
}

/// The contents of `secret` as bytes.
func bytes(_ secret: SecretBytes) -> [UInt8] {
    secret.withUnsafeBytes { Array($0) }
}

/// Every algorithm this CPU can run: XChaCha20-Poly1305 always, AES-256-GCM with AES-NI.
let availableAlgorithms = AEADAlgorithm.allCases.filter(\.isAvailable)

/// `bytes` with one bit flipped at `index` (counted from the end when negative).
func flippingBit(_ bytes: [UInt8], at index: Int, bit: UInt8 = 0x01) -> [UInt8] {
    var copy = bytes
    let position = index >= 0 ? index : copy.count + index
    copy[position] ^= bit
    return copy
}

/// A fresh directory under /tmp for key-file tests (this target does not link the shared test support).
struct ScratchDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/cvk-XXXXXX".utf8CString)
        guard let created = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw ScratchError(description: "mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        self.path = String(cString: created)
    }

    func file(_ name: String) -> String { "\(self.path)/\(name)" }

    func remove() { try? FileManager.default.removeItem(atPath: self.path) }

    /// Writes `bytes` to `name` with `mode`, replacing what was there.
    @discardableResult
    func write(_ name: String, bytes: [UInt8], mode: mode_t = 0o600) throws -> String {
        let path = self.file(name)
        unlink(path)
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
            throw ScratchError(description: "cannot create \(path)")
        }
        guard chmod(path, mode) == 0 else { throw ScratchError(description: "chmod \(path) failed") }
        return path
    }
}

struct ScratchError: Error, CustomStringConvertible {
    var description: String
}
