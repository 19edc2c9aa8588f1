/// Re-indents a JSON document into the layout `VaultJSON.encoder(pretty: true)` prints, byte for byte, without
/// decoding it: `connvaultctl list --json` of 100,000 connections is a 55 MB answer, which decoding into types and
/// encoding again took seconds (BENCHMARKS.md, "Scale").
///
/// The layout is `JSONEncoder`'s `.prettyPrinted`: two spaces a level, `"name" : value`, one member or element a
/// line, and an empty object or array as `{`, an empty line and `}` at the indent of the line it opens on. Strings,
/// numbers and literals are copied as they are, so the result is the encoder's only for a document the encoder (with
/// the same options) wrote, compact: the daemon's answers. Whitespace between tokens is accepted and dropped.
///
/// The whole document is checked on the way: JSON's grammar (RFC 8259), valid UTF-8, nothing after the value, at
/// most ``maximumDepth`` levels. Anything else is a ``Malformed`` error, with the offset where it was found.
public enum JSONReindenter {
    public static let maximumDepth = 512

    public struct Malformed: Error, Sendable, Equatable, CustomStringConvertible {
        public var offset: Int
        public var reason: String
        public var description: String { "malformed JSON at byte \(self.offset): \(self.reason)" }
    }

    /// The re-indented document, without a final newline (as the encoder prints none), and the names of the root
    /// object's members with the first byte of each one's value (`[` for an array), for a caller to check the shape
    /// it expects; empty when the root is not an object.
    public static func reindent(
        _ input: UnsafeBufferPointer<UInt8>
    ) throws(Malformed) -> (bytes: [UInt8], rootMembers: [(name: String, valueStart: UInt8)]) {
        guard String(validating: input, as: UTF8.self) != nil else {
            throw Malformed(offset: 0, reason: "not valid UTF-8")
        }
        var parser = Parser(input: input)
        try parser.run()
        return (parser.output, parser.rootMembers)
    }

    public static func reindent(
        _ input: [UInt8]
    ) throws(Malformed) -> (bytes: [UInt8], rootMembers: [(name: String, valueStart: UInt8)]) {
        // The closure's error is `any Error`; the only one thrown is `Malformed`.
        do {
            return try input.withUnsafeBufferPointer { buffer in try Self.reindent(buffer) }
        } catch let error as Malformed {
            throw error
        } catch {
            throw Malformed(offset: 0, reason: "\(error)")
        }
    }

    struct Parser {
        let input: UnsafeBufferPointer<UInt8>
        var index = 0
        var output: [UInt8] = []
        /// `{` or `[` for each container open around the current position.
        var stack: [UInt8] = []
        var rootMembers: [(name: String, valueStart: UInt8)] = []

        init(input: UnsafeBufferPointer<UInt8>) {
            self.input = input
            // The pretty form of a list is some 1.7 times the compact one: reserved once, so that the output never
            // grows by copying (a copy of 90 MB at 100,000 connections, both halves resident meanwhile). Pages not
            // written are never touched, so an over-estimate costs address space only.
            self.output.reserveCapacity(input.count + input.count / 4 * 3 + 64)
        }

        func fail(_ reason: String) -> Malformed { Malformed(offset: self.index, reason: reason) }

        mutating func skipWhitespace() {
            while self.index < self.input.count {
                switch self.input[self.index] {
                case 0x20, 0x09, 0x0A, 0x0D: self.index += 1
                default: return
                }
            }
        }

        /// The next byte after whitespace, not consumed.
        mutating func peek() throws(Malformed) -> UInt8 {
            self.skipWhitespace()
            guard self.index < self.input.count else { throw self.fail("unexpected end") }
            return self.input[self.index]
        }

        mutating func indent() {
            for _ in 0..<self.stack.count {
                self.output.append(0x20)
                self.output.append(0x20)
            }
        }

        mutating func run() throws(Malformed) {
            var expectingValue = true
            while true {
                if expectingValue {
                    try self.value()
                    expectingValue = false
                    // An opened, non-empty container: its first member or element follows.
                    if self.openedNow {
                        self.openedNow = false
                        self.indent()
                        if self.stack.last == UInt8(ascii: "{") { try self.memberName() }
                        expectingValue = true
                    }
                    continue
                }
                guard let top = self.stack.last else {
                    self.skipWhitespace()
                    guard self.index == self.input.count else { throw self.fail("data after the document") }
                    return
                }
                let byte = try self.peek()
                if byte == UInt8(ascii: ",") {
                    self.index += 1
                    self.output.append(UInt8(ascii: ","))
                    self.output.append(0x0A)
                    self.indent()
                    if top == UInt8(ascii: "{") { try self.memberName() }
                    expectingValue = true
                } else if (top == UInt8(ascii: "{") && byte == UInt8(ascii: "}"))
                    || (top == UInt8(ascii: "[") && byte == UInt8(ascii: "]"))
                {
                    self.index += 1
                    self.stack.removeLast()
                    self.output.append(0x0A)
                    self.indent()
                    self.output.append(byte)
                } else {
                    throw self.fail(top == UInt8(ascii: "{") ? "expected ',' or '}'" : "expected ',' or ']'")
                }
            }
        }

