import AsyncHTTPClient
import Logging
import NIOCore
import PersonioClient
import ServiceLifecycle
import TokenBroker
import UnixSignals
import VaultAPI
import VaultCore

#if canImport(Glibc)
import Glibc
#endif

/// Opens the vault, binds both sockets and assembles the services; the returned application serves from now on and
/// stops when its ``Application/run()`` sees a shutdown.
///
/// The admin socket is created with mode 0600, or 0660 and the admin group's gid when `adminGroup` is set; the app
/// socket with mode 0666. Sockets passed by systemd are used as they are.
///
/// - Parameters:
///   - configuration: Paths, sockets and options.
///   - logger: The daemon's logger; every request logs through it with `request.id` and `peer.*` metadata.
/// - Returns: The application, to be run.
/// - Throws: `StartupError` naming what is wrong (an unknown group, a socket in use, a path too long, a missing or
///   unsafe key file, …); nothing is left open or bound when it throws.
public func buildApplication(configuration: ServerConfiguration, logger: Logger) async throws -> Application {
    let adminGID = try configuration.adminGroup.map(resolveAdminGroup)
    let inheritedApp = configuration.inheritedSockets["app"]
    let inheritedAdmin = configuration.inheritedSockets["admin"]
    // Cheap checks first, so that a typo in a path fails before the vault is opened.
    if inheritedApp == nil { try UnixSocketFile.checkLength(configuration.appSocketPath) }
    if inheritedAdmin == nil { try UnixSocketFile.checkLength(configuration.adminSocketPath) }

    let vault: Vault
    do {
        vault = try await Vault.open(configuration.vault, logger: logger)
    } catch let error as VaultError {
        throw StartupError(error.message)
    }
    do {
        var bound: [ListeningSocket] = []
        let admin: ListeningSocket
        let app: ListeningSocket
        do {
            if let inheritedAdmin {
                admin = ListeningSocket(descriptor: inheritedAdmin)
            } else {
                admin = try UnixSocketFile.bind(
                    path: configuration.adminSocketPath,
                    mode: adminGID == nil ? 0o600 : 0o660,
                    group: adminGID
                )
                bound.append(admin)
            }
            if let inheritedApp {
                app = ListeningSocket(descriptor: inheritedApp)
            } else {
                app = try UnixSocketFile.bind(path: configuration.appSocketPath, mode: 0o666, group: nil)
                bound.append(app)
            }
        } catch {
            for socket in bound {
                UnixSocketFile.remove(socket)
                close(socket.descriptor)
            }
            throw error
        }

        let metrics = ServerMetrics()
        let authorization = ReloadableAdminAuthorization(AdminAuthorization(daemonUID: geteuid(), adminGID: adminGID))
        var adminLogger = logger
        adminLogger[metadataKey: "server.socket"] = "admin"
        var appLogger = logger
        appLogger[metadataKey: "server.socket"] = "app"
        // Two pools to Personio: token exchanges, refreshes, verifies and revocations keep `personio`'s own, so that
        // proxied requests (which may hold a connection for as long as a caller takes to read a download) can never
        // leave a cold token request waiting for a connection.
        let personio = PersonioAuthClient(logger: logger, timeout: configuration.tokenTimeout)
        let proxy = makeProxy(on: configuration.eventLoopGroup, logger: logger)
        let handling = RequestHandling(
            vault: vault,
            personio: personio,
            proxy: proxy,
            proxyTimeout: configuration.proxyTimeout,
            proxyLimitPerUID: configuration.proxyMaxPerUID,
            metrics: metrics,
            authorizeAdmin: { authorization.allows($0) },
            adminLogger: adminLogger,
            appLogger: appLogger,
            logger: logger
        )
        let broker = handling.broker

        let policy = connectionPolicy(configuration, logger: logger)
        let daemonUID = geteuid()
        let isPrivileged: @Sendable (Caller) -> Bool = { $0.uid == 0 || $0.uid == daemonUID }
        let adminListener = HTTPServer.Listener(socket: admin, dispatcher: handling.admin) { caller in
            isPrivileged(caller) ? .privileged : authorization.allows(caller) ? .admin : .unprivileged
        }
        let appListener = HTTPServer.Listener(socket: app, dispatcher: handling.app) { caller in
            isPrivileged(caller) ? .privileged : .unprivileged
        }
        let server: HTTPServer
        do {
            server = try await HTTPServer.start(
                [adminListener, appListener],
                group: configuration.eventLoopGroup,
                logger: logger,
                drainTimeout: configuration.drainTimeout,
                policy: policy
            )
        } catch {
            for socket in bound { UnixSocketFile.remove(socket) }
            await shutDown(personio: personio, proxy: proxy, logger: logger)
            throw StartupError("cannot serve the sockets: \(error)")
        }
        let adminWhere = inheritedAdmin == nil ? configuration.adminSocketPath : "systemd socket"
        let appWhere = inheritedApp == nil ? configuration.appSocketPath : "systemd socket"
        logger.info(
            "listening",
            metadata: [
                "server.admin_socket": "\(adminWhere)", "server.app_socket": "\(appWhere)",
                "vault.database": "\(configuration.vault.databasePath)",
                "vault.key_file": "\(configuration.vault.keyFilePath)",
                "server.admin_group": "\(configuration.adminGroup ?? "-")",
            ]
        )

        let notifier = SystemdNotifier(
            configuration: configuration.notify,
            eventLoopGroup: configuration.eventLoopGroup,
            status: "serving admin on \(adminWhere), apps on \(appWhere)",
            reload: { [adminGroup = configuration.adminGroup] in
                if let adminGroup {
                    do {
                        let gid = try resolveAdminGroup(adminGroup)
                        authorization.replaceAdminGID(gid)
                    } catch {
                        logger.error("reload: keeping the admin group's previous gid", metadata: ["error": "\(error)"])
                    }
                }
                return "serving admin on \(adminWhere), apps on \(appWhere)"
            },
            logger: logger
        )
        let serviceGroup = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                // Shut down in reverse: tell systemd first, then drain the sockets, then stop the broker that
                // requests in flight may still need.
                services: [
                    .init(service: BrokerService(broker: broker), serviceName: "token-broker"),
                    .init(service: server, serviceName: "http-server"),
                    .init(service: notifier, serviceName: "systemd-notifier"),
                ],
                gracefulShutdownSignals: configuration.handlesSignals ? [.sigterm, .sigint] : [],
                logger: logger
            )
        )
        return Application(
            vault: vault,
            personio: personio,
            proxy: proxy,
            appSocketPath: configuration.appSocketPath,
            adminSocketPath: configuration.adminSocketPath,
            serviceGroup: serviceGroup,
            logger: logger
        )
    } catch {
        try? await vault.close()
        throw error
    }
}

