import Foundation
import Testing

/// The module graph of docs/architecture.md, checked against the sources: every `import` of a module must be one the
/// graph allows it, and every dependency Package.swift lists for a target must be imported by it (a listed but unused
/// dependency hides the real graph and costs build time).
@Suite("Module graph")
struct ModuleGraphTests {
    /// Modules of the toolchain every target may import.
    static let system: Set<String> = [
        "Foundation", "FoundationEssentials", "Glibc", "Darwin", "Musl", "Synchronization", "Dispatch", "_Concurrency",
    ]

    /// What each library and executable may import (besides `system`). Layers only point down: VaultCore knows no
    /// Personio, no NIO and no HTTP; the broker reads the vault, never the other way; the CLI links no HTTP client
    /// stack of its own but the blocking one it carries.
    static let allowed: [String: Set<String>] = [
        "CSodium": [],
        "CVaultShims": [],
        "VaultLocks": [],
        "VaultCrypto": ["CSodium"],
        "VaultStore": ["GRDB", "Logging"],
        "VaultAPI": [],
        "VaultCore": ["VaultAPI", "VaultCrypto", "VaultStore", "VaultLocks", "Logging"],
        "VaultMetrics": ["CoreMetrics", "VaultLocks"],
        "ZeroedBuffers": ["CVaultShims", "VaultLocks", "NIOCore"],
        "HTTP1Wire": ["NIOCore"],
        "PersonioClient": [
            "HTTP1Wire", "VaultCrypto", "CVaultShims", "ZeroedBuffers", "VaultLocks", "NIOCore", "NIOPosix", "NIOHTTP1",
            "NIOSSL",
            "AsyncHTTPClient", "Logging",
        ],
        "TokenBroker": [
            "VaultCore", "VaultAPI", "VaultCrypto", "PersonioClient", "VaultMetrics", "CVaultShims", "VaultLocks",
            "NIOCore", "Logging",
        ],
        "VaultServer": [
            "VaultCore", "TokenBroker", "VaultAPI", "PersonioClient", "HTTP1Wire", "VaultMetrics", "CVaultShims",
            "ZeroedBuffers", "NIOCore", "NIOPosix", "NIOHTTP1", "NIOExtras", "Logging", "ServiceLifecycle",
            "UnixSignals", "CoreMetrics",
            "Prometheus", "AsyncHTTPClient", "VaultCrypto", "VaultLocks",
        ],
        "VaultClient": [
            "VaultAPI", "CVaultShims", "ZeroedBuffers", "VaultLocks", "AsyncHTTPClient", "NIOCore", "NIOPosix",
            "NIOHTTP1",
        ],
        "PersonioStandIn": ["VaultLocks", "NIOCore", "NIOPosix", "NIOHTTP1"],
        "connvaultd": ["VaultServer", "VaultCore", "ArgumentParser", "Logging"],
        "ConnVaultCtlSupport": [],
        "connvaultctl": ["VaultAPI", "CVaultShims", "ConnVaultCtlSupport", "ArgumentParser"],
        "connvault-bench": ["TestSupport", "PersonioStandIn", "CVaultShims", "ArgumentParser"],
        "bench-nio-server": ["NIOCore", "NIOPosix", "NIOHTTP1", "ArgumentParser"],
        "connvault-scale": ["TestSupport", "PersonioStandIn", "VaultCore", "VaultAPI", "Logging", "ArgumentParser"],
        "metrics-bench": ["VaultMetrics", "VaultAPI", "CoreMetrics", "Prometheus"],
        "connvault-fuzz": [
            "VaultServer", "VaultCore", "VaultStore", "VaultAPI", "VaultCrypto", "PersonioClient",
            "ConnVaultCtlSupport", "CLibFuzzer", "Logging", "NIOCore", "NIOEmbedded",
        ],
        "CLibFuzzer": [],
    ]

