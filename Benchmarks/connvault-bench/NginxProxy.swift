import Glibc
import TestSupport

/// nginx's `proxy_pass` on a Unix socket in front of ``NginxUpstream``: the reference for the vault's proxy route.
/// It does what the route does on the way in, without the broker: maps the vault's path to the upstream's, injects
/// `Authorization`, and keeps upstream connections alive (`upstream {}` with `keepalive 32`, HTTP/1.1, an empty
/// `Connection` header); the upstream's answer comes back as nginx passes it (buffered: 2 KB fits its buffers).
final class NginxProxy: ServerUnderTest {
    let name = "nginx proxy"
    let socketPath: String
    let requestPath: String
    let upstreamPID: pid_t?
    private let nginx: NginxProcess

    var pid: pid_t { self.nginx.pid }
    var configurationText: String { self.nginx.configurationText }

    /// - Parameters:
    ///   - prefix: the path prefix mapped to the upstream's root, e.g. `/v1/connections/bench-proxy/proxy/`.
    ///   - requestPath: what the load generator asks for, under `prefix`.
    /// - Throws: `BenchError` when nginx does not start.
    init(
        executable: String,
        directory: TemporaryDirectory,
        upstream: NginxUpstream,
        prefix: String,
        requestPath: String
    ) throws {
        let root = directory.file("nginx-proxy")
        self.socketPath = "\(root)/proxy.sock"
        self.requestPath = requestPath
        self.upstreamPID = upstream.pid
        self.nginx = try NginxProcess(
            executable: executable,
            root: root,
            http: """
                upstream personio {
                    server 127.0.0.1:\(upstream.port);
                    keepalive 32;
                    keepalive_requests 1000000000;
                    keepalive_timeout 300s;
                }

                server {
                    listen unix:\(self.socketPath);
                    location \(prefix) {
                        proxy_pass http://personio/;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                        proxy_set_header Host 127.0.0.1:\(upstream.port);
                        proxy_set_header Authorization "Bearer \(NginxUpstream.accessToken)";
                    }
                    location / {
                        return 404;
                    }
                }
                """,
            readySocket: self.socketPath
        )
    }

    func stop() {
        self.nginx.stop()
    }
}
