import Glibc
import TestSupport

/// nginx from the distribution's packages, answering every request with a fixed body on a Unix socket: the
/// reference for what a mature C server costs per request on this machine.
///
/// It runs as a single process (`master_process off`, so `worker_processes` has no effect): one pid carries all of
/// nginx's CPU time, pinning that pid pins all of nginx, and one event-loop process is nginx's best case on a
/// 2-core machine whose other core the load generator needs.
final class NginxServer: ServerUnderTest {
    let name = "nginx"
    let socketPath: String
    let requestPath: String
    private let process: ServerProcess

    var pid: pid_t { self.process.pid }

    /// Writes a configuration into `directory` and starts nginx with it.
    /// - Parameters:
    ///   - executable: the nginx binary.
    ///   - directory: holds the configuration, socket, pid file, logs and temp paths.
    ///   - body: the response body; must not contain `'`, `$` or `\` (see `ResponseBody`).
    ///   - requestPath: the path the load generator will ask for (nginx answers every path the same).
    /// - Throws: `BenchError` when nginx does not start.
    init(executable: String, directory: TemporaryDirectory, body: String, requestPath: String) throws {
        let root = directory.file("nginx")
        try FileSystem.makeDirectories(root)
        self.socketPath = "\(root)/nginx.sock"
        self.requestPath = requestPath
        let configuration = "\(root)/nginx.conf"
        try FileSystem.write(Self.configuration(root: root, socketPath: self.socketPath, body: body), to: configuration)
        self.process = try ServerProcess(
            executable: executable,
            // -e: the error log before the configuration is read; the compiled-in default may not be writable.
            arguments: ["-p", root, "-c", configuration, "-e", "\(root)/error.log"],
            logPath: "\(root)/stdout.log"
        )
        do {
            try self.process.waitUntilAccepting(self.socketPath)
        } catch {
            self.stop()
            throw BenchError("\(error)\n\((try? FileSystem.readText("\(root)/error.log")) ?? "")")
        }
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
        self.process.terminate()
    }

    deinit {
        self.stop()
    }

    private static func configuration(root: String, socketPath: String, body: String) -> String {
        """
        # Written by connvault-bench for one run.
        daemon off;
        master_process off;
        worker_processes 1;
        pid \(root)/nginx.pid;
        error_log \(root)/error.log warn;

        events {
            worker_connections 4096;
        }

        http {
            access_log off;
            server_tokens off;
            keepalive_requests 1000000000;
            keepalive_timeout 300s;
            client_body_temp_path \(root)/client_body;
            proxy_temp_path \(root)/proxy;
            fastcgi_temp_path \(root)/fastcgi;
            uwsgi_temp_path \(root)/uwsgi;
            scgi_temp_path \(root)/scgi;

            server {
                listen unix:\(socketPath);
                default_type application/json;
                location / {
                    return 200 '\(body)';
                }
            }
        }

        """
    }
}
