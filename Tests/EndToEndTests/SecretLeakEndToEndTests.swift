import Foundation
import TestSupport
import Testing
import VaultAPI

/// A canary secret put through every admin operation appears in no response, log line, audit row, metric, or byte
/// of the database, WAL or SHM files.
@Suite("Canary end to end", .offCooperativePool, .timeLimit(.minutes(5)))
struct SecretLeakEndToEndTests {
    @Test("canary secrets appear nowhere")
    func canary() throws {
        let canaries = [
            "CANARY-e2e-first-7f3a9c", "CANARY-e2e-second-41d2be", "CANARY-e2e-third-9a0c11", "CANARY-e2e-hook-5b6e70",
        ]
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let daemon = DaemonProcess(directory: directory, arguments: ["--dev", "--log-level", "trace"])
        try daemon.start()
        var outputs: [CommandResult] = []
        func ctl(_ arguments: [String], stdin: String? = nil) throws {
            let result = try daemon.ctl(arguments, stdin: stdin)
            #expect(result.status == 0, "\(arguments): \(result)")
            outputs.append(result)
        }
        try ctl(
            [
                "add", "canary", "--provider", "personio-v2", "--client-id", "fake-canary-id", "--with-webhook-token",
                "--secret-stdin", "--json",
            ],
            stdin: "\(canaries[0])\n\(canaries[3])\n"
        )
        try ctl(
            ["add", "canary-two", "--provider", "personio-v1", "--client-id", "fake-canary-id-2", "--secret-stdin"],
            stdin: "\(canaries[0])\n"
        )
        try ctl(["edit", "canary", "--new-secret", "--secret-stdin", "--json"], stdin: "\(canaries[1])\n")
        try ctl(["reset", "canary", "--secret-stdin", "--json"], stdin: "\(canaries[2])\n")
        try ctl(["disable", "canary", "--json"])
        try ctl(["enable", "canary", "--json"])
        try ctl(["grant", "canary", "--allow-uid", "4242", "--json"])
        try ctl(["rotate-key", "--json"])
        daemon.stop()
        try daemon.start()
        try ctl(["show", "canary", "--json"])
        try ctl(["show", "canary"])
        try ctl(["list", "--json"])
        try ctl(["status", "--json"])
        try ctl(["audit", "--json", "--limit", "1000"])
        try ctl(["audit"])
        let metrics = try RawHTTP.request(
            socket: daemon.adminSocket,
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        try ctl(["disconnect", "canary", "--yes"])
        try ctl(["disconnect", "canary-two", "--yes"])
        try ctl(["audit", "--json", "--limit", "1000"])
        daemon.stop()

        var haystacks: [(String, [UInt8])] = [("metrics", Array(metrics.raw.utf8)), ("log", Array(daemon.log().utf8))]
        for (index, output) in outputs.enumerated() {
            haystacks.append(("output \(index)", Array((output.stdout + output.stderr).utf8)))
        }
        for suffix in ["", "-wal", "-shm", "-journal"] {
            if let data = FileManager.default.contents(atPath: daemon.databasePath + suffix) {
                haystacks.append(("vault.sqlite3\(suffix)", Array(data)))
            }
        }
        #expect(haystacks.count >= 10)
        for canary in canaries {
            let needle = Array(canary.utf8)
            for (name, bytes) in haystacks {
                #expect(!Self.contains(bytes, needle), "\(canary) found in \(name)")
            }
        }
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count, let first = needle.first else { return false }
        var index = 0
        while index <= haystack.count - needle.count {
            if haystack[index] == first && Array(haystack[index..<index + needle.count]) == needle { return true }
            index += 1
        }
        return false
    }
}
