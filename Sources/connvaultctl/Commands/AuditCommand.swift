import ArgumentParser
import VaultAPI

/// `connvaultctl audit [ID] [--since SEQ|DATE|TIME] [--limit N] [--verify]`.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Show the audit trail, or check its hash chain with --verify (exit 1 when broken).",
        discussion: """
            Without --limit every matching entry is listed (fetched 1000 at a time). \
            `connvaultctl audit acme --since 2026-12-01` lists what happened to connection acme since that day \
            (UTC): among it, token.issued for each program that got a token and proxy.refused for each proxied \
            request its rule did not allow.
            """
    )

    @Argument(help: "Only entries about this connection.")
    var id: String?

    @Option(
        name: .customLong("since"),
        help: ArgumentHelp(
            "Only entries after this sequence number, or written since this UTC date (2026-12-01) or time (2026-12-01T08:00:00Z).",
            valueName: "seq|date"
        )
    )
    var since: String?

    @Option(name: .customLong("limit"), help: ArgumentHelp("At most this many entries.", valueName: "n"))
    var limit: Int?

    @Flag(name: .customLong("verify"), help: "Verify the whole trail's hash chain instead of listing entries.")
    var verify = false

    @OptionGroup var global: GlobalOptions

    /// Entries per request when listing everything: the daemon's largest page.
    static let pageSize = 1000

    func validate() throws {
        if self.verify && (self.id != nil || self.since != nil || self.limit != nil) {
            throw ValidationError("--verify checks the whole trail; it takes no ID, --since or --limit")
        }
        if let limit = self.limit, limit < 1 {
            throw ValidationError("--limit must be at least 1")
        }
        if let since = self.since, AuditSince(since) == nil {
            throw ValidationError("--since must be \(AuditSince.expected)")
        }
    }

    func run() async throws {
        let client = self.global.adminClient
        if self.verify {
            let verification = try client.verifyAudit()
            if self.global.json {
                try Console.json(verification)
            } else if verification.intact {
                Console.output(ViewRenderer.auditVerification(verification))
            }
            guard verification.intact else {
                throw CLIError.failed(
                    "the audit trail is broken" + ViewRenderer.breakDescription(verification),
                    code: "audit_broken"
                )
            }
            return
        }
        let since = self.since.flatMap(AuditSince.init)
        let list: AuditList
        if let limit = self.limit {
            list = try client.audit(connection: self.id, since: since, limit: limit)
        } else {
            list = try Self.everything(since: since) { since in
                try client.audit(connection: self.id, since: since, limit: Self.pageSize)
            }
        }
        if self.global.json {
            try Console.json(list)
        } else {
            Console.output(ViewRenderer.audit(list))
        }
    }

    /// Every entry after `since`, a page at a time: each next page starts after the last entry's `seq`. A page
    /// asked for by sequence number after a time keeps only entries at or after that time (the daemon's clock may
    /// have been set back between two rows).
    static func everything(
        since: AuditSince?,
        pageSize: Int = Self.pageSize,
        page: (AuditSince?) throws -> AuditList
    ) throws -> AuditList {
        var entries: [AuditEntry] = []
        var next = since
        while true {
            let fetched = try page(next).entries
            var batch = fetched
            if case .time(let from) = since, case .sequence? = next {
                batch.removeAll { $0.time < from }
            }
            entries += batch
            guard fetched.count >= pageSize, let last = fetched.last else { break }
            next = .sequence(last.seq)
        }
        return AuditList(entries: entries)
    }
}
