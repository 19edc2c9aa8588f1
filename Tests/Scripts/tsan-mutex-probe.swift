// Whether ThreadSanitizer sees the Synchronization module's Mutex on this toolchain (docs/SECURITY.md, "Sanitizers"):
// four threads change one dictionary, every change inside `withLock`, so there is no race. A toolchain whose Mutex
// ThreadSanitizer sees prints only the count; one whose Mutex it does not see reports "Swift access race" as well.
//
//   swiftc -sanitize=thread -Onone Tests/Scripts/tsan-mutex-probe.swift -o /tmp/tsan-mutex-probe
//   TSAN_OPTIONS=halt_on_error=0 /tmp/tsan-mutex-probe
import Foundation
import Synchronization

final class Box: Sendable {
    let state = Mutex<[String: Int]>([:])
}

let box = Box()
let done = DispatchGroup()
for thread in 0..<4 {
    done.enter()
    Thread {
        for index in 0..<20_000 {
            box.state.withLock { state in state["k\(index % 7)", default: 0] += thread }
        }
        done.leave()
    }.start()
}
done.wait()
print(box.state.withLock { $0.count })
