import Foundation
import TestSupport
import Testing
import VaultAPI

#if canImport(Glibc)
import Glibc
#endif

/// Root reads the daemon's memory (`/proc/PID/mem`, allowed to root by CAP_SYS_PTRACE despite `PR_SET_DUMPABLE=0`)
/// once secrets have gone through `add`, `edit` and `reset` and every connection has closed: no copy of them may be left anywhere, raw or as
/// the JSON text it arrived in. Secrets live in `sodium_malloc` memory while a request uses them, and that memory is
/// zeroed when it is freed at the end of the request; the daemon decrypts only per request, so after these
/// operations nothing legitimately holds a plaintext secret.
@Suite(
    "Daemon memory after secrets went through it",
    .offCooperativePool,
    .timeLimit(.minutes(3)),
    // A sanitized daemon maps terabytes of readable shadow memory, which this scan would read page by page; the plain
    // build is the daemon that ships, and its memory is what is scanned.
    .enabled(if: TimeScale.sanitizer == nil, "the daemon runs under a sanitizer (Tests/Scripts/sanitize.sh)")
)
struct MemoryScanEndToEndTests {
    @Test("no copy of a secret is left in the daemon's memory once add, edit and reset are done")
    func noSecretInMemory() async throws {
        try #require(getuid() == 0, "reading another process's memory needs root")
        // Random per run, so that no copy in this test binary or on disk can be what the scan finds.
        let run = (0..<3).map { _ in String(UInt64.random(in: 0...UInt64.max), radix: 36) }.joined()
        let canaries = ["add", "edit", "reset", "escaped"].map { "CANARY-mem-\($0)-\(run)" }
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let daemon = DaemonProcess(directory: directory, arguments: ["--dev", "--log-level", "info"])
        try await Blocking.run { try daemon.start() }
        defer { daemon.stop() }
        let pid = try #require(daemon.pid)

        let results = try await Blocking.run { () throws -> [CommandResult] in
            [
                try daemon.ctl(
                    [
                        "add", "memscan", "--provider", "personio-v2", "--client-id", "fake-memscan-id",
                        "--api-base-url", "https://api.personio.example", "--secret-stdin",
                    ],
                    stdin: "\(canaries[0])\n"
                ),
                try daemon.ctl(["edit", "memscan", "--new-secret", "--secret-stdin"], stdin: "\(canaries[1])\n"),
                try daemon.ctl(["reset", "memscan", "--secret-stdin"], stdin: "\(canaries[2])\n"),
            ]
        }
        for result in results { #expect(result.status == 0, "\(result)") }
        // The same through the API with every byte of the secret written as a \u escape: the daemon must unescape
        // it without leaving either form behind.
        let escaped = canaries[3].unicodeScalars.map { String(format: "\\u%04x", $0.value) }.joined()
        let patch = try await Blocking.run {
            try RawHTTP.exchange(
                socket: daemon.adminSocket,
                "/v1/connections/memscan",
                method: "PATCH",
                headers: [("Content-Type", "application/json")],
                body: #"{"secrets":{"client_secret":"\#(escaped)"}}"#
            )
        }
        #expect(patch.status == 200, "\(patch.raw)")

        // Every request has ended once the daemon has closed every connection (it then holds its two listening
        // sockets only): the point after which nothing legitimately holds a secret. Waited for, with a bound.
        try await Blocking.run { try Self.waitForIdle(pid: pid, timeout: .seconds(20)) }
        var patterns: [(String, [UInt8])] = []
        for (index, canary) in canaries.enumerated() {
            patterns.append(("canary \(index)", Array(canary.utf8)))
            // The JSON text the client sent: the value with its closing quote.
            patterns.append(("canary \(index) as JSON", Array(#""client_secret":"\#(canary)""#.utf8)))
        }
        patterns.append(("escaped canary", Array(escaped.utf8)))
        let hits = try await Blocking.run { [patterns] in try MemoryScan.find(patterns, inProcess: pid) }
        #expect(hits.isEmpty, "found in the daemon's memory: \(hits.joined(separator: "; "))")
    }

    /// Waits until process `pid` holds no socket but its listening ones (those Linux marks as accepting in
    /// `/proc/net/unix`).
    static func waitForIdle(pid: Int32, timeout: Duration) throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            let listening = Set(try ProcFiles.unixSockets().filter { $0.value.isListening }.keys)
            let directory = "/proc/\(pid)/fd"
            let sockets = try FileManager.default.contentsOfDirectory(atPath: directory).compactMap {
                try? FileManager.default.destinationOfSymbolicLink(atPath: "\(directory)/\($0)")
            }.filter { $0.hasPrefix("socket:") }
            if sockets.allSatisfy(listening.contains) { return }
            guard ContinuousClock.now < deadline else {
                throw TestSupportError("the daemon still holds connections after \(timeout): \(sockets)")
            }
            usleep(10_000)
        }
    }
}

/// Reads every readable mapping of a process through `/proc/PID/mem`.
enum MemoryScan {
    /// Where each pattern occurs: "name at 0xADDRESS in MAPPING".
    static func find(_ patterns: [(String, [UInt8])], inProcess pid: Int32) throws -> [String] {
        let maps = try String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8)
        let fd = open("/proc/\(pid)/mem", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TestSupportError("open /proc/\(pid)/mem: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let longest = patterns.map(\.1.count).max() ?? 0
        let chunkSize = 1 << 20
        var chunk = [UInt8](repeating: 0, count: chunkSize + longest)
        var hits: [String] = []
        var scanned = 0
        for line in maps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 5, fields[1].hasPrefix("r") else { continue }
            let name = fields.count >= 6 ? String(fields[5]) : "[anonymous]"
            if name == "[vvar]" || name == "[vsyscall]" || name == "[vvar_vclock]" { continue }
            let range = fields[0].split(separator: "-")
            guard range.count == 2, let start = UInt64(range[0], radix: 16), let end = UInt64(range[1], radix: 16)
            else { continue }
            var offset = start
            while offset < end {
                let wanted = Int(min(UInt64(chunkSize + longest), end - offset))
                let got = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, wanted, off_t(offset)) }
                guard got > 0 else { break }
                scanned += got
                for (patternName, pattern) in patterns {
                    var from = 0
                    while from + pattern.count <= got {
                        guard let position = Self.search(pattern, in: chunk, from: from, to: got) else { break }
                        // A hit in the overlap is found again in the next chunk; count it there.
                        if position < chunkSize || got < chunkSize + longest {
                            hits.append(
                                "\(patternName) at 0x\(String(offset + UInt64(position), radix: 16)) in \(name)"
                            )
                        }
                        from = position + 1
                    }
                }
                offset += UInt64(chunkSize)
            }
        }
        guard scanned > 0 else { throw TestSupportError("read nothing from /proc/\(pid)/mem") }
        return hits
    }

    /// The first offset at or after `from` where `pattern` occurs within `haystack[..<end]`.
    static func search(_ pattern: [UInt8], in haystack: [UInt8], from: Int, to end: Int) -> Int? {
        haystack.withUnsafeBytes { hay in
            pattern.withUnsafeBytes { needle in
                var position = from
                while position + needle.count <= end {
                    guard
                        let hit = memchr(
                            hay.baseAddress! + position,
                            Int32(needle[0]),
                            end - needle.count + 1 - position
                        )
                    else { return nil }
                    let offset = hay.baseAddress!.distance(to: UnsafeRawPointer(hit))
                    if memcmp(hit, needle.baseAddress!, needle.count) == 0 { return offset }
                    position = offset + 1
                }
                return nil
            }
        }
    }
}
