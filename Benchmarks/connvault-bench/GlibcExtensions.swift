import Glibc

/// Linux calls that Glibc declares only under `_GNU_SOURCE`, which Swift's `Glibc` module does not import.
///
/// They are looked up by name once. Only the harness pins threads to CPUs, so these stay out of CVaultShims, whose
/// helpers the daemon, the client and the tests share.
enum GlibcExtensions {
    typealias SchedAffinity = @convention(c) (pid_t, Int, UnsafeMutableRawPointer) -> Int32

    /// `sched_getaffinity(2)`.
    static let schedGetAffinity: SchedAffinity? = Self.lookUp("sched_getaffinity")
    /// `sched_setaffinity(2)`: with a thread id, sets that one thread; with 0, the calling thread.
    static let schedSetAffinity: SchedAffinity? = Self.lookUp("sched_setaffinity")

    private static func lookUp<Function>(_ name: String) -> Function? {
        // A null handle is RTLD_DEFAULT: search the symbols already loaded into the process (libc's).
        guard let symbol = dlsym(nil, name) else { return nil }
        return unsafeBitCast(symbol, to: Function.self)
    }
}
