#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A value behind a `pthread_mutex_t`: the project's one lock (docs/decisions.md, "Locks ThreadSanitizer sees").
///
/// The Synchronization module's `Mutex` locks with a futex word inside the precompiled standard library, where
/// ThreadSanitizer cannot see the lock, so every value it guards was reported as an access race. ThreadSanitizer
/// intercepts `pthread_mutex_lock` and `pthread_mutex_unlock`, so it sees this lock's acquire and release. The API
/// mirrors what the project used of `Mutex`: `init(_:)` and `withLock`. The mutex is allocated and initialised once,
/// in `init`; taking it uncontended is one atomic exchange to lock and one to unlock, as with `Mutex`.
package final class Locked<Value>: @unchecked Sendable {
    /// Heap-allocated so that its address never moves (a `pthread_mutex_t` must not be copied).
    @usableFromInline
    let mutex: UnsafeMutablePointer<pthread_mutex_t>
    /// Only touched with `mutex` held; the lock gives the exclusivity that a dynamic check would otherwise test.
    @usableFromInline
    @exclusivity(unchecked)
    var value: Value

    package init(_ value: consuming Value) {
        self.value = value
        self.mutex = UnsafeMutablePointer.allocate(capacity: 1)
        let error = pthread_mutex_init(self.mutex, nil)
        precondition(error == 0, "pthread_mutex_init failed with error \(error)")
    }

    deinit {
        let error = pthread_mutex_destroy(self.mutex)
        precondition(error == 0, "pthread_mutex_destroy failed with error \(error)")
        self.mutex.deallocate()
    }

    /// Runs `body` with the lock held and the value to read or change; the lock is released however `body` ends.
    @inlinable
    package func withLock<Result, Failure: Error>(
        _ body: (inout Value) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        self.lock()
        defer { self.unlock() }
        return try body(&self.value)
    }

    @inlinable
    func lock() {
        let error = pthread_mutex_lock(self.mutex)
        precondition(error == 0, "pthread_mutex_lock failed with error \(error)")
    }

    @inlinable
    func unlock() {
        let error = pthread_mutex_unlock(self.mutex)
        precondition(error == 0, "pthread_mutex_unlock failed with error \(error)")
    }
}
