import Foundation
import PersonioStandIn
import TestSupport
import Testing

/// What goes into the container: the build tree's binaries and unit files, or the Debian package.
enum ServicePayload: Sendable, CustomStringConvertible {
    /// `systemd/` of this repository and the binaries of `binDirectory`, installed by hand as `make install` would.
    case buildTree(repository: String, binDirectory: String)
    /// `connvault_*.deb`, installed with apt; no Swift toolchain is visible inside.
    case package(path: String)

    var description: String {
        switch self {
        case .buildTree(_, let bin): "build tree (\(bin))"
        case .package(let path): "package \(path)"
        }
    }

    /// `$CONNVAULT_DEB`: the package `make deb` built, which `make test` passes on.
    static var packagePath: String? {
        ProcessInfo.processInfo.environment["CONNVAULT_DEB"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The repository's root, from this file's path.
    static var repository: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().path
    }
}

/// The service checks of issue 9, run as an admin would inside a booted container.
///
/// Everything happens through the container's own tools (`systemctl`, `systemd-run`, `journalctl`, `curl`,
/// `setpriv`) against the installed units; the Personio stand-in runs in the test process on 127.0.0.1.
struct ServiceScenario {
    static let canary = "CANARY-SYSTEMD-SECRET-7f3a9c"
    static let clientID = "fake-client-systemd"
    static let inflightClientID = "fake-client-inflight"
    static let appSocket = "/run/connvault/app.sock"

    let container: SystemdContainer
    let standIn: PersonioStandIn
    let payload: ServicePayload

    /// Boots a container with `payload`, runs every check, and stops the container and the stand-in.
    static func run(_ payload: ServicePayload) async throws {
        let started = ContinuousClock.now
        var binds: [SystemdContainer.Bind] = [.init(host: "/var/lib/dpkg", container: "/opt/host-dpkg")]
        switch payload {
        case .buildTree(let repository, let bin):
            guard let runtime = SystemdContainer.swiftRuntimeDirectory else {
                throw TestSupportError("no Swift runtime directory found for the debug binaries")
            }
            binds += [
                .init(host: runtime, container: runtime),
                .init(host: "\(repository)/systemd", container: "/opt/connvault/systemd"),
                .init(host: bin, container: "/opt/connvault/bin"),
            ]
        case .package(let path):
            let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
            binds.append(.init(host: directory, container: "/opt/connvault/deb"))
        }
        let standIn = try await PersonioStandIn.start()
        let container: SystemdContainer
        do {
            container = try await SystemdContainer.boot(binds: binds)
        } catch {
            try? await standIn.shutdown()
            throw error
        }
        print("systemd container (\(payload)) booted in \(container.bootTime)")
        let scenario = ServiceScenario(container: container, standIn: standIn, payload: payload)
        do {
            try await scenario.checks()
        } catch {
            let journal = (try? await container.sh("journalctl --no-pager -n 80")) ?? ""
            Issue.record("\(error)\n--- last journal lines ---\n\(journal)")
        }
        await container.shutdown()
        try? await standIn.shutdown()
        print("systemd scenario (\(payload)) took \(ContinuousClock.now - started) in all")
    }

    // MARK: - The checks, in order

    func checks() async throws {
        try await self.install()
        try await self.allowPlainHTTPUpstream()
        try await self.createKeyCredential()
        try await self.checkUnitFiles()
        try await self.checkSocketActivation()
        try await self.checkSandbox()
        try await self.checkUnitGrants()
        try await self.checkAdminAccess()
        try await self.checkReload()
        try await self.checkRestart()
        try await self.checkWatchdog()
        try await self.checkGracefulStop()
        try await self.checkJournal()
    }