    /// Modules no library below the server may import, whatever the table above says (a second line of defence
    /// when the table is edited).
    static let forbidden: [String: Set<String>] = [
        "VaultCore": [
            "PersonioClient", "TokenBroker", "VaultServer", "NIOCore", "NIOPosix", "NIOHTTP1", "AsyncHTTPClient",
        ],
        "VaultStore": ["VaultCore", "TokenBroker", "PersonioClient", "VaultServer"],
        "VaultAPI": ["VaultCore", "TokenBroker", "PersonioClient", "VaultServer", "NIOCore"],
        "PersonioClient": ["VaultCore", "VaultStore", "TokenBroker", "VaultServer"],
        "TokenBroker": ["VaultServer", "VaultStore", "NIOPosix", "NIOHTTP1"],
        "connvaultctl": ["VaultClient", "AsyncHTTPClient", "NIOCore", "NIOPosix", "NIOSSL"],
    ]

    @Test("every library and executable imports only what the graph allows")
    func importsFollowTheGraph() throws {
        let package = try PackageManifest.load()
        for target in package.targets where !target.isTest && target.name != "TestSupport" {
            let allowed = try #require(Self.allowed[target.name], "\(target.name) is not in the module graph")
            let imports = try target.imports()
            let extra = imports.subtracting(allowed).subtracting(Self.system)
            #expect(extra.isEmpty, "\(target.name) imports \(extra.sorted()), which the graph does not allow")
            let bad = imports.intersection(Self.forbidden[target.name] ?? [])
            #expect(bad.isEmpty, "\(target.name) must not import \(bad.sorted())")
        }
    }

    @Test("every target imports each dependency Package.swift lists for it")
    func dependenciesAreImported() throws {
        let package = try PackageManifest.load()
        #expect(package.targets.count > 20, "Package.swift parsed into \(package.targets.count) targets")
        for target in package.targets where !target.isSystemLibrary {
            let unused = target.dependencies.subtracting(try target.imports())
            #expect(unused.isEmpty, "\(target.name) lists \(unused.sorted()) in Package.swift but never imports them")
        }
    }

    @Test("the graph has no cycle and every library in it is a target")
    func graphIsAcyclic() throws {
        let package = try PackageManifest.load()
        let names = Set(package.targets.map(\.name))
        for name in Self.allowed.keys { #expect(names.contains(name), "\(name) is in the graph but not a target") }
        var visiting: Set<String> = []
        var done: Set<String> = []
        func visit(_ module: String, path: [String]) {
            if done.contains(module) { return }
            if visiting.contains(module) {
                Issue.record("import cycle: \((path + [module]).joined(separator: " -> "))")
                return
            }
            visiting.insert(module)
            for next in Self.allowed[module] ?? [] where Self.allowed[next] != nil {
                visit(next, path: path + [module])
            }
            visiting.remove(module)
            done.insert(module)
        }
        for module in Self.allowed.keys.sorted() { visit(module, path: []) }
    }

    @Test("the import reader sees every form of import")
    func importReader() {
        let source = """
            import Logging
            @testable import VaultCore
            public import VaultAPI
            package import NIOCore
            @preconcurrency import Dispatch
            @_spi(CustomByteBufferAllocator) import NIOHTTP1
            #if canImport(Glibc)
                import Glibc
            #endif
            import struct NIOPosix.NIOThreadPool
            // import Commented
            let text = "import NotAModule"
            """
        #expect(
            PackageManifest.imports(in: source)
                == ["Logging", "VaultCore", "VaultAPI", "NIOCore", "Dispatch", "NIOHTTP1", "Glibc", "NIOPosix"]
        )
    }
}

/// The targets of the root Package.swift, read from its text: name, folder and the modules it depends on.
struct PackageManifest {
    struct Target {
        var name: String
        var kind: String
        var path: String
        var dependencies: Set<String>
        let root: URL

        var isTest: Bool { self.kind == "testTarget" || self.path.hasPrefix("Tests/") }
        var isSystemLibrary: Bool { self.kind == "systemLibrary" }

