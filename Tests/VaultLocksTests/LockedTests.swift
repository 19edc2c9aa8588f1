import Dispatch
import Testing
import VaultLocks

@Suite("Locked")
struct LockedTests {
    struct Refused: Error {}

    @Test("changes made under the lock from many threads are all kept")
    func mutualExclusion() {
        let counts = Locked<[Int: Int]>([:])
        DispatchQueue.concurrentPerform(iterations: 4) { thread in
            for index in 0..<10_000 {
                counts.withLock { $0[index % 7, default: 0] += thread + 1 }
            }
        }
        let total = counts.withLock { $0.values.reduce(0, +) }
        #expect(total == 10_000 * (1 + 2 + 3 + 4))
    }

    @Test("withLock returns the body's result and rethrows its typed error, releasing the lock")
    func resultAndError() {
        let value = Locked(41)
        #expect(
            value.withLock { value in
                value += 1
                return value
            } == 42
        )
        #expect(throws: Refused.self) {
            try value.withLock { (_: inout Int) throws(Refused) in throw Refused() }
        }
        // Released after the throw: a second acquisition does not deadlock.
        #expect(value.withLock { $0 } == 42)
    }
}
