import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The daemon's memory is closed to every other process of a non-root uid, its own uid included: it makes itself
/// non-dumpable (`PR_SET_DUMPABLE` 0, `ProcessHardening`), so `PTRACE_ATTACH` and `PTRACE_SEIZE` fail with EPERM and
/// `/proc/PID/mem` (then owned by root) cannot be opened (EACCES). The daemon runs as uid 65534 here; the attacker is
/// a Python script under `setpriv`, as uid 65534 (the daemon's own) and as uid 65533. The control: a plain process of
/// uid 65534 (`sleep`) is attached, seized and opened by the same script as the same uid, so the refusals come from
/// the daemon's hardening, not from this machine (no Yama here, no lack of rights).
@Suite(
    "The daemon cannot be traced by another non-root process",
    .offCooperativePool,
    .timeLimit(.minutes(2)),
    .enabled(
        if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"),
        "needs root for setpriv, and python3"
    )
)
struct PtraceEndToEndTests {
    static let daemonUID: uid_t = 65534
    static let otherUID: uid_t = 65533

    /// For each pid: PTRACE_ATTACH (and detach), PTRACE_SEIZE, and open("/proc/PID/mem"): "ok" or the errno's name.
    static let attacker = """
        import ctypes, errno, json, os, sys
        libc = ctypes.CDLL(None, use_errno=True)
        libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        libc.ptrace.restype = ctypes.c_long
        PTRACE_ATTACH, PTRACE_DETACH, PTRACE_SEIZE = 16, 17, 0x4206
        def call(request, pid):
            ctypes.set_errno(0)
            if libc.ptrace(request, pid, None, None) == 0:
                return "ok"
            return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
        out = {"uid": os.getuid()}
        for pid in map(int, sys.argv[1:]):
            result = {"attach": call(PTRACE_ATTACH, pid)}
            if result["attach"] == "ok":
                os.waitpid(pid, 0)
                call(PTRACE_DETACH, pid)
            result["seize"] = call(PTRACE_SEIZE, pid)
            try:
                os.close(os.open("/proc/%d/mem" % pid, os.O_RDONLY))
                result["mem"] = "ok"
            except OSError as e:
                result["mem"] = errno.errorcode.get(e.errno, str(e.errno))
            out[str(pid)] = result
        print(json.dumps(out))
        """

    @Test("PTRACE_ATTACH, PTRACE_SEIZE and /proc/PID/mem are refused to the daemon's own uid and to another")
    func notAttachable() async throws {
        let directory = try TemporaryDirectory(prefix: "cvpt")
        defer { directory.remove() }
        #expect(chown(directory.path, Self.daemonUID, Self.daemonUID) == 0)
        let log = directory.file("connvaultd.log")
        let daemon = try ChildProcess(
            "/usr/bin/setpriv",
            Self.asUser(Self.daemonUID) + [Binaries.daemon, "--dev", "--log-level", "info"],
            directory: directory.path,
            standardOutput: .file(log),
            standardError: .standardOutput
        )
        defer {
            daemon.signal(SIGTERM)
            if !daemon.hasExited(within: .seconds(10)) { daemon.killGroup() }
            _ = daemon.waitForExit(timeout: .seconds(10))
        }
        let control = try ChildProcess("/usr/bin/setpriv", Self.asUser(Self.daemonUID) + ["/bin/sleep", "120"])
        defer {
            control.killGroup()
            _ = control.waitForExit(timeout: .seconds(10))
        }
        let socket = "\(directory.path)/.connvault/admin.sock"
        try await Blocking.run {
            try Self.waitUntil("connvaultd answers on \(socket)") {
                guard daemon.isRunning else {
                    throw TestSupportError(
                        "connvaultd ended: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")"
                    )
                }
                let response = try? RawHTTP.request(
                    socket: socket,
                    "GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n"
                )
                return response?.status == 200
            }
            try Self.waitUntil("sleep runs as uid \(Self.daemonUID)") {
                Self.comm(control.pid) == "sleep" && Self.realUID(control.pid) == Self.daemonUID
            }
        }
        // setpriv executed the daemon in its own process: the pid is the daemon's, and it is not root.
        #expect(Self.comm(daemon.pid) == "connvaultd")
        #expect(Self.realUID(daemon.pid) == Self.daemonUID)

        let results = try await Blocking.run {
            try [Self.daemonUID, Self.otherUID].map { uid in
                try Self.attack(as: uid, pids: [daemon.pid, control.pid])
            }
        }
        let refused = ["attach": "EPERM", "seize": "EPERM", "mem": "EACCES"]
        for result in results {
            #expect(result["\(daemon.pid)"] == refused, "as uid \(result["uid"] ?? [:]): \(result)")
        }
        // The control: the same script, as the same uid, traces and reads an ordinary process of that uid.
        #expect(results[0]["\(control.pid)"] == ["attach": "ok", "seize": "ok", "mem": "ok"], "\(results[0])")
        #expect(results[1]["\(control.pid)"]?["attach"] == "EPERM", "\(results[1])")
        #expect(daemon.isRunning)
    }

    static func asUser(_ uid: uid_t) -> [String] {
        ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups"]
    }

    /// The attacker's findings by pid (and its own uid under "uid").
    static func attack(as uid: uid_t, pids: [pid_t]) throws -> [String: [String: String]] {
        let result = try Command.run(
            "/usr/bin/setpriv",
            Self.asUser(uid) + ["/usr/bin/python3", "-c", Self.attacker] + pids.map(String.init),
            timeout: .seconds(30)
        )
        guard result.status == 0,
            let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        else {
            throw TestSupportError("the attacker failed: \(result)")
        }
        var findings: [String: [String: String]] = [:]
        for (key, value) in object {
            if let value = value as? [String: String] { findings[key] = value }
            if let value = value as? Int { findings[key] = ["uid": String(value)] }
        }
        #expect(findings["uid"] == ["uid": String(uid)])
        return findings
    }

    static func comm(_ pid: pid_t) -> String? {
        (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(
            in: .whitespacesAndNewlines
        )
    }

    static func realUID(_ pid: pid_t) -> uid_t? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") })
        else { return nil }
        return line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first.flatMap { uid_t($0) }
    }

    static func waitUntil(_ what: String, timeout: Duration = .seconds(30), _ condition: () throws -> Bool) throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try condition() { return }
            usleep(20_000)
        }
        throw TestSupportError("timed out waiting until \(what)")
    }
}