    /// Installs the payload; ends with the socket enabled and listening.
    func install() async throws {
        switch self.payload {
        case .buildTree:
            try await self.container.sh(
                """
                set -e
                ln -s /opt/connvault/bin/connvaultd /usr/bin/connvaultd
                ln -s /opt/connvault/bin/connvaultctl /usr/bin/connvaultctl
                install -m 0644 /opt/connvault/systemd/connvaultd.service /opt/connvault/systemd/connvaultd.socket \
                    /opt/connvault/systemd/connvaultd-admin.socket /usr/lib/systemd/system/
                install -m 0644 /opt/connvault/systemd/connvault.sysusers /usr/lib/sysusers.d/connvault.conf
                install -m 0644 /opt/connvault/systemd/connvault.tmpfiles /usr/lib/tmpfiles.d/connvault.conf
                systemd-sysusers connvault.conf
                systemd-tmpfiles --create connvault.conf
                systemctl daemon-reload
                systemctl enable --now connvaultd.socket connvaultd-admin.socket
                """
            )
        case .package(let path):
            let name = URL(fileURLWithPath: path).lastPathComponent
            // The container's /var starts empty: give dpkg the host's package database, so that the package's
            // dependencies (libc6, libsodium23, libsqlite3-0, zlib1g) count as installed. dpkg, not apt: the
            // container's empty /etc/apt has no sources, and dpkg checks the dependencies and runs the same
            // maintainer scripts.
            let output = try await self.container.sh(
                """
                set -e
                mkdir -p /var/lib/dpkg /var/log
                cp -a /opt/host-dpkg/. /var/lib/dpkg/
                # Overrides name the host's groups, which the container's fresh /etc/group does not have.
                : > /var/lib/dpkg/statoverride
                # This machine's policy-rc.d (a container image's) forbids starting services from maintainer
                # scripts; a host has none. Removed from the container's /usr overlay only.
                rm -f /usr/sbin/policy-rc.d
                DEBIAN_FRONTEND=noninteractive dpkg -i /opt/connvault/deb/\(name) 2>&1
                """,
                timeout: .seconds(120)
            )
            #expect(output.contains("Setting up connvault"), "\(output)")
            #expect(try await self.container.sh("test ! -e /opt/swift && echo none") == "none\n")
            // The postinst enabled and started the sockets, not the service.
            for unit in ["connvaultd.socket", "connvaultd-admin.socket"] {
                #expect(try await self.isActive(unit) == "active", "\(unit)")
                #expect(try await self.container.sh("systemctl is-enabled \(unit) || true") == "enabled\n", "\(unit)")
            }
        }
    }

    /// The stand-in speaks plain HTTP on 127.0.0.1, which the daemon accepts only when told: a drop-in adds
    /// `--allow-insecure-upstream` to the installed unit's command line, as an admin would, and changes nothing else.
    func allowPlainHTTPUpstream() async throws {
        let execStart = try await self.container.sh(
            "systemctl show -p ExecStart --value connvaultd.service | sed -n 's/.*argv\\[\\]=\\([^;]*\\);.*/\\1/p'"
        ).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(execStart == "/usr/bin/connvaultd --admin-group connvault-admin", "\(execStart)")
        try await self.container.sh(
            """
            set -e
            mkdir -p /etc/systemd/system/connvaultd.service.d
            printf '[Service]\\nExecStart=\\nExecStart=%s --allow-insecure-upstream\\n' '\(execStart)' \
                > /etc/systemd/system/connvaultd.service.d/stand-in.conf
            systemctl daemon-reload
            """
        )
    }

    /// The README's one command for the key credential. `--with-key=host`: the container has no TPM and its
    /// /var/lib/systemd is on tmpfs, where `systemd-creds` refuses to pick a key by itself.
    func createKeyCredential() async throws {
        try await self.container.sh(
            """
            set -e
            install -d -m 0700 /etc/credstore.encrypted
            head -c 32 /dev/urandom | systemd-creds encrypt --with-key=host --name=master.key - \
                /etc/credstore.encrypted/connvault.master.key 2>/dev/null
            """
        )
    }

