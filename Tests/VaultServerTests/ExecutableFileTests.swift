import Foundation
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `ExecutableFile`, the test scaffolding's way to write a program it then runs: a copy written while another thread
/// of the test process keeps spawning children that inherit every descriptor (as a spawner that closes nothing does)
/// runs at once. Written with Foundation's `createFile`, 2 to 10 of the 10 copies failed here with `ETXTBSY`, in each
/// of five runs. Kept small (10 copies of 4 MiB, a few children alive at a time), as it runs beside the other suites.
@Suite("Executable files the tests write", .offCooperativePool, .timeLimit(.minutes(2)))
struct ExecutableFileTests {
    @Test("a copy written while children that inherit every descriptor are spawned can be executed at once")
    func executableAtOnce() throws {
        let directory = try TemporaryDirectory(prefix: "cvf")
        defer { directory.remove() }
        let stop = Atomic(false)
        let spawner = Thread {
            // Children that keep whatever the parent has open, for a while: `posix_spawn` with no file actions.
            var pids: [pid_t] = []
            let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("0.05"), nil]
            defer { for pointer in argv { free(pointer) } }
            while !stop.load(ordering: .relaxed) {
                var pid: pid_t = 0
                if posix_spawn(&pid, "/bin/sleep", nil, nil, argv, environ) == 0 { pids.append(pid) }
                usleep(5_000)
            }
            for pid in pids {
                var status: Int32 = 0
                waitpid(pid, &status, 0)
            }
        }
        spawner.start()
        defer { stop.store(true, ordering: .relaxed) }
        // Padding after the ELF image changes nothing about how it runs, and makes the write take a while.
        let padding = [UInt8](repeating: 0, count: 4 << 20)
        var failures: [String] = []
        for index in 0..<10 {
            let path = directory.file("sleep-\(index)")
            try ExecutableFile.copy("/bin/sleep", to: path, appending: padding)
            let argv: [UnsafeMutablePointer<CChar>?] = [strdup(path), strdup("0"), nil]
            defer { for pointer in argv { free(pointer) } }
            var pid: pid_t = 0
            let result = posix_spawn(&pid, path, nil, nil, argv, environ)
            guard result == 0 else {
                failures.append("copy \(index): \(String(cString: strerror(result)))")
                continue
            }
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            unlink(path)
        }
        #expect(failures.isEmpty, "\(failures)")
    }
}
