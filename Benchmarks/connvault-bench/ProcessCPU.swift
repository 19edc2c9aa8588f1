import Glibc

/// CPU time as the kernel accounts it, in microseconds (user + system, all threads).
enum ProcessCPU {
    /// Clock ticks per second of the `utime`/`stime` fields of `/proc/PID/stat` (`USER_HZ`, usually 100).
    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    /// CPU time of another process, from fields 14 (`utime`) and 15 (`stime`) of `/proc/PID/stat`.
    ///
    /// The resolution is one clock tick (10 ms at 100 Hz); over a 5-second window at tens of thousands of requests
    /// per second that is well under 1 % of the figure.
    static func microseconds(ofProcess pid: pid_t) throws -> Double {
        let stat = try FileSystem.readText("/proc/\(pid)/stat")
        // The command name (field 2) is in parentheses and may contain spaces: count fields after the last ')'.
        guard let close = stat.lastIndex(of: ")") else {
            throw BenchError("unexpected /proc/\(pid)/stat: \(stat)")
        }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state), so field n is fields[n - 3].
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else {
            throw BenchError("unexpected /proc/\(pid)/stat: \(stat)")
        }
        return (user + system) * 1_000_000 / Self.ticksPerSecond
    }

    /// CPU time of this process: `getrusage(RUSAGE_SELF)`, user + system.
    static func microsecondsOfSelf() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func microseconds(_ time: timeval) -> Double { Double(time.tv_sec) * 1_000_000 + Double(time.tv_usec) }
        return microseconds(usage.ru_utime) + microseconds(usage.ru_stime)
    }
}
