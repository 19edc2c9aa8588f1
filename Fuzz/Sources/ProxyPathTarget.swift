import PersonioClient
import VaultAPI
import VaultCore

/// The proxy's path and query checks (`PersonioProxy.validatedPath`, `normalizedPath`, `forwardedQuery`) and the
/// allow-list patterns matched against their result (`ProxyPattern`, `GrantRule.proxyPatternProblem`). Input: the
/// raw path, then (after a NUL) the raw query, then (after another) a proxy pattern.
final class ProxyPathTarget: FuzzTarget {
    func run(_ input: [UInt8]) {
        var reader = InputReader(input)
        let rawPath = reader.string()
        let hasQuery = !reader.isAtEnd
        let query = reader.string()
        let patternText = reader.string()

        let validated = PersonioProxy.validatedPath(rawPath, query: hasQuery ? query : nil)
        let normalized = PersonioProxy.normalizedPath(rawPath)
        switch (validated, normalized) {
        case (.success(let sent), .success(let decoded)):
            Self.checkSent(sent, rawPath: rawPath)
            Self.checkDecoded(decoded)
            // Checking the path sent upstream again changes nothing, and it decodes to what was checked.
            FuzzTargets.check(
                (try? PersonioProxy.validatedPath(sent, query: nil).get()) == sent,
                "validatedPath is not idempotent"
            )
            FuzzTargets.check(
                (try? PersonioProxy.normalizedPath(sent).get()) == decoded,
                "the path sent upstream decodes to something else than what was checked"
            )
        case (.success, .failure):
            FuzzTargets.fail("validatedPath accepted a path normalizedPath refused")
        case (.failure, .success):
            // Only the query can make the difference.
            FuzzTargets.check(hasQuery, "normalizedPath accepted a path validatedPath refused")
        case (.failure, .failure):
            break
        }

        if hasQuery, case .success = PersonioProxy.validatedPath("/x", query: query) {
            let forwarded = PersonioProxy.forwardedQuery(query)
            FuzzTargets.check(
                forwarded.utf8.allSatisfy { (0x21...0x7E).contains($0) && $0 != UInt8(ascii: "#") },
                "forwarded query is not printable ASCII without '#'"
            )
            FuzzTargets.check(PersonioProxy.forwardedQuery(forwarded) == forwarded, "forwardedQuery not idempotent")
        }

        let problem = GrantRule.proxyPatternProblem(patternText)
        if let pattern = ProxyPattern(parsing: patternText) {
            FuzzTargets.check(ProxyPattern.problem(with: patternText) == nil, "a pattern parsed despite a problem")
            if case .success(let decoded) = normalized {
                for method in ["GET", "POST", "DELETE"] { _ = pattern.matches(method: method, path: decoded) }
            }
            _ = problem
        }
    }

    /// Absolute, every byte a `pchar`, `/` or the `%` of an escape.
    static func checkSent(_ sent: String, rawPath: String) {
        let bytes = Array(sent.utf8)
        FuzzTargets.check(bytes.first == UInt8(ascii: "/"), "path sent upstream is not absolute")
        FuzzTargets.check(bytes.count <= PersonioProxy.maximumPathBytes, "path sent upstream too long")
        FuzzTargets.check(
            bytes.allSatisfy { (0x21...0x7E).contains($0) && !Array("?#\\ \"<>[]{}|^`".utf8).contains($0) },
            "path sent upstream holds a byte a URI cannot carry"
        )
    }

    /// No dot, empty or encoded segment is left once decoded.
    static func checkDecoded(_ decoded: String) {
        // Bytes, not Characters: a combining mark after the '/' makes one Character of the two.
        FuzzTargets.check(decoded.utf8.first == UInt8(ascii: "/"), "normalized path is not absolute")
        let segments = decoded.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst()
        for segment in segments {
            let name = segment.prefix { $0 != UInt8(ascii: ";") }
            FuzzTargets.check(!name.isEmpty, "normalized path has an empty segment")
            FuzzTargets.check(!name.allSatisfy { $0 == UInt8(ascii: ".") }, "normalized path has a '.' or '..' segment")
            FuzzTargets.check(
                !segment.contains(UInt8(ascii: "%")) && !segment.contains(UInt8(ascii: "\\")),
                "normalized path has '%' or '\\'"
            )
            FuzzTargets.check(!segment.contains { $0 < 0x20 || $0 == 0x7F }, "normalized path has a control byte")
        }
    }
}