        static var depthLimit: Int { JSONReindenter.maximumDepth }

        /// Set by ``value()`` when it opened a container with something in it.
        var openedNow = false

        /// `"name" : ` of an object member, checked.
        mutating func memberName() throws(Malformed) {
            guard try self.peek() == UInt8(ascii: "\"") else { throw self.fail("expected a member name") }
            let start = self.index
            try self.string()
            if self.stack.count == 1 {
                let name = String(decoding: self.input[(start + 1)..<(self.index - 1)], as: UTF8.self)
                guard try self.peekAfterColon() else { throw self.fail("expected ':'") }
                self.rootMembers.append((name, try self.peek()))
            } else {
                guard try self.peekAfterColon() else { throw self.fail("expected ':'") }
            }
            self.output.append(contentsOf: [0x20, UInt8(ascii: ":"), 0x20])
        }

        /// Consumes `:` and reports whether it was there.
        mutating func peekAfterColon() throws(Malformed) -> Bool {
            guard try self.peek() == UInt8(ascii: ":") else { return false }
            self.index += 1
            return true
        }

        /// One value; a container is only opened (its contents follow in ``run()``).
        mutating func value() throws(Malformed) {
            let byte = try self.peek()
            switch byte {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                guard self.stack.count < Self.depthLimit else {
                    throw self.fail("nested deeper than \(Self.depthLimit) levels")
                }
                self.index += 1
                let close = byte == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
                self.output.append(byte)
                self.output.append(0x0A)
                if try self.peek() == close {
                    self.index += 1
                    self.output.append(0x0A)
                    self.indent()
                    self.output.append(close)
                } else {
                    self.stack.append(byte)
                    self.openedNow = true
                }
            case UInt8(ascii: "\""):
                try self.string()
            case UInt8(ascii: "t"): try self.literal("true")
            case UInt8(ascii: "f"): try self.literal("false")
            case UInt8(ascii: "n"): try self.literal("null")
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                try self.number()
            default:
                throw self.fail("expected a value")
            }
        }

        mutating func literal(_ text: StaticString) throws(Malformed) {
            let count = text.utf8CodeUnitCount
            guard self.index + count <= self.input.count else { throw self.fail("unexpected end") }
            for offset in 0..<count where self.input[self.index + offset] != text.utf8Start[offset] {
                throw self.fail("expected \(text)")
            }
            self.output.append(contentsOf: UnsafeBufferPointer(rebasing: self.input[self.index..<(self.index + count)]))
            self.index += count
        }

        func isDigit(_ at: Int) -> Bool {
            at < self.input.count && (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self.input[at])
        }

        mutating func number() throws(Malformed) {
            let start = self.index
            var at = self.index
            if self.input[at] == UInt8(ascii: "-") { at += 1 }
            guard self.isDigit(at) else { throw self.fail("expected a digit") }
            if self.input[at] == UInt8(ascii: "0") {
                at += 1
            } else {
                while self.isDigit(at) { at += 1 }
            }
            if at < self.input.count, self.input[at] == UInt8(ascii: ".") {
                at += 1
                guard self.isDigit(at) else { throw self.fail("expected a digit after '.'") }
                while self.isDigit(at) { at += 1 }
            }
            if at < self.input.count, self.input[at] == UInt8(ascii: "e") || self.input[at] == UInt8(ascii: "E") {
                at += 1
                if at < self.input.count, self.input[at] == UInt8(ascii: "+") || self.input[at] == UInt8(ascii: "-") {
                    at += 1
                }
                guard self.isDigit(at) else { throw self.fail("expected a digit in the exponent") }
                while self.isDigit(at) { at += 1 }
            }
            self.output.append(contentsOf: UnsafeBufferPointer(rebasing: self.input[start..<at]))
            self.index = at
        }

        static func isHex(_ byte: UInt8) -> Bool {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"),
                UInt8(ascii: "A")...UInt8(ascii: "F"):
                true
            default: false
            }
        }

        /// A string, copied as it is; at its opening quote.
        mutating func string() throws(Malformed) {
            let start = self.index
            var at = self.index + 1
            while true {
                guard at < self.input.count else {
                    self.index = at
                    throw self.fail("unterminated string")
                }
                let byte = self.input[at]
                if byte == UInt8(ascii: "\"") { break }
                if byte < 0x20 {
                    self.index = at
                    throw self.fail("control character in a string")
                }
                if byte == UInt8(ascii: "\\") {
                    guard at + 1 < self.input.count else {
                        self.index = at
                        throw self.fail("unterminated string")
                    }
                    switch self.input[at + 1] {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                        UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        at += 2
                    case UInt8(ascii: "u"):
                        guard at + 5 < self.input.count, (at + 2...at + 5).allSatisfy({ Self.isHex(self.input[$0]) })
                        else {
                            self.index = at
                            throw self.fail("invalid \\u escape")
                        }
                        at += 6
                    default:
                        self.index = at
                        throw self.fail("invalid escape")
                    }
                    continue
                }
                at += 1
            }
            self.output.append(contentsOf: UnsafeBufferPointer(rebasing: self.input[start...at]))
            self.index = at + 1
        }
    }
}