    /// `systemd-analyze verify` on the installed units and `systemd-analyze security` on the loaded service.
    func checkUnitFiles() async throws {
        // --man=no: man(1) needs /etc/manpath.config, which the container's empty /etc lacks; the pages' presence is
        // checked below instead.
        let verify = try await self.container.run([
            "systemd-analyze", "verify", "--man=no", "/usr/lib/systemd/system/connvaultd.service",
            "/usr/lib/systemd/system/connvaultd.socket", "/usr/lib/systemd/system/connvaultd-admin.socket",
        ])
        #expect(verify.status == 0 && verify.stderr.isEmpty && verify.stdout.isEmpty, "\(verify)")
        if case .package = self.payload {
            let pages = try await self.container.sh(
                "zcat /usr/share/man/man8/connvaultd.8.gz /usr/share/man/man1/connvaultctl.1.gz | grep '^.Dt'"
            )
            #expect(pages == ".Dt CONNVAULTD 8\n.Dt CONNVAULTCTL 1\n", "\(pages)")
        }
        let security = try await self.container.run(["systemd-analyze", "security", "connvaultd.service"])
        let score = Self.exposure(security.stdout)
        print("systemd-analyze security connvaultd.service (\(self.payload)): \(score.map { "\($0)" } ?? "?")")
        #expect(score.map { $0 <= 2.0 } == true, "\(security)")
    }

    /// The first request on the app socket starts the daemon, which adopts both sockets.
    func checkSocketActivation() async throws {
        #expect(try await self.isActive("connvaultd.service") == "inactive")
        #expect(try await self.container.sh("stat -c '%a %U %G' /run/connvault/app.sock") == "666 root root\n")
        #expect(
            try await self.container.sh("stat -c '%a %U %G' /run/connvault/admin.sock") == "660 root connvault-admin\n"
        )
        // Not granted to root (nothing is yet): 403, from a daemon started for this request.
        #expect(try await self.curlStatus("/v1/connections/acme/token") == "403")
        #expect(try await self.isActive("connvaultd.service") == "active")
        let status = try await self.property("StatusText")
        #expect(status.hasPrefix("serving admin on systemd socket, apps on systemd socket"), "\(status)")
        let full = try await self.container.run(["systemctl", "status", "--no-pager", "connvaultd.service"])
        #expect(full.stdout.contains("Status: \"serving"), "\(full)")
    }