/// The proxy route's upstream connections, on every event loop of the server (see
/// ``PersonioProxy/init(eventLoopsOf:configuration:logger:)``): certificates verified against the system's roots, no
/// redirects, the token client's connect and read time-outs, and room for
/// ``ServerConfiguration/proxyConnectionsPerHost`` connections to each host on each loop.
func makeProxy(on group: any EventLoopGroup, logger: Logger) -> PersonioProxy {
    var configuration = PersonioProxy.UpstreamConfiguration()
    configuration.maximumConnectionsPerHost = ServerConfiguration.proxyConnectionsPerHost
    return PersonioProxy(eventLoopsOf: group, configuration: configuration, logger: logger)
}

/// Closes both Personio clients (after the last request that could use them); a failure is logged, not thrown.
func shutDown(personio: PersonioAuthClient, proxy: PersonioProxy, logger: Logger) async {
    do {
        try await proxy.shutdown()
    } catch {
        logger.warning("closing the proxy's HTTP clients failed", metadata: ["error": "\(error)"])
    }
    do {
        try await personio.shutdown()
    } catch {
        logger.warning("closing the Personio client failed", metadata: ["error": "\(error)"])
    }
}

/// Raises the descriptor limit and derives the connection caps from it, so that unprivileged callers run out of
/// connections well before the daemon runs out of descriptors.
func connectionPolicy(_ configuration: ServerConfiguration, logger: Logger) -> HTTPServer.ConnectionPolicy {
    let descriptors = Kernel.raiseDescriptorLimit()
    let limits = configuration.connectionLimits
    let total = limits.totalCap(descriptorLimit: descriptors.soft)
    if descriptors.raiseFailed {
        logger.warning("cannot raise the descriptor limit", metadata: ["limit": "\(descriptors.soft ?? -1)"])
    }
    if let asked = limits.total, asked > total {
        logger.warning(
            "--max-connections lowered to keep descriptors in reserve",
            metadata: ["asked": "\(asked)", "limit": "\(total)"]
        )
    }
    if !Kernel.hasPeerPidfd {
        logger.warning("this kernel has no SO_PEERPIDFD: unit grants never match")
    }
    logger.debug(
        "connection limits",
        metadata: [
            "limits.per_uid": "\(limits.perUID)", "limits.total": "\(total)",
            "limits.descriptors": "\(descriptors.soft ?? -1)",
        ]
    )
    return HTTPServer.ConnectionPolicy(
        limiter: ConnectionLimiter(perUID: limits.perUID, total: total),
        timeouts: configuration.connectionTimeouts
    )
}

/// The gid of `--admin-group`.
/// - Throws: `StartupError` naming the group when it does not exist.
func resolveAdminGroup(_ name: String) throws(StartupError) -> UInt32 {
    let gid: UInt32?
    do {
        gid = try GroupLookup.gid(named: name)
    } catch {
        throw StartupError("cannot look up admin group '\(name)': \(error)")
    }
    guard let gid else { throw StartupError("admin group '\(name)' does not exist (--admin-group)") }
    return gid
}
