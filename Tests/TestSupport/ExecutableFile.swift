import CTestSupport

#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Files a test writes and then executes.
///
/// Written by a child process (`cat`), never in this process. A writable descriptor of the file held by any process
/// makes every exec of it fail with `ETXTBSY`, and one opened here leaks into whatever another test's thread spawns
/// meanwhile: Foundation's `createFile`, `copyItem` and `Data.write` open it without `O_CLOEXEC`, so a child of a
/// spawner that closes nothing keeps it as long as it runs; and even close-on-exec, every child cloned during the
/// write holds it until its own exec. (A CI run lost a copied interpreter that way: `setpriv` could not execute it,
/// so the helper script never reported its pid.) `cat` opens the file itself, after its own exec, and no thread of
/// this process can fork it; once `cat` has exited, nothing holds the file open for writing.
public enum ExecutableFile {
    /// Creates `path` (it must not exist) with `contents` and `mode`.
    public static func write(_ contents: [UInt8], to path: String, mode: mode_t = 0o755) throws {
        let cat = try ChildProcess(
            "/bin/sh",
            ["-c", "set -C && umask 077 && exec cat > \"$1\"", "sh", path],
            standardInput: .bytes(contents),
            standardError: .capture
        )
        let termination = cat.waitForExit(timeout: .seconds(60))
        guard termination == Termination(status: 0, signaled: false, timedOut: false) else {
            throw TestSupportError("cannot write \(path) (\(termination)): \(cat.standardError())")
        }
        guard chmod(path, mode) == 0 else { throw TestSupportError("cannot chmod \(path)") }
    }

    /// Creates `destination` with the contents of `source` followed by `appending`, and `mode`.
    public static func copy(
        _ source: String,
        to destination: String,
        appending: [UInt8] = [],
        mode: mode_t = 0o755
    ) throws {
        let contents = try Data(contentsOf: URL(fileURLWithPath: source))
        try Self.write(Array(contents) + appending, to: destination, mode: mode)
    }

    private typealias Termination = ChildProcess.Termination
}

extension ChildProcess {
    /// Adds to `actions` the closing, in the child, of every descriptor from `first` up: whatever another thread of
    /// the test process opened without `O_CLOEXEC` stays out of the child. For spawners of their own
    /// (`posix_spawn` called directly); `ChildProcess` does this itself.
    public static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t, from first: Int32 = 3) {
        cts_spawn_file_actions_addclosefrom(&actions, first)
    }
}
