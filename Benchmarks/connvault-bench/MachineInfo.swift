import Glibc

/// The machine the figures were taken on, printed with them: they mean little without it.
struct MachineInfo {
    var onlineCPUs: Int
    var cpuModel: String
    var kernel: String
    /// The 1-minute load average when the run started: other work on a shared machine shows here.
    var loadAverage: String

    static func current() -> MachineInfo {
        let cpuinfo = (try? FileSystem.readText("/proc/cpuinfo")) ?? ""
        let model = cpuinfo.split(separator: "\n")
            .first { $0.hasPrefix("model name") }
            .flatMap { $0.split(separator: ":", maxSplits: 1).last }
            .map { String($0.drop(while: { $0 == " " || $0 == "\t" })) }
        let loadAverage = (try? FileSystem.readText("/proc/loadavg"))?.split(separator: " ").first.map(String.init)
        var name = utsname()
        uname(&name)
        func text<T>(_ field: inout T) -> String {
            withUnsafeBytes(of: &field) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        }
        return MachineInfo(
            onlineCPUs: sysconf(Int32(_SC_NPROCESSORS_ONLN)),
            cpuModel: model ?? "unknown",
            kernel: "\(text(&name.sysname)) \(text(&name.release)) \(text(&name.machine))",
            loadAverage: loadAverage ?? "unknown"
        )
    }

    var description: String {
        "\(self.onlineCPUs) CPUs (\(self.cpuModel)), \(self.kernel), load average \(self.loadAverage) at start"
    }
}