        /// The modules the target's Swift files import.
        func imports() throws -> Set<String> {
            let folder = self.root.appendingPathComponent(self.path)
            guard let files = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: nil) else {
                return []
            }
            var imports: Set<String> = []
            for case let file as URL in files where file.pathExtension == "swift" {
                imports.formUnion(PackageManifest.imports(in: try String(contentsOf: file, encoding: .utf8)))
            }
            return imports
        }
    }

    var targets: [Target]

    static var root: URL {
        // Tests/ArchitectureTests/ModuleGraphTests.swift → the package root.
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    static func load() throws -> PackageManifest {
        let text = try String(contentsOf: Self.root.appendingPathComponent("Package.swift"), encoding: .utf8)
        // `let nioCore: Target.Dependency = .product(name: "NIOCore", …)`
        var variables: [String: String] = [:]
        for match in text.matches(of: /let (\w+): Target\.Dependency = \.product\(name: "([^"]+)"/) {
            variables[String(match.1)] = String(match.2)
        }
        var targets: [Target] = []
        let starts = text.ranges(of: /\.(target|executableTarget|testTarget|systemLibrary)\(/)
        for (index, start) in starts.enumerated() {
            let end = index + 1 < starts.count ? starts[index + 1].lowerBound : text.endIndex
            let block = text[start.lowerBound..<end]
            guard let kind = block.firstMatch(of: /\.(\w+)\(/)?.1,
                let name = block.firstMatch(of: /name: "([^"]+)"/)?.1
            else { continue }
            let defaultFolder = kind == "testTarget" ? "Tests" : "Sources"
            let path = block.firstMatch(of: /path: "([^"]+)"/).map { String($0.1) } ?? "\(defaultFolder)/\(name)"
            var dependencies: Set<String> = []
            if let list = block.firstMatch(of: /dependencies: \[([^\]]*)\]/)?.1 {
                for product in list.matches(of: /\.product\(name: "([^"]+)"/) { dependencies.insert(String(product.1)) }
                let withoutProducts = list.replacing(/\.product\([^)]*\)/, with: "")
                for quoted in withoutProducts.matches(of: /"([^"]+)"/) { dependencies.insert(String(quoted.1)) }
                for word in withoutProducts.matches(of: /\b([a-z]\w*)\b/) {
                    if let module = variables[String(word.1)] { dependencies.insert(module) }
                }
            }
            targets.append(
                Target(name: String(name), kind: String(kind), path: path, dependencies: dependencies, root: Self.root)
            )
        }
        return PackageManifest(targets: targets)
    }

    /// The modules `source` imports, in order of first appearance, in any of Swift's import forms.
    ///
    /// Read by hand, byte by byte, not with a `Regex`: one regex match per line of every source file took the
    /// module graph tests 24 s of CPU in a debug build, on both threads of the cooperative pool of a two-core
    /// machine, and stalled every async test of the run that long (a 300 ms proxy time-out was seen to end 14 s
    /// late).
    static func imports(in source: String) -> [String] {
        var seen: [String] = []
        for line in source.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            guard let module = Self.importedModule(in: line) else { continue }
            if !seen.contains(module) { seen.append(module) }
        }
        return seen
    }

    /// The module of an import declaration: `[attributes] [public|package|internal] import [kind] Module…`.
    private static func importedModule(in line: Substring.UTF8View) -> String? {
        var rest = line[...]
        func skipSpaces() -> Bool {
            let start = rest.startIndex
            rest = rest.drop { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
            return rest.startIndex != start
        }
        func word() -> Substring.UTF8View.SubSequence {
            let word = rest.prefix { Self.isIdentifierByte($0) }
            rest = rest[word.endIndex...]
            return word
        }
        _ = skipSpaces()
        // Attributes: `@name` or `@name(…)`, each followed by white space.
        while rest.first == UInt8(ascii: "@") {
            rest = rest.dropFirst()
            guard !word().isEmpty else { return nil }
            if rest.first == UInt8(ascii: "(") {
                guard let close = rest.firstIndex(of: UInt8(ascii: ")")) else { return nil }
                rest = rest[rest.index(after: close)...]
            }
            guard skipSpaces() else { return nil }
        }
        var keyword = String(Substring(word()))
        if ["public", "package", "internal"].contains(keyword) {
            guard skipSpaces() else { return nil }
            keyword = String(Substring(word()))
        }
        guard keyword == "import", skipSpaces() else { return nil }
        var module = String(Substring(word()))
        if ["struct", "class", "enum", "protocol", "func", "typealias", "var", "let"].contains(module) {
            guard skipSpaces() else { return nil }
            module = String(Substring(word()))
        }
        guard let first = module.utf8.first, !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else {
            return nil
        }
        return module
    }

    private static func isIdentifierByte(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "_")
    }
}
