import Foundation

/// How long a seeded differential test runs: a short fixed-seed profile in `make test`, longer under `make fuzz`
/// (`CONNVAULT_FUZZ_ITERATIONS`), and another seed replayed with `CONNVAULT_FUZZ_SEED`.
public enum FuzzProfile {
    /// `CONNVAULT_FUZZ_ITERATIONS`, or `standard`.
    public static func iterations(standard: Int) -> Int {
        Int(ProcessInfo.processInfo.environment["CONNVAULT_FUZZ_ITERATIONS"] ?? "") ?? standard
    }

    /// `CONNVAULT_FUZZ_SEED`, or the test's own `fixed` seed.
    public static func seed(fixed: UInt64) -> UInt64 {
        UInt64(ProcessInfo.processInfo.environment["CONNVAULT_FUZZ_SEED"] ?? "") ?? fixed
    }
}
