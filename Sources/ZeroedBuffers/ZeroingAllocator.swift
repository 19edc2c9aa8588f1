import CVaultShims
@_spi(CustomByteBufferAllocator) import NIOCore
import VaultLocks

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A `ByteBufferAllocator` whose memory is zeroed before it goes back to the system: on free and on a move by
/// reallocation.
///
/// Request bodies that carry a secret come from here (the Personio client's, the Swift client's create, edit and
/// reset), and every buffer of an admin socket connection. Zeroing on free does not depend on who drops the last
/// reference: the HTTP client may still hold the buffer for a moment after the response arrived (copy-on-write
/// would then zero a copy, not the original), and on a time-out it releases it on its own event loop. NIO's custom
/// allocator hooks are C function pointers without context, so each block carries its size in a 16-byte header
/// (which also keeps the payload 16-byte aligned).
package enum ZeroingAllocator {
    package static let allocator = ByteBufferAllocator(
        allocate: { size in ZeroingAllocator.allocate(size) },
        reallocate: { pointer, oldSize, newSize in ZeroingAllocator.reallocate(pointer, oldSize, newSize) },
        deallocate: { pointer in ZeroingAllocator.deallocate(pointer) },
        copy: { destination, source, count in destination.copyMemory(from: source, byteCount: count) }
    )

    /// Addresses of the blocks handed out and not yet freed, for tests to see that a secret-bearing buffer went
    /// through `deallocate`. Only request bodies and admin connections use it, so the bookkeeping is cheap.
    package static let liveBlocks = Locked<Set<UInt>>([])

    private static let headerSize = 16

    private static func allocate(_ size: Int) -> UnsafeMutableRawPointer? {
        guard let block = malloc(size + Self.headerSize) else { return nil }
        block.storeBytes(of: size, as: Int.self)
        let payload = block + Self.headerSize
        _ = Self.liveBlocks.withLock { $0.insert(UInt(bitPattern: payload)) }
        return payload
    }

    private static func reallocate(
        _ pointer: UnsafeMutableRawPointer?,
        _ oldSize: Int,
        _ newSize: Int
    ) -> UnsafeMutableRawPointer? {
        // Never `realloc`: it may move the bytes and free the old block unzeroed.
        guard let moved = Self.allocate(newSize) else { return nil }
        if let pointer {
            moved.copyMemory(from: pointer, byteCount: min(oldSize, newSize))
            Self.deallocate(pointer)
        }
        return moved
    }

    private static func deallocate(_ pointer: UnsafeMutableRawPointer) {
        let block = pointer - Self.headerSize
        let size = block.load(as: Int.self)
        Self.wipe(block, size + Self.headerSize)
        free(block)
        _ = Self.liveBlocks.withLock { $0.remove(UInt(bitPattern: pointer)) }
    }

    /// Zeroes `count` bytes in a way the optimiser cannot drop as a dead store before `free` (`cv_zero`:
    /// `explicit_bzero`).
    private static func wipe(_ pointer: UnsafeMutableRawPointer, _ count: Int) {
        cv_zero(pointer, count)
    }
}
