import ArgumentParser

/// `--admin-socket`, `--app-socket` and `--json`, accepted by every command.
struct GlobalOptions: ParsableArguments {
    @Option(
        name: .customLong("admin-socket"),
        help: ArgumentHelp(
            "The admin socket (default: $CONNVAULT_ADMIN_SOCKET, else /run/connvault/admin.sock).",
            valueName: "path"
        ),
        completion: .file()
    )
    var adminSocket: String?

    @Option(
        name: .customLong("app-socket"),
        help: ArgumentHelp(
            "The app socket, for `token` (default: $CONNVAULT_APP_SOCKET, else /run/connvault/app.sock).",
            valueName: "path"
        ),
        completion: .file()
    )
    var appSocket: String?

    @Flag(name: .customLong("json"), help: "Print the daemon's JSON (pretty, keys sorted) instead of tables.")
    var json = false

    var adminClient: AdminClient { AdminClient(socketPath: self.adminSocket) }

    var appClient: AppClient { AppClient(socketPath: self.appSocket) }
}
