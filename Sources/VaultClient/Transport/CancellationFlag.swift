import Synchronization

/// Set when the task awaiting a blocking request is cancelled; the socket loop checks it between short polls.
final class CancellationFlag: Sendable {
    private let flag = Atomic<Bool>(false)

    init() {}

    func cancel() { self.flag.store(true, ordering: .relaxed) }

    var isCancelled: Bool { self.flag.load(ordering: .relaxed) }
}
