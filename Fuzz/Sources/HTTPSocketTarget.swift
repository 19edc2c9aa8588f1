import Dispatch
import Logging
import NIOCore
import NIOEmbedded
import Synchronization
import VaultAPI
import VaultCore
import VaultServer

#if canImport(Glibc)
import Glibc
#endif

/// One socket's request handling end to end: the bytes are one connection's input, written into the real pipeline
/// (deadlines, NIO's HTTP/1.1 decoder and pipelining, the connection handler, the dispatcher with its limits and
/// admin check, the socket's route table with the production handlers over a real vault on a temporary state
/// directory) on an in-memory channel, then the input side is shut, as a client that sent everything would.
///
/// The admin caller is root; the app caller is uid 1000 in `payroll.service`. The vault holds a connection `fuzz`
/// granted to uid 1000, whose client secret is a canary. Personio is never reached (``InProcessServer``).
///
/// Invariants: the connection closes (with its time-outs run, in virtual time); what is written back starts as an HTTP/1.x response;
/// none is a 500 (an internal error); the canary secret never appears in what is written back unless the input itself holds it.
final class HTTPSocketTarget: FuzzTarget, Sendable {
    static let canary = Array("CANARY-FUZZ-CLIENT-SECRET-7f3a91".utf8)

    /// `CONNVAULT_FUZZ_VERBOSE=1`: print every answer (for writing seeds).
    static let verbose = getenv("CONNVAULT_FUZZ_VERBOSE") != nil

    let socket: SocketKind
    let caller: Caller
    let server: InProcessServer

    init(socket: SocketKind) {
        self.socket = socket
        self.caller =
            socket == .admin
            ? Caller(uid: 0, gid: 0, pid: getpid(), comm: "connvaultctl")
            : Caller(uid: 1000, gid: 1000, pid: 4242, comm: "payroll", unit: "payroll.service", exe: "/usr/bin/true")
        let state = ScratchDirectories.make("http")
        let logger = Logger(label: "fuzz") { _ in SwiftLogNoOpLogHandler() }
        self.server = blocking {
            let vault = try await Vault.open(
                VaultConfiguration(
                    databasePath: state + "/vault.sqlite3",
                    keyFilePath: state + "/master.key",
                    createKeyIfMissing: true
                ),
                logger: logger
            )
            return InProcessServer(vault: vault, logger: logger)
        }
        let server = self.server
        Task { await server.runBroker() }

        // The canary connection, created through the admin pipeline like any other.
        let secret = String(decoding: Self.canary, as: UTF8.self)
        let body = """
            {"id":"fuzz","provider":"personio-v2","secrets":{"client_id":"CANARY-FUZZ-CLIENT-ID",\
            "client_secret":"\(secret)"},"grants":{"uids":[1000],"units":["payroll.service"]}}
            """
        let request =
            "POST /v1/connections HTTP/1.1\r\nHost: v\r\nContent-Type: application/json\r\n"
            + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
        let root = Caller(uid: 0, gid: 0, pid: getpid(), comm: "connvaultctl")
        let answer = String(decoding: self.exchange(Array(request.utf8), socket: .admin, as: root), as: UTF8.self)
        guard answer.hasPrefix("HTTP/1.1 201") else {
            FuzzTargets.fail("cannot create the canary connection: \(answer.prefix(300))")
        }
    }

    func run(_ input: [UInt8]) {
        let output = self.exchange(input, socket: self.socket, as: self.caller)
        if Self.verbose { print(String(decoding: output, as: UTF8.self)) }
        if !output.isEmpty {
            FuzzTargets.check(
                output.starts(with: Array("HTTP/1.1 ".utf8)) || output.starts(with: Array("HTTP/1.0 ".utf8)),
                "an answer that is not HTTP/1.x"
            )
        }
        FuzzTargets.check(!Self.contains(output, Array("HTTP/1.1 500".utf8)), "a request was answered with 500")
        if !Self.contains(input, Self.canary) {
            FuzzTargets.check(!Self.contains(output, Self.canary), "the canary secret was written to a caller")
        }
    }

    /// Writes `input` into a fresh connection of `socket`, shuts its input side and returns every byte written back
    /// once the connection has closed.
    func exchange(_ input: [UInt8], socket: SocketKind, as caller: Caller) -> [UInt8] {
        let server = self.server
        return blocking { [self] in
            let channel = NIOAsyncTestingChannel()
            try await channel.testingEventLoop.executeInContext {
                try server.configure(channel, socket: socket, caller: caller)
            }
            try await channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/connvault-fuzz.sock")).get()
            if !input.isEmpty { try await channel.writeInbound(ByteBuffer(bytes: input)) }
            try await channel.testingEventLoop.executeInContext {
                channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            }
            if !(await self.closed(channel, within: .seconds(5))) {
                // Waiting on the connection's own time-outs: let them expire.
                await channel.testingEventLoop.advanceTime(by: .hours(1))
                if !(await self.closed(channel, within: .seconds(10))) {
                    FuzzTargets.fail("the connection stayed open after its input closed and every time-out passed")
                }
            }
            var output: [UInt8] = []
            while let part = try await channel.readOutbound(as: IOData.self) {
                if case .byteBuffer(let buffer) = part { output += buffer.readableBytesView }
            }
            // Timers still scheduled on the in-memory loop would keep the channel alive (a real loop fires them).
            await channel.testingEventLoop.shutdownGracefully()
            return output
        }
    }

    /// Whether `channel` closes within `timeout` (real time: routes run in tasks).
    func closed(_ channel: NIOAsyncTestingChannel, within timeout: Duration) async -> Bool {
        let loop = self.server.group.next()
        let promise = loop.makePromise(of: Bool.self)
        let once = Once()
        let complete: @Sendable (Bool) -> Void = { value in
            if once.first() { promise.succeed(value) }
        }
        let timer = loop.scheduleTask(in: TimeAmount(timeout)) { complete(false) }
        channel.closeFuture.whenComplete { _ in complete(true) }
        let result = (try? await promise.futureResult.get()) ?? false
        timer.cancel()
        return result
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count else { return false }
        return (0...(haystack.count - needle.count)).contains {
            haystack[$0..<($0 + needle.count)].elementsEqual(needle)
        }
    }
}

/// True for the first caller only.
final class Once: Sendable {
    private let taken = Mutex(false)

    func first() -> Bool {
        self.taken.withLock { taken in
            defer { taken = true }
            return !taken
        }
    }
}

/// Where a task leaves its result for a waiting thread.
final class ResultSlot<T: Sendable>: Sendable {
    let value = Mutex<Result<T, any Error>?>(nil)
}

/// Runs `body` to completion from synchronous code (libFuzzer's thread), failing the run when it throws.
func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) -> T {
    let slot = ResultSlot<T>()
    let semaphore = DispatchSemaphore(value: 0)
    Task {
        let outcome: Result<T, any Error>
        do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
        slot.value.withLock { $0 = outcome }
        semaphore.signal()
    }
    semaphore.wait()
    switch slot.value.withLock({ $0 }) {
    case .success(let value): return value
    case .failure(let error): FuzzTargets.fail("an in-process exchange failed: \(error)")
    case nil: FuzzTargets.fail("an in-process exchange did not finish")
    }
}
