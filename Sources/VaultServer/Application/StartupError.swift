/// Why the daemon cannot start: one line for a human, naming the file, socket or setting and the reason.
/// `connvaultd` prints it as `connvaultd: <description>` and exits 1.
public struct StartupError: Error, Sendable, CustomStringConvertible, Equatable {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}
