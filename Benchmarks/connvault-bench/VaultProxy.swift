import Glibc

/// The vault's proxy route as a server under test: the same `connvaultd` as the token path (``VaultDaemon``), asked
/// for `GET /v1/connections/<id>/proxy/v2/persons` of a connection whose API base URL is ``NginxUpstream``. The
/// daemon belongs to ``VaultBench``, which stops it; ``stop()`` does nothing.
final class VaultProxy: ServerUnderTest {
    let name = "vault proxy"
    let requestPath: String
    let upstreamPID: pid_t?
    private let daemon: VaultDaemon

    var socketPath: String { self.daemon.socketPath }
    var pid: pid_t { self.daemon.pid }

    init(daemon: VaultDaemon, requestPath: String, upstream: NginxUpstream) {
        self.daemon = daemon
        self.requestPath = requestPath
        self.upstreamPID = upstream.pid
    }

    func stop() {}
}
