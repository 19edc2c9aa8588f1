import Glibc

/// A plain POSIX thread. The load generator blocks in `read` on purpose, one thread per connection, which is what a
/// simple synchronous client of the vault does; Swift's cooperative pool must not be blocked like that.
struct PosixThread {
    private let handle: pthread_t

    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    /// Starts a thread running `body`.
    init(_ body: @escaping @Sendable () -> Void) throws {
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        var handle = pthread_t()
        let result = pthread_create(
            &handle,
            nil,
            { context in
                Unmanaged<Body>.fromOpaque(context!).takeRetainedValue().run()
                return nil
            },
            context
        )
        guard result == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            throw BenchError("pthread_create: \(String(cString: strerror(result)))")
        }
        self.handle = handle
    }

    /// Waits for the thread to end. Everything the thread wrote is visible to the caller afterwards.
    func join() {
        pthread_join(self.handle, nil)
    }
}
