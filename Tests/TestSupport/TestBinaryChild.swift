import CTestSupport
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The test binary run again as a child process, to do one thing that may kill it (a write into a guard page) or
/// that must not happen in the test run itself (a seccomp filter): the child runs the one test named by `filter`,
/// which sees `mode` in ``variable`` and does the child's part instead of the test's.
public enum TestBinaryChild {
    /// The environment variable a test reads to know it runs as the child, and which part it plays.
    public static let variable = "CONNVAULT_TEST_CHILD_MODE"

    /// The child's part, when this process is such a child.
    public static var mode: String? { ProcessInfo.processInfo.environment[Self.variable] }

    /// Starts this test binary again with only the tests matching `filter` (Swift Testing's `--filter`), the child
    /// mode `mode`, and Swift's crash backtracer off (so that a child killed by a signal dies of that signal at once).
    /// Its standard output and error are captured.
    public static func spawn(filter: String, mode: String) throws -> ChildProcess {
        var environment = ProcessInfo.processInfo.environment
        environment[Self.variable] = mode
        environment["SWIFT_BACKTRACE"] = "enable=no"
        // Under a sanitizer (Tests/Scripts/sanitize.sh) its signal handlers would turn the signal into a report and
        // exit 1 the same way; later options win.
        for sanitizer in ["ASAN_OPTIONS", "TSAN_OPTIONS"] {
            if let options = environment[sanitizer] {
                environment[sanitizer] = options + ":handle_segv=0:handle_sigbus=0:handle_abort=0"
            }
        }
        let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        return try ChildProcess(
            executable,
            ["--testing-library", "swift-testing", "--filter", filter],
            environment: environment,
            standardOutput: .capture,
            standardError: .capture
        )
    }

    /// Writes `line` and a newline to standard output unbuffered, so that it is out before a crash that may follow.
    public static func say(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
    }

    /// Ends the child at once with `status`, without running the rest of the test run.
    public static func end(_ status: Int32) -> Never { _exit(status) }

    /// From now on a `munmap` of an address in `range` fails (seccomp) and every other works, so memory freed there
    /// stays mapped and readable: what a child uses to read a buffer after its owner freed it. Only in a child that
    /// ends soon after.
    public static func keepMapped(_ range: Range<UInt>) throws {
        guard cts_deny_munmap(UInt(range.lowerBound), UInt(range.upperBound)) == 0 else {
            throw TestSupportError("cannot install the munmap filter: \(String(cString: strerror(errno)))")
        }
    }
}
