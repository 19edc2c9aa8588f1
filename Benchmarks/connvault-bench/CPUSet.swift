import Glibc

/// A set of CPUs for `sched_setaffinity`.
///
/// The 1-connection case pins the client thread and every thread of the server to one core: a lone request-response
/// ping-pong is as fast as the wake-up between the two sides, which is a few microseconds on one core and tens of
/// microseconds when the scheduler places them on two.
struct CPUSet: Sendable, CustomStringConvertible {
    private(set) var cpus: [Int]

    init(cpus: [Int]) {
        self.cpus = cpus.sorted()
    }

    /// The CPUs this process may run on.
    static func ofCurrentProcess() throws -> CPUSet {
        guard let getAffinity = GlibcExtensions.schedGetAffinity else {
            throw BenchError("sched_getaffinity is not available")
        }
        var set = cpu_set_t()
        guard getAffinity(0, MemoryLayout<cpu_set_t>.size, &set) == 0 else {
            throw BenchError.posix("sched_getaffinity")
        }
        var cpus: [Int] = []
        withUnsafeBytes(of: &set) { raw in
            for cpu in 0..<(raw.count * 8) where Self.isSet(cpu, in: raw) {
                cpus.append(cpu)
            }
        }
        return CPUSet(cpus: cpus)
    }

    /// Pins the calling thread.
    func applyToCurrentThread() throws {
        try self.apply(toThread: 0)
    }

    /// Pins every thread of process `pid`, as `taskset -a -p` does. Threads it starts later inherit the mask of
    /// the thread that starts them.
    func applyToProcess(_ pid: pid_t) throws {
        for entry in try FileSystem.listDirectory("/proc/\(pid)/task") {
            guard let thread = pid_t(entry) else { continue }
            try self.apply(toThread: thread)
        }
    }

    var description: String { self.cpus.map(String.init).joined(separator: ",") }

    // MARK: - Private

    private func apply(toThread thread: pid_t) throws {
        guard let setAffinity = GlibcExtensions.schedSetAffinity else {
            throw BenchError("sched_setaffinity is not available")
        }
        var set = cpu_set_t()
        withUnsafeMutableBytes(of: &set) { raw in
            for cpu in self.cpus where cpu < raw.count * 8 {
                // cpu_set_t is an array of unsigned longs; CPU n is bit n % 64 of word n / 64.
                let bitsPerWord = UInt.bitWidth
                let offset = (cpu / bitsPerWord) * MemoryLayout<UInt>.size
                let word = raw.load(fromByteOffset: offset, as: UInt.self) | (1 << UInt(cpu % bitsPerWord))
                raw.storeBytes(of: word, toByteOffset: offset, as: UInt.self)
            }
        }
        guard setAffinity(thread, MemoryLayout<cpu_set_t>.size, &set) == 0 else {
            throw BenchError.posix("sched_setaffinity", "thread \(thread) to CPUs \(self)")
        }
    }

    private static func isSet(_ cpu: Int, in raw: UnsafeRawBufferPointer) -> Bool {
        let bitsPerWord = UInt.bitWidth
        let word = raw.load(fromByteOffset: (cpu / bitsPerWord) * MemoryLayout<UInt>.size, as: UInt.self)
        return word & (1 << UInt(cpu % bitsPerWord)) != 0
    }
}
