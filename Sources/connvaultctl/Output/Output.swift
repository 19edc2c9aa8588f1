import VaultAPI

/// Prints a command's result: the daemon's JSON with `--json`, a human rendering otherwise.
enum Output {
    static func connection(_ view: ConnectionView, global: GlobalOptions) throws {
        if global.json {
            try Console.json(view)
        } else {
            Console.output(ViewRenderer.connection(view))
        }
    }

    static func stateChange(_ view: ConnectionView, global: GlobalOptions) throws {
        if global.json {
            try Console.json(view)
        } else {
            Console.output(ViewRenderer.stateLine(view))
        }
    }
}
