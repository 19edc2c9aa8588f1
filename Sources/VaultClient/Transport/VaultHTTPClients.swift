import AsyncHTTPClient
import CVaultShims
import NIOCore
import VaultAPI
import VaultLocks

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The `HTTPClient`s the vault clients send through, and how they are configured.
///
/// ``AppClient`` and ``AdminClient`` made with `init` share process-wide clients on AHC's shared event loop group.
/// Like `HTTPClient.shared` they are never shut down and hold no connection between requests, so an app can create
/// vault clients freely without tearing anything down. `withClient(…, eventLoopGroup:)` makes one of its own
/// instead and shuts it down when the body returns.
///
/// Admin sockets get one client per socket path: the check of who serves the socket (``PeerCheck``) runs on each
/// new connection and needs the path to judge the socket's directory, and AHC hands its connection hook only the
/// channel. A process talks to one or two admin sockets, so the table stays small.
enum VaultHTTPClients {
    /// The app socket's client, for every path: the app socket is not peer-checked (see `docs/decisions.md`).
    static let app = HTTPClient(
        eventLoopGroup: HTTPClient.defaultEventLoopGroup,
        configuration: Self.configuration(kind: .app, socketPath: "")
    )

    private static let admin = Locked<[String: HTTPClient]>([:])

    /// The shared client for `socketPath` of `kind`.
    static func shared(kind: SocketKind, socketPath: String) -> HTTPClient {
        switch kind {
        case .app:
            return Self.app
        case .admin:
            return Self.admin.withLock { clients in
                if let client = clients[socketPath] { return client }
                let client = HTTPClient(
                    eventLoopGroup: HTTPClient.defaultEventLoopGroup,
                    configuration: Self.configuration(kind: .admin, socketPath: socketPath)
                )
                clients[socketPath] = client
                return client
            }
        }
    }

    /// HTTP/1.1 only, no redirects, and a failed connect fails the request at once (AHC would otherwise retry with
    /// back-off until the deadline, and a missing socket would look like a time-out). Admin connections are
    /// peer-checked before they carry a request.
    static func configuration(kind: SocketKind, socketPath: String) -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration()
        configuration.httpVersion = .http1Only
        configuration.redirectConfiguration = .disallow
        configuration.connectionPool.retryConnectionEstablishment = false
        if kind == .admin {
            configuration.http1_1ConnectionDebugInitializer = { channel in
                PeerCheck.verify(channel, socketPath: socketPath, kind: kind)
            }
        }
        return configuration
    }
}

/// Refuses a connected admin socket whose server the client does not trust (``ServerTrust``) before any request is
/// written on it: the kernel's `SO_PEERCRED` of the client's end names the uid that listens.
enum PeerCheck {
    static func verify(_ channel: any Channel, socketPath: String, kind: SocketKind) -> EventLoopFuture<Void> {
        guard let provider = channel as? any SocketOptionProvider else {
            return Self.refuse(channel, ServerTrust.unknownServer(path: socketPath, errno: ENOTSOCK), socketPath)
        }
        let credentials: EventLoopFuture<cv_ucred> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET),
            name: SocketOptionName(SO_PEERCRED)
        )
        let checked = channel.eventLoop.makePromise(of: Void.self)
        credentials.whenComplete { result in
            let refusal: String?
            switch result {
            case .success(let credentials):
                // Two `lstat`s and a `realpath` of local directories, only for a server that is neither root nor
                // this user: short enough for the event loop.
                refusal = ServerTrust.refusal(
                    serverUID: credentials.uid,
                    serverPID: credentials.pid,
                    path: socketPath,
                    kind: kind
                )
            case .failure(let error):
                refusal = ServerTrust.unknownServer(path: socketPath, errno: (error as? IOError)?.errnoCode ?? EINVAL)
            }
            if let refusal {
                Self.refuse(channel, refusal, socketPath).cascade(to: checked)
            } else {
                checked.succeed()
            }
        }
        return checked.futureResult
    }

    /// Closes `channel` (AHC does not close a connection its hook refused) and fails with `.untrustedServer`.
    private static func refuse(_ channel: any Channel, _ message: String, _ socketPath: String) -> EventLoopFuture<Void>
    {
        channel.close(promise: nil)
        return channel.eventLoop.makeFailedFuture(VaultClientError(.untrustedServer, message, socketPath: socketPath))
    }
}
