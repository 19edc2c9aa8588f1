import Glibc
import TestSupport

/// The upstream of the proxy case: a second nginx on 127.0.0.1 that answers like Personio with fixed bodies, in
/// front of which nginx's `proxy_pass` (``NginxProxy``) and the vault's proxy route are measured.
///
/// - `POST /v2/auth/token` → a v2 token (`access_token`, `token_type`, `expires_in`, `scope`: what the broker reads);
/// - `GET /v2/persons` → ``personsBody``, about 2 KB of JSON shaped like Personio's;
/// - anything else → 404.
///
/// One process like the others (``NginxProcess``), so its CPU time per request can be read from `/proc` beside the
/// proxy's and shown not to be the bottleneck. It also listens on a Unix socket, only so the harness can tell when
/// it is ready and fetch the body it serves without a TCP client of its own.
final class NginxUpstream {
    /// The token every exchange is answered with. The vault injects it after one exchange; nginx's `proxy_pass`
    /// injects the same one as a fixed header, so both send the upstream the same bytes.
    static let accessToken = "bench-token-0123456789abcdef"
    static let tokenBody =
        "{\"access_token\":\"\(accessToken)\",\"token_type\":\"Bearer\",\"expires_in\":86400,"
        + "\"scope\":\"personio:persons:read\"}"
    /// The path nginx answers with ``personsBody``.
    static let personsPath = "/v2/persons"

    let port: Int
    let personsBody: String
    private let nginx: NginxProcess
    private let readySocket: String

    var pid: pid_t { self.nginx.pid }
    /// The API base URL of a connection pointed at this upstream.
    var baseURL: String { "http://127.0.0.1:\(self.port)" }
    var configurationText: String { self.nginx.configurationText }

    /// Starts the upstream on a free TCP port of 127.0.0.1.
    /// - Throws: `BenchError` when no port can be had or nginx does not start.
    init(executable: String, directory: TemporaryDirectory) throws {
        let root = directory.file("upstream")
        self.readySocket = "\(root)/ready.sock"
        self.personsBody = Self.persons(size: 2048)
        self.port = try Self.freePort()
        self.nginx = try NginxProcess(
            executable: executable,
            root: root,
            http: """
                server {
                    listen 127.0.0.1:\(self.port);
                    listen unix:\(self.readySocket);
                    default_type application/json;
                    location = /v2/auth/token {
                        return 200 '\(Self.tokenBody)';
                    }
                    location = /v2/persons {
                        return 200 '\(self.personsBody)';
                    }
                    location / {
                        return 404 '{"error":"not_found"}';
                    }
                }
                """,
            readySocket: self.readySocket
        )
    }

    /// Fetches ``personsPath`` through the readiness socket: what every proxy must pass back unchanged.
    func probe() throws -> BlockingHTTPConnection.Response {
        let connection = try BlockingHTTPConnection(socketPath: self.readySocket)
        defer { connection.close() }
        return try connection.get(Self.personsPath)
    }

    func stop() {
        self.nginx.stop()
    }

    /// A list of persons as Personio's v2 API returns them, padded to exactly `size` bytes (at least the size of
    /// the unpadded list). Plain ASCII without `'`, `$` or `\`, so it stands in an nginx `return` string unchanged.
    static func persons(size: Int) -> String {
        let names = [
            ("Ada", "Lovelace"), ("Alan", "Turing"), ("Grace", "Hopper"), ("Edsger", "Dijkstra"),
            ("Barbara", "Liskov"), ("Donald", "Knuth"), ("Frances", "Allen"), ("Niklaus", "Wirth"),
        ]
        let people = names.enumerated().map { index, name in
            "{\"id\":\"\(1001 + index)\",\"first_name\":\"\(name.0)\",\"last_name\":\"\(name.1)\","
                + "\"email\":\"\(name.0.lowercased()).\(name.1.lowercased())@example.com\",\"status\":\"ACTIVE\","
                + "\"created_at\":\"2026-01-05T09:00:00Z\",\"updated_at\":\"2026-11-20T12:00:00Z\"}"
        }
        let head =
            "{\"_data\":[" + people.joined(separator: ",") + "],\"_meta\":{\"links\":{\"next\":{\"href\":"
            + "\"https://api.personio.de/v2/persons?cursor=bench&limit=8\"}},\"pad\":\""
        let tail = "\"}}"
        return head + String(repeating: "x", count: max(size - head.utf8.count - tail.utf8.count, 0)) + tail
    }

    /// A TCP port of 127.0.0.1 that nothing listens on now: bound with port 0, read back, closed. Another program
    /// could take it before nginx does; nginx then fails to start with a clear message in its log.
    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw BenchError.posix("socket") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw BenchError.posix("bind", "127.0.0.1:0") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw BenchError.posix("getsockname") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
