import ArgumentParser
import ConnVaultCtlSupport

/// Runs one invocation: refuses secrets on the command line, parses, runs, and turns every error into a message and
/// one of the fixed exit codes.
enum CommandRunner {
    static func run(_ arguments: [String]) async -> ExitStatus {
        if let flag = ArgumentPreprocessor.secretFlag(in: arguments) {
            Console.error(ErrorReport.prefix + "\(flag): " + ArgumentPreprocessor.secretRefusal)
            return .usage
        }
        let arguments = ArgumentPreprocessor.hoistingGlobalOptions(arguments, subcommands: ConnVaultCtl.subcommandNames)
        do {
            var command = try await ConnVaultCtl.asyncParseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            return .success
        } catch {
            let report = ErrorReport(for: error)
            if !report.text.isEmpty {
                if report.toStandardOutput {
                    Console.output(report.text)
                } else {
                    Console.error(report.text)
                }
            }
            return report.status
        }
    }
}
