import Glibc
import TestSupport

/// nginx from the distribution's packages, answering every request with a fixed body on a Unix socket: the
/// reference for what a mature C server costs per request on this machine.
///
/// It runs as a single process (``NginxProcess``): one event-loop process is nginx's best case on a 2-core machine
/// whose other core the load generator needs.
final class NginxServer: ServerUnderTest {
    let name = "nginx"
    let socketPath: String
    let requestPath: String
    private let nginx: NginxProcess

    var pid: pid_t { self.nginx.pid }

    /// Writes a configuration into `directory` and starts nginx with it.
    /// - Parameters:
    ///   - executable: the nginx binary.
    ///   - directory: holds the configuration, socket, pid file, logs and temp paths.
    ///   - body: the response body; must not contain `'`, `$` or `\` (see `ResponseBody`).
    ///   - requestPath: the path the load generator will ask for (nginx answers every path the same).
    /// - Throws: `BenchError` when nginx does not start.
    init(executable: String, directory: TemporaryDirectory, body: String, requestPath: String) throws {
        let root = directory.file("nginx")
        self.socketPath = "\(root)/nginx.sock"
        self.requestPath = requestPath
        self.nginx = try NginxProcess(
            executable: executable,
            root: root,
            http: """
                server {
                    listen unix:\(self.socketPath);
                    default_type application/json;
                    location / {
                        return 200 '\(body)';
                    }
                }
                """,
            readySocket: self.socketPath
        )
    }

    /// The first of `candidates` that is an executable file, else `nginx` found on `PATH`.
    static func findExecutable(candidates: [String] = ["/usr/sbin/nginx"]) -> String? {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        let onPath = path.split(separator: ":").map { "\($0)/nginx" }
        return (candidates + onPath).first(where: FileSystem.isExecutable)
    }

    /// What `nginx -v` says, e.g. `nginx/1.22.1`.
    static func version(executable: String) -> String {
        let output = try? ServerProcess.run(executable: executable, arguments: ["-v"]).output
        let line = output?.split(separator: "\n").first.map(String.init) ?? "unknown version"
        return line.hasPrefix("nginx version: ") ? String(line.dropFirst("nginx version: ".count)) : line
    }

    func stop() {
        self.nginx.stop()
    }
}
