import Foundation
import TestSupport
import Testing
import VaultAPI

/// Mutated and random requests against a live daemon: it always answers (or closes) cleanly, never with a 5xx,
/// never goes down, and its audit chain stays intact. `make test` runs a short fixed-seed profile; `make fuzz` sets
/// `CONNVAULT_FUZZ_ITERATIONS` (and optionally `CONNVAULT_FUZZ_SEED`) for a long run.
@Suite("Fuzz end to end", .offCooperativePool, .timeLimit(.minutes(20)))
struct FuzzEndToEndTests {
    static let iterations = FuzzProfile.iterations(standard: 300)
    static let seed = FuzzProfile.seed(fixed: 0xC0FFEE)

    static let seeds: [String] = [
        #"{"id":"fz","provider":"personio-v2","settings":{"api_base_url":"https://api.personio.de","scope":"personio:persons:read"},"secrets":{"client_id":"fake-id","client_secret":"fake-secret"},"grants":{"uids":[1000],"groups":["staff"],"units":["a.service"]}}"#,
        #"{"settings":{"app_id":"APP","partner_id":null},"secrets":{"client_secret":"fake-2"}}"#,
        #"{"reason":"maintenance"}"#,
        #"{"client_secret":"fake-3"}"#,
        #"{"uids":[1,2],"groups":[],"units":["x.service"]}"#,
    ]
    static let targets: [(String, String)] = [
        ("POST", "/v1/connections"), ("PATCH", "/v1/connections/fz"), ("POST", "/v1/connections/fz/disable"),
        ("POST", "/v1/connections/fz/reset"), ("PUT", "/v1/connections/fz/grants"),
        ("POST", "/v1/connections/fz/enable"),
        ("GET", "/v1/audit?since=1&limit=5"), ("DELETE", "/v1/connections/fz"),
    ]

    @Test("random and mutated requests never take the daemon down")
    func fuzz() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let daemon = DaemonProcess(directory: directory, arguments: ["--dev", "--log-level", "warning"])
        try daemon.start()
        defer { daemon.stop() }
        var random = SeededGenerator(seed: Self.seed)
        var statuses: [Int: Int] = [:]
        for iteration in 0..<Self.iterations {
            let bytes = Self.request(&random)
            let response = try RawHTTP.request(
                socket: daemon.adminSocket,
                bytes: bytes,
                timeout: .seconds(5),
                closeWrite: true
            )
            statuses[response.status, default: 0] += 1
            #expect(response.status < 500, "iteration \(iteration) seed \(Self.seed): \(response.raw.prefix(300))")
            if !daemon.isRunning {
                Issue.record("daemon died at iteration \(iteration) (seed \(Self.seed))")
                return
            }
        }
        let health = try RawHTTP.request(socket: daemon.adminSocket, "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(health.status == 200)
        let chain = try VaultJSON.decoder().decode(
            AuditVerification.self,
            from: Data(try daemon.ctl(["audit", "--verify", "--json"]).stdout.utf8)
        )
        #expect(chain.intact)
        #expect(
            statuses.keys.contains { (200..<300).contains($0) },
            "the fuzzer never produced a valid request: \(statuses)"
        )
        #expect(statuses.keys.contains { (400..<500).contains($0) })
    }

    /// A request built from a valid one with a few mutations: byte flips, truncation, duplication, odd lengths,
    /// junk headers, or pure noise.
    static func request(_ random: inout SeededGenerator) -> [UInt8] {
        let (method, path) = Self.targets.randomElement(using: &random)!
        var body = Array(Self.seeds.randomElement(using: &random)!.utf8)
        let mutations = Int.random(in: 0...3, using: &random)
        for _ in 0..<mutations where !body.isEmpty {
            switch Int.random(in: 0..<6, using: &random) {
            case 0: body[Int.random(in: 0..<body.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
            case 1: body.removeLast(Int.random(in: 0..<body.count, using: &random))
            case 2:
                body.insert(
                    contentsOf: body.prefix(Int.random(in: 0...body.count, using: &random)),
                    at: Int.random(in: 0...body.count, using: &random)
                )
            case 3:
                body.insert(
                    UInt8(ascii: ["{", "}", "\"", ",", ":", "[", "\\"].randomElement(using: &random)!),
                    at: Int.random(in: 0...body.count, using: &random)
                )
            case 4:
                body = (0..<Int.random(in: 0...200, using: &random)).map { _ in
                    UInt8.random(in: 0...255, using: &random)
                }
            default: break
            }
        }
        var head =
            "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nConnection: close\r\n"
        switch Int.random(in: 0..<10, using: &random) {
        case 0: head += "Content-Length: \(body.count + Int.random(in: 1...50, using: &random))\r\n"
        case 1: head += "Transfer-Encoding: chunked\r\n"
        case 2: head += "Content-Length: -1\r\n"
        case 3: head += "X-\(String(repeating: "a", count: Int.random(in: 1...3000, using: &random))): y\r\n"
        default: head += "Content-Length: \(body.count)\r\n"
        }
        var bytes = Array((head + "\r\n").utf8) + body
        if Int.random(in: 0..<12, using: &random) == 0 {
            bytes = (0..<Int.random(in: 1...512, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
        }
        return bytes
    }
}
