import ArgumentParser
import VaultAPI

/// `connvaultctl audit [ID] [--since SEQ] [--limit N] [--verify]`.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Show the audit trail, or check its hash chain with --verify (exit 1 when broken)."
    )

    @Argument(help: "Only entries about this connection.")
    var id: String?

    @Option(
        name: .customLong("since"),
        help: ArgumentHelp("Only entries after this sequence number.", valueName: "seq")
    )
    var since: Int64?

    @Option(name: .customLong("limit"), help: ArgumentHelp("At most this many entries.", valueName: "n"))
    var limit: Int?

    @Flag(name: .customLong("verify"), help: "Verify the whole trail's hash chain instead of listing entries.")
    var verify = false

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if self.verify && (self.id != nil || self.since != nil || self.limit != nil) {
            throw ValidationError("--verify checks the whole trail; it takes no ID, --since or --limit")
        }
        if let limit = self.limit, limit < 1 {
            throw ValidationError("--limit must be at least 1")
        }
        if let since = self.since, since < 0 {
            throw ValidationError("--since must not be negative")
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
        let list = try client.audit(connection: self.id, since: self.since, limit: self.limit)
        if self.global.json {
            try Console.json(list)
        } else {
            Console.output(ViewRenderer.audit(list))
        }
    }
}
