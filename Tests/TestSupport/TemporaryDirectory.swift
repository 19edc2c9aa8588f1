#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A fresh directory under /tmp with a short name (`/tmp/cv-XXXXXX`), so Unix socket paths inside it stay far
/// below the 108-byte limit. Removed by `remove()`; tests call it in a `defer`.
public struct TemporaryDirectory: Sendable {
    public let path: String

    public init(prefix: String = "cv") throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard let created else {
            throw TestSupportError("mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        self.path = String(cString: created)
    }

    /// `path/name`.
    public func file(_ name: String) -> String { "\(self.path)/\(name)" }

    /// Removes the directory and everything below it.
    public func remove() {
        try? FileManager.default.removeItem(atPath: self.path)
    }
}

/// A failure in test scaffolding (not in the code under test).
public struct TestSupportError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