    /// The daemon runs as `connvault`, sandboxed, with its key from the encrypted credential.
    func checkSandbox() async throws {
        let pid = try await self.mainPID()
        let uid = try await self.container.sh("id -u connvault").trimmingCharacters(in: .whitespacesAndNewlines)
        let status = try await self.container.sh("cat /proc/\(pid)/status")
        func field(_ name: String) -> String? {
            status.split(separator: "\n").first { $0.hasPrefix("\(name):") }.map {
                $0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces)
            }
        }
        #expect(field("Uid")?.split(separator: "\t").allSatisfy { $0 == uid } == true, "\(status)")
        #expect(field("NoNewPrivs") == "1")
        #expect(field("Seccomp") == "2")
        #expect(field("CapEff") == "0000000000000000")
        #expect(field("CapPrm") == "0000000000000000")
        #expect(try await self.container.sh("stat -c '%a %U' /var/lib/connvault") == "700 connvault\n")
        #expect(try await self.container.sh("stat -c '%a %U' /var/lib/connvault/vault.sqlite3") == "600 connvault\n")
        // No key file in the state directory: the key came from the credential.
        #expect(try await self.container.sh("test ! -e /var/lib/connvault/master.key && echo absent") == "absent\n")
        let listening = try await self.journalEntries().first { $0["MESSAGE"] == "listening" }
        #expect(
            listening?["VAULT_KEY_FILE"] == "/run/credentials/connvaultd.service/master.key",
            "\(String(describing: listening))"
        )
        if case .package = self.payload {
            let rss = field("VmRSS") ?? "?"
            print("installed connvaultd idle RSS: \(rss)")
        }
    }

    /// A connection granted to `payroll-sync.service` serves that unit, and no other unit or uid.
    func checkUnitGrants() async throws {
        self.standIn.register(clientID: Self.clientID, clientSecret: Self.canary, api: .v2)
        try await self.container.sh(
            """
            connvaultctl add acme --provider personio-v2 --client-id \(Self.clientID) \
                --api-base-url \(self.standIn.baseURL) --allow-unit payroll-sync.service --secret-stdin
            """,
            stdin: "\(Self.canary)\n"
        )
        let token = try await self.runAsUnit("payroll-sync", "connvaultctl token acme")
        #expect(token.status == 0, "\(token)")
        #expect(token.stdout == (self.standIn.issuedTokens.last ?? "-") + "\n", "\(token)")

        let otherUnit = try await self.runAsUnit(
            "payroll-other",
            "curl -s -o /dev/null -w '%{http_code}' --unix-socket \(Self.appSocket) http://localhost/v1/connections/acme/token"
        )
        #expect(otherUnit.stdout == "403", "\(otherUnit)")
        let otherUID = try await self.container.sh(
            """
            setpriv --reuid=65534 --regid=65534 --clear-groups curl -s -o /dev/null -w '%{http_code}' \
                --unix-socket \(Self.appSocket) http://localhost/v1/connections/acme/token
            """
        )
        #expect(otherUID == "403")
    }

    /// Root and members of `connvault-admin` use the admin CLI; another uid is refused.
    func checkAdminAccess() async throws {
        #expect(try await self.container.sh("connvaultctl list").contains("acme"))
        let gid = try await self.container.sh("getent group connvault-admin | cut -d: -f3")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let member = try await self.container.run([
            "setpriv", "--reuid=65534", "--regid=65534", "--groups=\(gid)", "connvaultctl", "list",
        ])
        #expect(member.status == 0 && member.stdout.contains("acme"), "\(member)")
        let other = try await self.container.run([
            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "connvaultctl", "list",
        ])
        #expect(other.status == 3, "\(other)")
        #expect(!other.stdout.contains("acme"))
    }

    /// `systemctl reload`: SIGHUP, RELOADING=1 … READY=1, the same process.
    func checkReload() async throws {
        let before = try await self.mainPID()
        let reload = try await self.container.run(["systemctl", "reload", "connvaultd.service"])
        #expect(reload.status == 0, "\(reload)")
        try await self.container.wait("the reload to be logged") {
            try await self.journalEntries().contains { $0["MESSAGE"] == "reloaded" }
        }
        #expect(try await self.mainPID() == before)
        #expect(try await self.isActive("connvaultd.service") == "active")
        #expect(try await self.container.sh("connvaultctl list").contains("acme"))
    }

    /// `systemctl restart`: a new process with every connection.
    func checkRestart() async throws {
        let before = try await self.mainPID()
        try await self.container.sh("systemctl restart connvaultd.service")
        let after = try await self.mainPID()
        #expect(after != before)
        #expect(try await self.container.sh("connvaultctl list").contains("acme"))
        #expect(try await self.runAsUnit("payroll-sync", "connvaultctl token acme").status == 0)
    }

    /// A stopped daemon misses its watchdog: systemd kills it and starts a new one, which serves every connection.
    func checkWatchdog() async throws {
        let before = try await self.mainPID()
        let restarts = Int(try await self.property("NRestarts")) ?? 0
        try await self.container.sh("kill -STOP \(before)")
        try await self.container.wait("systemd to replace the stopped daemon", timeout: .seconds(90)) {
            let pid = try await self.mainPID()
            let state = try await self.isActive("connvaultd.service")
            return pid != before && pid != 0 && state == "active"
        }
        #expect(Int(try await self.property("NRestarts")) == restarts + 1)
        #expect(try await self.container.sh("connvaultctl list").contains("acme"))
        let token = try await self.runAsUnit("payroll-sync", "connvaultctl token acme")
        #expect(token.status == 0, "\(token)")
    }

    /// `systemctl stop` answers the request in flight, and the daemon exits 0.
    func checkGracefulStop() async throws {
        self.standIn.register(clientID: Self.inflightClientID, clientSecret: "fake-inflight-secret", api: .v2)
        try await self.container.sh(
            """
            connvaultctl add slow --provider personio-v2 --client-id \(Self.inflightClientID) \
                --api-base-url \(self.standIn.baseURL) --allow-uid 0 --secret-stdin
            """,
            stdin: "fake-inflight-secret\n"
        )
        // Counted by client id: a token call of another connection (a refresh ahead of expiry) is not this request.
        let inflightCalls = {
            self.standIn.requests(.v2Token).count { $0.bodyFields["client_id"] == Self.inflightClientID }
        }
        let calls = inflightCalls()
        self.standIn.setLatency(.seconds(3))
        try await self.container.sh(
            """
            curl -s -o /dev/null -w '%{http_code}' --max-time 30 --unix-socket \(Self.appSocket) \
                http://localhost/v1/connections/slow/token > /tmp/inflight.status 2>&1 &
            """
        )
        try await self.container.wait("the token request to reach the stand-in", timeout: .seconds(20)) {
            inflightCalls() > calls
        }
        try await self.container.sh("systemctl stop connvaultd.service")
        self.standIn.setLatency(.zero)
        try await self.container.wait("the in-flight request to finish", timeout: .seconds(30)) {
            try await self.container.sh("cat /tmp/inflight.status").count == 3
        }
        let status = try await self.container.sh("cat /tmp/inflight.status")
        if status != "200" {
            let journal = (try? await self.container.sh("journalctl --no-pager -u connvaultd.service -n 40")) ?? ""
            Issue.record(
                "the request in flight at stop got \(status), not 200; the daemon's last journal lines:\n\(journal)"
            )
        }
        #expect(try await self.property("ExecMainStatus") == "0")
        #expect(try await self.property("Result") == "success")
        #expect(try await self.journalEntries().contains { $0["MESSAGE"] == "stopped" })
    }

    /// The journal has the lifecycle events with structured fields, and no byte of the secret.
    func checkJournal() async throws {
        let entries = try await self.journalEntries()
        let created = entries.first { $0["MESSAGE"] == "connection created" && $0["CONNECTION_ID"] == "acme" }
        #expect(created != nil, "no 'connection created' entry with CONNECTION_ID=acme")
        #expect(created?["MESSAGE_ID"]?.count == 32, "\(String(describing: created))")
        #expect(created?["CALLER_UID"] == "0", "\(String(describing: created))")
        #expect(entries.contains { $0["MESSAGE"] == "listening" && $0["MESSAGE_ID"] != nil })
        let everything = try await self.container.sh("journalctl --no-pager -o export", timeout: .seconds(60))
        #expect(!everything.isEmpty)
        #expect(!everything.contains(Self.canary), "the secret reached the journal")
        let database = try await self.container.run(["grep", "-rc", Self.canary, "/var/lib/connvault"])
        #expect(database.status == 1, "the secret is in the state directory:\n\(database)")
    }

    // MARK: - Helpers

    func isActive(_ unit: String) async throws -> String {
        try await self.container.run(["systemctl", "is-active", unit]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func property(_ name: String) async throws -> String {
        try await self.container.property(name)
    }

    func mainPID() async throws -> Int {
        Int(try await self.property("MainPID")) ?? 0
    }

    /// `curl` as root on the app socket; the status code.
    func curlStatus(_ path: String) async throws -> String {
        try await self.container.sh(
            "curl -s -o /dev/null -w '%{http_code}' --unix-socket \(Self.appSocket) http://localhost\(path)"
        )
    }

    /// Runs `script` in a transient service named `unit`, waiting for it and relaying its output.
    func runAsUnit(_ unit: String, _ script: String) async throws -> CommandResult {
        try await self.container.run([
            "systemd-run", "--unit", unit, "--wait", "--pipe", "--quiet", "--collect", "/bin/sh", "-c", script,
        ])
    }

    /// `journalctl -u connvaultd -o json`, one dictionary of string fields per entry.
    func journalEntries() async throws -> [[String: String]] {
        let output = try await self.container.sh("journalctl -u connvaultd.service -o json --no-pager")
        return output.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                return nil
            }
            return object.compactMapValues { $0 as? String }
        }
    }

    /// The number in `→ Overall exposure level for connvaultd.service: 1.7 OK :-)`.
    static func exposure(_ output: String) -> Double? {
        guard let line = output.split(separator: "\n").first(where: { $0.contains("Overall exposure level") }),
            let colon = line.range(of: ".service: ")
        else { return nil }
        return line[colon.upperBound...].split(separator: " ").first.flatMap { Double($0) }
    }
}
