import Foundation
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A real systemd booted in a throw-away container on this machine, for the service tests.
///
/// `systemd-nspawn -D / --volatile=yes` gives the container an empty tmpfs root with the host's `/usr` on it, so the
/// systemd inside runs no host unit and its tmpfiles never touch the host's `/tmp`. `/usr` gets a tmpfs overlay of its
/// own, so that packages and files can be installed into it and vanish with the container. Never boot systemd on the
/// host's own root: its boot-time units would run against the host.
///
/// Commands run inside through `nsenter` into the container's mount and pid namespaces (its network is the host's,
/// so a Personio stand-in on the host's 127.0.0.1 is reachable). ``shutdown()`` powers it off and waits; a
/// container that does not stop in time is killed.
final class SystemdContainer: @unchecked Sendable {
    // @unchecked Sendable: `bootTime` is set once in `boot`, before the container is handed out; nothing else changes.

    /// A host path made visible read-only inside.
    struct Bind: Sendable {
        var host: String
        var container: String
    }

    let directory: TemporaryDirectory
    private let process: ChildProcess
    /// The container's init (systemd) as the host numbers it.
    let leader: Int32
    /// How long boot took, from starting `systemd-nspawn` to `systemctl is-system-running --wait` returning.
    private(set) var bootTime: Duration = .zero

    var consoleLog: String {
        (try? String(contentsOfFile: self.directory.file("console.log"), encoding: .utf8)) ?? ""
    }

    private init(directory: TemporaryDirectory, process: ChildProcess, leader: Int32) {
        self.directory = directory
        self.process = process
        self.leader = leader
    }

    // MARK: - Availability

    /// The Swift runtime directory the debug binaries load their libraries from (bound into the container).
    static let swiftRuntimeDirectory: String? = {
        let candidates = [
            ProcessInfo.processInfo.environment["CONNVAULT_SWIFT_RUNTIME_DIR"],
            "/opt/swift/usr/lib/swift/linux", "/usr/lib/swift/linux",
        ]
        return candidates.compactMap { $0 }.first { FileManager.default.fileExists(atPath: "\($0)/libswiftCore.so") }
    }()

    /// Whether CI demands these tests (`CONNVAULT_REQUIRE_SYSTEMD=1`): then they run and fail rather than skip.
    static var required: Bool { ProcessInfo.processInfo.environment["CONNVAULT_REQUIRE_SYSTEMD"] == "1" }

