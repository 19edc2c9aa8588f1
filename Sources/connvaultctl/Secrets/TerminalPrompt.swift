#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The terminal settings to put back if a signal arrives while echo is off. Written only while no handler that reads
/// it is installed; read only by the handler (async-signal-safe: `tcsetattr` and `raise` are on the POSIX list).
nonisolated(unsafe) private var savedTerminalAttributes = termios()

/// Restores echo, then lets the signal do what it would have done (end the process).
private func restoreTerminalAndReraise(_ signalNumber: Int32) {
    tcsetattr(STDIN_FILENO, TCSANOW, &savedTerminalAttributes)
    signal(signalNumber, SIG_DFL)
    raise(signalNumber)
}

/// Reads lines from standard input, echoing or not; prompts go to standard error.
enum TerminalPrompt {
    /// The longest line accepted; longer input is refused rather than truncated.
    static let maximumLineBytes = 16 * 1024

    /// Signals that would otherwise end the process with echo still off.
    private static let restoringSignals = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]

    static var standardInputIsTerminal: Bool { isatty(STDIN_FILENO) == 1 }

    /// Prints `prompt` and reads one line from the terminal, with echo off unless `echo`. Echo is restored on every
    /// path: normal return, thrown error, and SIGINT/SIGTERM/SIGHUP/SIGQUIT (which then end the process as usual).
    ///
    /// - Returns: The line without its newline, or nil at end of input.
    static func readLine(prompt: String, echo: Bool) throws -> [UInt8]? {
        Console.prompt(prompt)
        if echo { return try Self.readLine(from: STDIN_FILENO) }

        var original = termios()
        guard tcgetattr(STDIN_FILENO, &original) == 0 else {
            throw CLIError.usage("cannot read the terminal's settings: \(String(cString: strerror(errno)))")
        }
        savedTerminalAttributes = original
        let previousHandlers = Self.restoringSignals.map { ($0, signal($0, restoreTerminalAndReraise)) }
        defer {
            tcsetattr(STDIN_FILENO, TCSANOW, &original)
            for (signalNumber, handler) in previousHandlers {
                signal(signalNumber, handler)
            }
        }
        var silent = original
        // ECHONL still echoes the final newline, so the next output starts on a fresh line.
        silent.c_lflag &= ~tcflag_t(ECHO)
        silent.c_lflag |= tcflag_t(ECHONL)
        guard tcsetattr(STDIN_FILENO, TCSAFLUSH, &silent) == 0 else {
            throw CLIError.usage("cannot turn off echo on the terminal: \(String(cString: strerror(errno)))")
        }
        return try Self.readLine(from: STDIN_FILENO)
    }

    /// Reads one line from `descriptor` a byte at a time, so nothing after the newline is consumed (the next read
    /// gets the next line). The buffer's capacity is reserved once, so no reallocation leaves a copy of a secret.
    ///
    /// - Returns: The line without `\n` (and without a `\r` before it), or nil at end of input before any byte.
    static func readLine(from descriptor: Int32) throws -> [UInt8]? {
        var line: [UInt8] = []
        line.reserveCapacity(Self.maximumLineBytes + 1)
        var byte: UInt8 = 0
        while true {
            let count = Glibc.read(descriptor, &byte, 1)
            if count == 1 {
                if byte == UInt8(ascii: "\n") { break }
                guard line.count < Self.maximumLineBytes else {
                    SecretMemory.zero(&line)
                    throw CLIError.usage("an input line is longer than \(Self.maximumLineBytes) bytes")
                }
                line.append(byte)
            } else if count == 0 {
                if line.isEmpty { return nil }
                break
            } else if errno != EINTR {
                let reason = String(cString: strerror(errno))
                SecretMemory.zero(&line)
                throw CLIError.usage("cannot read standard input: \(reason)")
            }
        }
        if line.last == UInt8(ascii: "\r") {
            line[line.count - 1] = 0
            line.removeLast()
        }
        byte = 0
        return line
    }
}
