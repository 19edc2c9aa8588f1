import Glibc
import TestSupport

/// One nginx process from the distribution's packages, in a directory of its own, with a configuration the harness
/// writes: the fixed-body server of the token path (``NginxServer``), the Personio-like upstream of the proxy case
/// (``NginxUpstream``) and the `proxy_pass` in front of it (``NginxProxy``).
///
/// It runs as a single process (`daemon off; master_process off`, so `worker_processes` has no effect): one pid
/// carries all of its CPU time, and pinning that pid pins all of it.
final class NginxProcess {
    /// The directory with its configuration, pid file, logs and temp paths.
    let root: String
    private let process: ServerProcess

    var pid: pid_t { self.process.pid }

    /// Writes a configuration into `root` and starts nginx with it.
    /// - Parameters:
    ///   - executable: the nginx binary.
    ///   - root: created if missing; holds everything of this nginx.
    ///   - http: what goes inside `http { … }` after the common settings: `upstream` and `server` blocks.
    ///   - readySocket: a Unix socket one of its servers listens on; nginx is ready once it accepts there (nginx
    ///     binds every listener before it accepts on any).
    /// - Throws: `BenchError` with nginx's error log when it does not start.
    init(executable: String, root: String, http: String, readySocket: String) throws {
        self.root = root
        try FileSystem.makeDirectories(root)
        let configuration = "\(root)/nginx.conf"
        try FileSystem.write(Self.configuration(root: root, http: http), to: configuration)
        self.process = try ServerProcess(
            executable: executable,
            // -e: the error log before the configuration is read; the compiled-in default may not be writable.
            arguments: ["-p", root, "-c", configuration, "-e", "\(root)/error.log"],
            logPath: "\(root)/stdout.log"
        )
        do {
            try self.process.waitUntilAccepting(readySocket)
        } catch {
            self.stop()
            throw BenchError("\(error)\n\((try? FileSystem.readText("\(root)/error.log")) ?? "")")
        }
    }

    /// The configuration as written, for the report.
    var configurationText: String {
        (try? FileSystem.readText("\(self.root)/nginx.conf")) ?? ""
    }

    func stop() {
        self.process.terminate()
    }

    deinit {
        self.stop()
    }

    private static func configuration(root: String, http: String) -> String {
        let indented = http.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.isEmpty ? "" : "    \($0)" }
            .joined(separator: "\n")
        return """
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

            \(indented)
            }

            """
    }
}
