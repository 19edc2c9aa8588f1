import ArgumentParser
import VaultAPI

/// `connvaultctl token ID [--min-ttl S]`: a bearer token from the app socket, for shell scripts.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Print a short-lived access token for a connection (from the app socket).",
        discussion: """
            Prints only the token and a newline, for use as
              curl -H "Authorization: Bearer $(connvaultctl token acme)" …
            --json prints the whole answer (expiry, scope, base URL, headers to send).
            """
    )

    @Argument(help: "The connection id.")
    var id: String

    @Option(
        name: .customLong("min-ttl"),
        help: ArgumentHelp("The token must stay valid for at least this many seconds.", valueName: "seconds")
    )
    var minTTL: Int?

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if let minTTL = self.minTTL, minTTL < 0 {
            throw ValidationError("--min-ttl must not be negative")
        }
    }

    func run() async throws {
        let token = try self.global.appClient.token(self.id, minTTL: self.minTTL)
        if self.global.json {
            try Console.json(token)
        } else {
            Console.output(token.accessToken)
        }
    }
}
