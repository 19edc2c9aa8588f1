#if canImport(Glibc)
import Glibc
#endif

#if CONNVAULT_LIBFUZZER
import CLibFuzzer
#endif

// One program, two uses. Built with `-sanitize=fuzzer,address -D CONNVAULT_LIBFUZZER` (make fuzz-build), it is a
// libFuzzer binary: `main` hands the process to libFuzzer's driver, which calls `LLVMFuzzerInitialize` once and
// `LLVMFuzzerTestOneInput` with each input. (SwiftPM links an executable's `main` to its module's entry point, so
// libFuzzer's own `main`, which -sanitize=fuzzer links in as well, does not run; both would do the same.) In a plain
// build, `main` replays files through a target once each: `connvault-fuzz TARGET FILE_OR_DIRECTORY...`, which is what
// the Swift test does with the committed corpora.

/// The target this process fuzzes (set once, before the first input).
nonisolated(unsafe) private var selected: (any FuzzTarget)?

#if CONNVAULT_LIBFUZZER

/// Selects the target: `CONNVAULT_FUZZ_TARGET`, or a first argument `--target=NAME`, which is removed before libFuzzer
/// reads its own flags (and exported, so that libFuzzer's child processes, if any, fuzz the same target).
@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>
) -> Int32 {
    if let arguments = argv.pointee, argc.pointee > 1, let first = arguments[1],
        String(cString: first).hasPrefix("--target=")
    {
        setenv("CONNVAULT_FUZZ_TARGET", String(String(cString: first).dropFirst("--target=".count)), 1)
        for index in 1..<Int(argc.pointee) { arguments[index] = arguments[index + 1] }
        argc.pointee -= 1
    }
    guard let name = getenv("CONNVAULT_FUZZ_TARGET").map({ String(cString: $0) }) else {
        FuzzTargets.fail("set CONNVAULT_FUZZ_TARGET or pass --target=NAME first; targets: \(FuzzTargets.names)")
    }
    guard let target = FuzzTargets.make(name) else {
        FuzzTargets.fail("unknown fuzz target '\(name)'; targets: \(FuzzTargets.names)")
    }
    selected = target
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let target = selected else { FuzzTargets.fail("LLVMFuzzerInitialize did not run") }
    target.run(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}

#endif

@main
enum FuzzMain {
    static func main() {
        #if CONNVAULT_LIBFUZZER
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzerTestOneInput(data, size) })
        #else
        Self.replay(Array(CommandLine.arguments.dropFirst()))
        #endif
    }

    static func replay(_ arguments: [String]) {
        guard let name = arguments.first, arguments.count >= 2 else {
            FuzzTargets.fail("usage: connvault-fuzz TARGET FILE_OR_DIRECTORY...; targets: \(FuzzTargets.names)")
        }
        guard let target = FuzzTargets.make(name) else {
            FuzzTargets.fail("unknown fuzz target '\(name)'; targets: \(FuzzTargets.names)")
        }
        selected = target
        var count = 0
        for path in arguments.dropFirst() {
            for file in InputFiles.list(path) {
                guard let bytes = InputFiles.read(file) else { FuzzTargets.fail("cannot read \(file)") }
                target.run(bytes)
                count += 1
            }
        }
        print("\(name): replayed \(count) inputs")
    }
}

/// The files of a corpus: `path` itself, or the regular files in the directory `path`, sorted by name.
enum InputFiles {
    static func list(_ path: String) -> [String] {
        guard let directory = opendir(path) else { return [path] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if !name.hasPrefix(".") { names.append(path + "/" + name) }
        }
        return names.sorted()
    }

    static func read(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { return nil }
            if count == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<count])
        }
    }
}