    /// Why a container cannot boot here, or nil when it can be tried.
    static let unavailableReason: String? = {
        if geteuid() != 0 { return "booting a systemd container needs root" }
        for tool in ["/usr/bin/systemd-nspawn", "/usr/bin/nsenter", "/usr/bin/systemd-analyze"]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            return "\(tool) is missing (make deps installs systemd-container)"
        }
        if !FileManager.default.fileExists(atPath: "/usr/lib/systemd/systemd") {
            return "no systemd in /usr/lib/systemd to boot"
        }
        return nil
    }()

    /// Whether the container tests run: they can, or CI requires them (and they fail, saying why).
    static var shouldRun: Bool { Self.unavailableReason == nil || Self.required }

    // MARK: - Boot and shutdown

    /// Boots a container with `binds` visible read-only, and waits until its systemd is up.
    ///
    /// - Parameters:
    ///   - binds: Host paths to bind read-only inside.
    ///   - timeout: How long boot may take.
    /// - Returns: The running container; the caller must ``shutdown()`` it.
    /// - Throws: When the container does not boot in time (it is stopped first).
    static func boot(binds: [Bind], timeout: Duration = .seconds(90)) async throws -> SystemdContainer {
        if let reason = Self.unavailableReason { throw TestSupportError("cannot boot a systemd container: \(reason)") }
        let directory = try TemporaryDirectory(prefix: "cvsd")
        var arguments =
            ["-D", "/", "--volatile=yes", "--overlay=/usr::/usr", "--register=no", "--keep-unit", "--quiet"]
            + binds.map { "--bind-ro=\($0.host):\($0.container)" }
            + ["-b", "systemd.firstboot=off"]
        // A machine id from the start: systemd then skips its first-boot setup, which would enable every unit the
        // host's /usr ships presets for (database servers and the like, sharing the host's network).
        var id = ""
        for _ in 0..<32 { id.append("0123456789abcdef".randomElement()!) }
        try "\(id)\n".write(toFile: directory.file("machine-id"), atomically: true, encoding: .utf8)
        arguments.insert("--bind-ro=\(directory.file("machine-id")):/etc/machine-id", at: 0)
        let console = directory.file("console.log")
        let started = ContinuousClock.now
        let process = try ChildProcess(
            "/usr/bin/systemd-nspawn",
            arguments,
            environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_LOG_LEVEL": "warning"],
            standardOutput: .file(console),
            standardError: .standardOutput
        )

        do {
            let leader = try await Self.waitForLeader(of: process, timeout: .seconds(30))
            let container = SystemdContainer(directory: directory, process: process, leader: leader)
            // Until systemd has opened its bus, systemctl cannot reach it and says nothing or "offline": ask again.
            let deadline = ContinuousClock.now + timeout
            var state = try await container.run(["systemctl", "is-system-running", "--wait"], timeout: timeout)
            while ["", "offline"].contains(state.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
                && ContinuousClock.now < deadline
            {
                try await Task.sleep(for: .milliseconds(100))
                state = try await container.run(["systemctl", "is-system-running", "--wait"], timeout: timeout)
            }
            let reached = state.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            guard reached == "running" || reached == "degraded" else {
                throw TestSupportError("the container's systemd is '\(reached)' after boot:\n\(state)")
            }
            container.bootTime = ContinuousClock.now - started
            return container
        } catch {
            let console = (try? String(contentsOfFile: console, encoding: .utf8)) ?? ""
            await Self.stop(process)
            directory.remove()
            throw TestSupportError("the systemd container did not boot: \(error)\nconsole:\n\(console.suffix(4_000))")
        }
    }

    /// Powers the container off and waits for it to end; kills it when it does not within 30 s.
    func shutdown() async {
        _ = try? await self.run(["systemctl", "poweroff", "--no-block"], timeout: .seconds(10))
        _ = await self.process.exited(within: .seconds(30))
        await Self.stop(self.process)
        self.directory.remove()
    }

    /// Ends `process` (systemd-nspawn) for good: SIGTERM asks it to stop its container, SIGKILL follows.
    private static func stop(_ process: ChildProcess) async {
        guard process.isRunning else { return }
        process.signal(SIGTERM)
        await process.exit(timeout: .seconds(10))
    }

    /// The container's init: systemd-nspawn's child.
    private static func waitForLeader(of process: ChildProcess, timeout: Duration) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        let pid = process.pid
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                throw TestSupportError("systemd-nspawn ended: \(process.termination.map { "\($0)" } ?? "?")")
            }
            if let children = try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8),
                let first = children.split(separator: " ").first, let leader = Int32(first)
            {
                // The child is systemd-nspawn's own helper until it has set up the container's namespaces and run
                // systemd: wait for exactly "systemd" in a pid namespace of its own.
                let comm = (try? String(contentsOfFile: "/proc/\(leader)/comm", encoding: .utf8)) ?? ""
                let namespace = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(leader)/ns/pid")
                let own = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/pid")
                if comm == "systemd\n", let namespace, namespace != own { return leader }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestSupportError("systemd-nspawn started no init within \(timeout)")
    }

    // MARK: - Commands

    /// Runs `arguments` inside the container as root, with a clean environment plus `environment`.
    ///
    /// - Parameters:
    ///   - arguments: The command and its arguments (looked up in the container's PATH).
    ///   - stdin: Bytes for its standard input (nil: /dev/null).
    ///   - environment: Variables for the command.
    ///   - timeout: It is killed after this long.
    /// - Returns: What it printed and how it ended.
    func run(
        _ arguments: [String],
        stdin: String? = nil,
        environment: [String: String] = [:],
        timeout: Duration = .seconds(60)
    ) async throws -> CommandResult {
        let variables =
            ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"]
            + environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let command =
            ["-t", "\(self.leader)", "-m", "-p", "--", "/usr/bin/env", "-i", "-C", "/"] + variables + arguments
        return try await Blocking.run {
            try Command.run("/usr/bin/nsenter", command, stdin: stdin, timeout: timeout)
        }
    }

    /// Runs a shell script inside the container (`sh -c`), failing unless it exits 0.
    @discardableResult
    func sh(_ script: String, stdin: String? = nil, timeout: Duration = .seconds(60)) async throws -> String {
        let result = try await self.run(["/bin/sh", "-c", script], stdin: stdin, timeout: timeout)
        guard result.status == 0 else { throw TestSupportError("in the container: \(script)\n\(result)") }
        return result.stdout
    }

    /// `systemctl show -p NAME --value UNIT`.
    func property(_ name: String, of unit: String = "connvaultd.service") async throws -> String {
        try await self.sh("systemctl show -p \(name) --value \(unit)").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Waits until `condition` holds, checking every 200 ms.
    /// - Throws: When it does not hold within `timeout`; the message names `what`.
    func wait(
        _ what: String,
        timeout: Duration = .seconds(60),
        until condition: () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if (try? await condition()) == true { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestSupportError("timed out after \(timeout) waiting for \(what)")
    }
}
