import Glibc

/// Linux calls that Glibc declares only under `_GNU_SOURCE`, which Swift's `Glibc` module does not import.
///
/// They are looked up by name once. The package's C shim target belongs to the daemon, and a benchmark tool does not
/// justify a C target of its own.
enum GlibcExtensions {
    typealias SchedAffinity = @convention(c) (pid_t, Int, UnsafeMutableRawPointer) -> Int32
    typealias SpawnAddChdir =
        @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32

    /// `sched_getaffinity(2)`.
    static let schedGetAffinity: SchedAffinity? = Self.lookUp("sched_getaffinity")
    /// `sched_setaffinity(2)`: with a thread id, sets that one thread; with 0, the calling thread.
    static let schedSetAffinity: SchedAffinity? = Self.lookUp("sched_setaffinity")
    /// `posix_spawn_file_actions_addchdir_np(3)` (glibc 2.29+): the child's working directory.
    static let spawnAddChdir: SpawnAddChdir? = Self.lookUp("posix_spawn_file_actions_addchdir_np")

    private static func lookUp<Function>(_ name: String) -> Function? {
        // A null handle is RTLD_DEFAULT: search the symbols already loaded into the process (libc's).
        guard let symbol = dlsym(nil, name) else { return nil }
        return unsafeBitCast(symbol, to: Function.self)
    }
}
