import Foundation

/// How much slower this run is allowed to be than a plain debug build: `CONNVAULT_TIME_SCALE` (a number ≥ 1, set by
/// Tests/Scripts/sanitize.sh, where every instrumented load and store costs several times its plain price), else 1.
///
/// Tests that bound elapsed time, or what a fixed time lets happen, scale that bound with it; in a plain run every
/// bound stays as written.
public enum TimeScale {
    public static let factor: Int = {
        guard let text = ProcessInfo.processInfo.environment["CONNVAULT_TIME_SCALE"], let value = Int(text),
            value >= 1
        else { return 1 }
        return value
    }()

    /// `duration`, scaled.
    public static func scaled(_ duration: Duration) -> Duration { duration * Self.factor }

    /// Whether this run is under a sanitizer (Tests/Scripts/sanitize.sh sets `CONNVAULT_SANITIZER`): memory figures
    /// (resident set sizes) then measure the sanitizer's shadow memory and quarantine as well as the daemon's own.
    public static var sanitizer: String? {
        ProcessInfo.processInfo.environment["CONNVAULT_SANITIZER"].flatMap { $0.isEmpty ? nil : $0 }
    }
}
