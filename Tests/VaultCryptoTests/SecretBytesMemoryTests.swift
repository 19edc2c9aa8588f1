import TestSupport
import Testing
import VaultCrypto

#if canImport(Glibc)
import Glibc
#endif

/// What `SecretBytes` promises about its memory, proven on real buffers in a child process (the test binary run again,
/// ``TestBinaryChild``): released, a buffer is zeroed; a write one byte past its end dies at once on the guard page
/// after it (SIGSEGV); a write one byte before its start is caught by libsodium's canary when the buffer is released,
/// which raises SIGSEGV too. Sizes: one that is not a multiple of the page and one of exactly a page (libsodium puts
/// the end of every buffer at the end of a page, so the byte after it is in the guard page whatever the size).
///
/// How "zeroed after release" is seen: `sodium_free` unmaps the buffer's pages, so nothing could be read there after
/// the release. The child makes the `munmap` of that one mapping fail (a seccomp filter), so the released pages stay
/// mapped and readable, then releases a `SecretBytes` filled with a canary and reads its bytes back. A `SecretBytes` that did not
/// zero its buffer (or never freed it, or freed it with `free`) leaves canary bytes there.
@Suite("SecretBytes memory: zeroed after release, guard pages", .timeLimit(.minutes(2)))
struct SecretBytesMemoryTests {
    static let sizes = [100, 4096]
    static let canary = Array("CANARY-secretbytes-memory-".utf8)

    @Test("a released buffer is zeroed (read back in a child that keeps its pages mapped)")
    func releaseZeroesTheBuffer() throws {
        if let mode = TestBinaryChild.mode { Self.runChild(mode) }
        for size in Self.sizes + [5000] {
            let child = try TestBinaryChild.spawn(
                filter: "SecretBytesMemoryTests/releaseZeroesTheBuffer",
                mode: "release:\(size)"
            )
            let termination = child.waitForExit(timeout: .seconds(60))
            let output = child.standardOutput()
            #expect(termination == .init(status: 0, signaled: false, timedOut: false), "\(child.standardError())")
            // The read-back works: before the release the child saw its canary through the same address.
            #expect(output.contains("alive \(size): canary intact"), "\(output)")
            #expect(output.contains("released \(size): 0 of \(size) bytes not zero"), "\(output)")
        }
        // The control: the same read-back of a buffer whose SecretBytes is kept alive (its deinit never runs, as if
        // it forgot to free and zero) sees every canary byte still there.
        let control = try TestBinaryChild.spawn(
            filter: "SecretBytesMemoryTests/releaseZeroesTheBuffer",
            mode: "kept:100"
        )
        #expect(control.waitForExit(timeout: .seconds(60)).status == 0)
        #expect(control.standardOutput().contains("released 100: 100 of 100 bytes not zero"))
    }

    @Test("a write one byte past the end dies of SIGSEGV at the write (guard page)")
    func writePastTheEndTraps() throws {
        if let mode = TestBinaryChild.mode { Self.runChild(mode) }
        for size in Self.sizes {
            let child = try TestBinaryChild.spawn(
                filter: "SecretBytesMemoryTests/writePastTheEndTraps",
                mode: "overflow:\(size)"
            )
            let termination = child.waitForExit(timeout: .seconds(60))
            let output = child.standardOutput()
            #expect(termination == .init(status: SIGSEGV, signaled: true, timedOut: false), "size \(size): \(output)")
            #expect(output.contains("writing past the end of \(size)"), "\(output)")
            #expect(!output.contains("wrote past the end"), "\(output)")
        }
    }

    @Test("a write one byte before the start is caught by the canary at release (SIGSEGV)")
    func writeBeforeTheStartTraps() throws {
        if let mode = TestBinaryChild.mode { Self.runChild(mode) }
        for size in Self.sizes {
            let child = try TestBinaryChild.spawn(
                filter: "SecretBytesMemoryTests/writeBeforeTheStartTraps",
                mode: "underflow:\(size)"
            )
            let termination = child.waitForExit(timeout: .seconds(60))
            let output = child.standardOutput()
            #expect(termination == .init(status: SIGSEGV, signaled: true, timedOut: false), "size \(size): \(output)")
            // The write itself lands in the canary (readable, writable); the release finds it changed.
            #expect(output.contains("wrote before the start of \(size)"), "\(output)")
            #expect(!output.contains("released"), "\(output)")
        }
    }

    // MARK: - The child's part

    static func runChild(_ mode: String) -> Never {
        let parts = mode.split(separator: ":")
        guard parts.count == 2, let size = Int(parts[1]) else {
            TestBinaryChild.say("bad mode \(mode)")
            TestBinaryChild.end(2)
        }
        switch parts[0] {
        case "release", "kept":
            let address = Self.fillAndRelease(size: size, keep: parts[0] == "kept")
            let bytes = UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: address), count: size)
            let notZero = bytes.count { $0 != 0 }
            TestBinaryChild.say("released \(size): \(notZero) of \(size) bytes not zero")
        case "overflow":
            let secret = SecretBytes(zeroedCount: size)
            secret.withUnsafeMutableBytes { buffer in
                TestBinaryChild.say("writing past the end of \(size)")
                (buffer.baseAddress! + buffer.count).storeBytes(of: 0x41, as: UInt8.self)
                TestBinaryChild.say("wrote past the end of \(size)")
            }
            withExtendedLifetime(secret) {}
        case "underflow":
            var secret: SecretBytes? = SecretBytes(zeroedCount: size)
            secret!.withUnsafeMutableBytes { buffer in
                // The complement of the canary's byte there: a fixed value would equal libsodium's random canary
                // byte once in 256 runs, and the release would find nothing changed.
                let before = buffer.baseAddress! - 1
                before.storeBytes(of: ~before.load(as: UInt8.self), as: UInt8.self)
            }
            TestBinaryChild.say("wrote before the start of \(size)")
            secret = nil
            TestBinaryChild.say("released \(size)")
        default:
            TestBinaryChild.say("bad mode \(mode)")
            TestBinaryChild.end(2)
        }
        TestBinaryChild.end(0)
    }

    /// A `SecretBytes` of `size` bytes filled with the canary and released on return (unless `keep`: then a reference
    /// is leaked, so that it is never released); its buffer's address.
    @inline(never)
    static func fillAndRelease(size: Int, keep: Bool = false) -> UInt {
        let secret = SecretBytes(zeroedCount: size)
        if keep { _ = Unmanaged.passRetained(secret) }
        secret.withUnsafeMutableBytes { buffer in
            for index in buffer.indices { buffer[index] = Self.canary[index % Self.canary.count] }
        }
        let intact = secret.withUnsafeBytes { buffer in
            buffer.indices.allSatisfy { buffer[$0] == Self.canary[$0 % Self.canary.count] }
        }
        TestBinaryChild.say("alive \(size): canary \(intact ? "intact" : "changed")")
        let address = secret.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
        // Where libsodium's mapping starts (utils.c, `_sodium_malloc`): two pages (the size's page, then a guard
        // page) before the region of whole pages that ends with the buffer and starts with its 16-byte canary. Only
        // that munmap is refused; a mistake here makes the read-back below fault, never pass.
        let page = UInt(sysconf(Int32(_SC_PAGESIZE)))
        let region = (UInt(size) + 16 + page - 1) / page * page
        let mapping = address + UInt(size) - region - 2 * page
        do {
            try TestBinaryChild.keepMapped(mapping..<(mapping + 1))
        } catch {
            TestBinaryChild.say("\(error)")
            TestBinaryChild.end(3)
        }
        return address
    }
}
