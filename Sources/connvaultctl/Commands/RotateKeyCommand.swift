import ArgumentParser
import VaultAPI

/// `connvaultctl rotate-key`.
struct RotateKeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate-key",
        abstract: "Rotate the master key: every data key is re-wrapped in one transaction, online."
    )

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let result = try self.global.adminClient.rotateKey()
        if self.global.json {
            try Console.json(result)
        } else {
            Console.output(ViewRenderer.keyRotation(result))
        }
    }
}
