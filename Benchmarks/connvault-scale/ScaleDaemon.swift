import Foundation
import TestSupport

/// The release `connvaultd --dev` in the measured directory, and `connvaultctl` against it.
final class ScaleDaemon {
    let binDirectory: String
    let directory: String
    private var process: ChildProcess?

    var adminSocket: String { "\(self.directory)/.connvault/admin.sock" }
    var appSocket: String { "\(self.directory)/.connvault/app.sock" }

    init(binDirectory: String, directory: String) {
        self.binDirectory = binDirectory
        self.directory = directory
    }

    /// Starts the daemon; the seconds from exec until its admin socket answered `GET /v1/health` with 200.
    func start() throws -> Double {
        let started = ContinuousClock.now
        let process = try ChildProcess(
            "\(self.binDirectory)/connvaultd",
            ["--dev", "--log-level", "warning"],
            directory: self.directory,
            standardOutput: .file("\(self.directory)/connvaultd.log"),
            standardError: .standardOutput
        )
        self.process = process
        let deadline = started + .seconds(120)
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                throw TestSupportError(
                    "connvaultd ended during start-up: \(process.termination.map { "\($0)" } ?? "?")"
                )
            }
            if let response = try? RawHTTP.request(
                socket: self.adminSocket,
                "GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n",
                timeout: .seconds(5)
            ), response.status == 200 {
                return Seconds(ContinuousClock.now - started).value
            }
            usleep(1_000)
        }
        throw TestSupportError("connvaultd did not answer within 120 s")
    }

    func stop() {
        guard let process = self.process else { return }
        process.signal(SIGTERM)
        if !process.hasExited(within: .seconds(30)) { process.killGroup() }
        _ = process.waitForExit(timeout: .seconds(10))
        self.process = nil
    }

    /// VmRSS and VmHWM of the running daemon.
    func memory() -> Memory {
        guard let pid = self.process?.pid,
            let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        else { return Memory(rssKiB: 0, peakKiB: 0) }
        func field(_ name: String) -> Int {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return 0 }
            return Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") ?? 0
        }
        return Memory(rssKiB: field("VmRSS"), peakKiB: field("VmHWM"))
    }

    /// Runs `connvaultctl`, timed from exec to exit; a failure throws unless `measured` (the figures then say it).
    /// With `peakMemory`, under `/usr/bin/time` (when there is one), which reports the CLI's own peak resident set.
    func ctl(
        _ arguments: [String],
        stdin: String? = nil,
        measured: Bool = false,
        peakMemory: Bool = false
    ) throws
        -> Timed
    {
        let ctl = "\(self.binDirectory)/connvaultctl"
        let timed = peakMemory && FileManager.default.isExecutableFile(atPath: "/usr/bin/time")
        let started = ContinuousClock.now
        var result = try Command.run(
            timed ? "/usr/bin/time" : ctl,
            timed ? ["-f", "\(Self.peakMarker)%M", ctl] + arguments : arguments,
            stdin: stdin,
            environment: ["CONNVAULT_ADMIN_SOCKET": self.adminSocket, "CONNVAULT_APP_SOCKET": self.appSocket],
            timeout: .seconds(600)
        )
        let seconds = Seconds(ContinuousClock.now - started).value
        var peakKiB: Int?
        if timed, let line = result.stderr.split(separator: "\n").last(where: { $0.hasPrefix(Self.peakMarker) }) {
            peakKiB = Int(line.dropFirst(Self.peakMarker.count))
            result.stderr = result.stderr.split(separator: "\n", omittingEmptySubsequences: false)
                .filter { !$0.hasPrefix(Self.peakMarker) }.joined(separator: "\n")
        }
        guard result.status == 0 || measured else {
            throw TestSupportError(
                "connvaultctl \(arguments.joined(separator: " ")) failed: \(result.status) \(result.stderr)"
            )
        }
        return Timed(seconds: seconds, result: result, peakKiB: peakKiB)
    }

    static let peakMarker = "connvault-scale peak KiB: "
}

struct Memory {
    var rssKiB: Int
    var peakKiB: Int
}

struct Timed {
    var seconds: Double
    var result: CommandResult
    /// The command's peak resident set, when measured (`ctl(_:peakMemory:)`).
    var peakKiB: Int?
    var stdout: String { self.result.stdout }
}

/// The figures, printed as a table at the end, each against its target.
final class Figures {
    private var lines: [String] = []
    private var failed = false

    func note(_ text: String) { self.lines.append("  \(text)") }

    func timing(_ what: String, _ times: [Double], target: Double?) {
        let sorted = times.sorted()
        let median = sorted[sorted.count / 2]
        var line = Self.pad(what) + String(format: " %8.3f s", median)
        if times.count > 1 {
            line +=
                " (median of \(times.count): " + times.map { String(format: "%.3f", $0) }.joined(separator: ", ") + ")"
        }
        if let target { line += self.verdict(median < target, "target < \(Self.number(target)) s") }
        self.lines.append(line)
    }

    func memory(_ what: String, _ memory: Memory, target: Double) {
        let rss = Double(memory.rssKiB) / 1024
        let peak = Double(memory.peakKiB) / 1024
        var line = Self.pad(what) + String(format: " %8.1f MiB (VmHWM %.1f MiB)", rss, peak)
        // The target is in MB (10^6 bytes); the figures in MiB, as /proc counts.
        line += self.verdict(Double(memory.rssKiB) * 1024 < target * 1e6, "target < \(Self.number(target)) MB")
        self.lines.append(line)
    }

    /// A peak resident set (VmHWM, or a command's maximum) against a target in MB; without one, just the figure.
    func peak(_ what: String, kiB: [Int], target: Double?) {
        let sorted = kiB.sorted()
        let highest = sorted.last ?? 0
        var line = Self.pad(what) + String(format: " %8.1f MiB", Double(highest) / 1024)
        if kiB.count > 1 {
            line +=
                " (highest of \(kiB.count): "
                + kiB.map { String(format: "%.1f", Double($0) / 1024) }.joined(separator: ", ") + ")"
        }
        if let target {
            line += self.verdict(Double(highest) * 1024 < target * 1e6, "target < \(Self.number(target)) MB")
        }
        self.lines.append(line)
    }

    func check(_ what: String, _ ok: Bool, detail: String = "") {
        let shown = detail.split(separator: "\n").first.map { " (\($0))" } ?? ""
        self.lines.append("\(what)\(shown)" + self.verdict(ok, "check"))
    }

    /// Whether a measured command succeeded; its error when not.
    func exited(_ what: String, _ timed: Timed) {
        self.check("\(what) exited 0", timed.result.status == 0, detail: timed.result.stderr)
    }

    private func verdict(_ ok: Bool, _ target: String) -> String {
        if !ok { self.failed = true }
        return "  [\(target): \(ok ? "PASS" : "FAIL")]"
    }

    static func pad(_ text: String) -> String {
        text.count >= 72 ? text : text + String(repeating: " ", count: 72 - text.count)
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }

    func print() {
        Swift.print("\nconnvault-scale figures")
        for line in self.lines { Swift.print(line) }
        Swift.print(self.failed ? "\nsome targets were missed" : "\nevery target met")
    }
}
