#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `connvaultctl`: everything happens in ``CommandRunner``; this only hands over the arguments and exits with its
/// status.
@main
enum EntryPoint {
    static func main() async {
        let status = await CommandRunner.run(Array(CommandLine.arguments.dropFirst()))
        exit(status.rawValue)
    }
}
