import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import VaultServer

/// ``HTTPServerCodec`` on an embedded channel, in front of a handler that records what reaches it: pipelining, the
/// framing of answers, half-closure and graceful shutdown, as NIO's decoder, pipelining handler and encoder did them.
@Suite struct HTTPServerCodecTests {
    /// Records request parts and errors; the test writes the answers.
    final class Recorder: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPAnswerPart

        var parts: [String] = []
        var errors: [String] = []
        var events: [String] = []

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch self.unwrapInboundIn(data) {
            case .head(let head): self.parts.append("head \(head.method.rawValue) \(head.uri)")
            case .body(let bytes): self.parts.append("body \(bytes.readableBytes)")
            case .end: self.parts.append("end")
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            self.errors.append("\(error)")
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if case .some(.inputClosed) = event as? ChannelEvent { self.events.append("input closed") }
        }
    }

    struct Connection {
        let channel: EmbeddedChannel
        let recorder: Recorder

        init() throws {
            self.channel = EmbeddedChannel()
            self.recorder = Recorder()
            try HTTPServer.addHTTPHandlers(to: self.channel.pipeline.syncOperations)
            try self.channel.pipeline.syncOperations.addHandler(self.recorder)
            try self.channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/x.sock")).wait()
        }

        func send(_ text: String) throws {
            try self.channel.writeInbound(ByteBuffer(string: text))
        }

        func answer(_ status: HTTPResponseStatus = .ok, headers: HTTPHeaders = [:], body: String? = nil) throws {
            let head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
            try self.channel.writeOutbound(HTTPAnswerPart.head(head))
            if let body {
                try self.channel.writeOutbound(HTTPAnswerPart.body(.byteBuffer(ByteBuffer(string: body))))
            }
            try self.channel.writeOutbound(HTTPAnswerPart.end)
        }

        /// Everything written to the socket so far, as text.
        func written() throws -> String {
            var text = ""
            while let part = try self.channel.readOutbound(as: IOData.self) {
                guard case .byteBuffer(let buffer) = part else { continue }
                text += String(buffer: buffer)
            }
            return text
        }
    }

    @Test func pipelinedRequestsAreHandedOnOneAtATimeAndAnsweredInOrder() throws {
        let connection = try Connection()
        try connection.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\n")
        #expect(connection.recorder.parts == ["head GET /a", "end"])
        try connection.answer(headers: ["Content-Length": "1"], body: "a")
        #expect(connection.recorder.parts == ["head GET /a", "end", "head GET /b", "end"])
        try connection.answer(headers: ["Content-Length": "1"], body: "b")
        // The third head is not complete yet.
        #expect(connection.recorder.parts.count == 4)
        try connection.send("Host: x\r\n\r\n")
        #expect(connection.recorder.parts.suffix(2) == ["head GET /c", "end"])
        #expect(
            try connection.written()
                == "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"
        )
    }

    @Test func theSocketIsNotReadWhileAnAnswerIsAwaitedAndANextRequestWaits() throws {
        let connection = try Connection()
        let reads = ReadCounter()
        try connection.channel.pipeline.syncOperations.addHandler(reads, position: .first)
        try connection.channel.syncOptions?.setOption(.autoRead, value: false)
        try connection.send("GET /a HTTP/1.1\r\n\r\n")
        var before = reads.count
        connection.channel.read()
        // Nothing waits: reading on keeps the socket's read interest (no epoll_ctl per request).
        #expect(reads.count == before + 1, "a read was held with nothing waiting")
        try connection.send("GET /b HTTP/1.1\r\n")
        before = reads.count
        connection.channel.read()
        #expect(reads.count == before, "a read went out while a next request waited and the answer was awaited")
        #expect(connection.recorder.parts == ["head GET /a", "end"])
        try connection.answer(headers: ["Content-Length": "0"])
        #expect(reads.count == before + 1, "the held read goes out once the answer ends")
        try connection.send("Host: x\r\n\r\n")
        #expect(connection.recorder.parts == ["head GET /a", "end", "head GET /b", "end"])
    }

    final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = Any
        var count = 0
        func read(context: ChannelHandlerContext) {
            self.count += 1
            context.read()
        }
    }

    @Test func answersWithoutALengthAreChunkedAndChunksFrameEachPiece() throws {
        let connection = try Connection()
        try connection.send("GET / HTTP/1.1\r\n\r\n")
        try connection.answer(body: "hello")
        #expect(
            try connection.written()
                == "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
    }

    @Test func anAnswerToHEADKeepsItsHeadAndSendsNoBody() throws {
        let connection = try Connection()
        try connection.send("HEAD / HTTP/1.1\r\n\r\n")
        try connection.answer(headers: ["Content-Length": "5"], body: "hello")
        #expect(try connection.written() == "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        // The next answer has its body again.
        try connection.send("GET / HTTP/1.1\r\n\r\n")
        try connection.answer(headers: ["Content-Length": "5"], body: "hello")
        #expect(try connection.written() == "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    }

    @Test func aStatusWithoutABodyLosesItsFramingHeaders() throws {
        let connection = try Connection()
        try connection.send("DELETE /x HTTP/1.1\r\n\r\n")
        try connection.answer(.noContent, headers: ["Content-Length": "0", "X-A": "b"])
        #expect(try connection.written() == "HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n")
    }

    @Test func anHTTP10AnswerWithoutALengthIsNotChunked() throws {
        let connection = try Connection()
        try connection.send("GET / HTTP/1.0\r\n\r\n")
        try connection.channel.writeOutbound(
            HTTPAnswerPart.head(HTTPResponseHead(version: .http1_0, status: .ok))
        )
        try connection.channel.writeOutbound(HTTPAnswerPart.body(.byteBuffer(ByteBuffer(string: "abc"))))
        try connection.channel.writeOutbound(HTTPAnswerPart.end)
        #expect(try connection.written() == "HTTP/1.0 200 OK\r\n\r\nabc")
    }

    @Test func interimAnswersAnswerNothing() throws {
        let connection = try Connection()
        try connection.send("POST / HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        try connection.channel.writeOutbound(
            HTTPAnswerPart.head(HTTPResponseHead(version: .http1_1, status: .continue))
        )
        try connection.send("ok")
        try connection.answer(headers: ["Content-Length": "0"])
        #expect(
            try connection.written() == "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        )
        #expect(connection.recorder.parts == ["head POST /", "body 2", "end"])
    }

    @Test func nothingAfterARequestThatEndsItsConnectionIsHandedOn() throws {
        let connection = try Connection()
        try connection.send("GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
        try connection.answer(headers: ["Content-Length": "0"])
        #expect(connection.recorder.parts == ["head GET /a", "end"])
        #expect(connection.recorder.errors.isEmpty)
    }

    @Test func aMalformedRequestIsReportedOnceAndNothingMoreIsParsed() throws {
        let connection = try Connection()
        try connection.send("GET /a HTTP/1.1\r\nBad Header: x\r\n\r\n")
        try connection.send("GET /b HTTP/1.1\r\n\r\n")
        #expect(connection.recorder.parts.isEmpty)
        #expect(connection.recorder.errors == ["the request is not valid HTTP/1.1: a header name is malformed"])
    }

    @Test func aMalformedPipelinedRequestIsReportedOnlyAfterTheAnswerBeforeIt() throws {
        let connection = try Connection()
        try connection.send("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/9.9\r\n\r\n")
        #expect(connection.recorder.errors.isEmpty)
        try connection.answer(headers: ["Content-Length": "0"])
        #expect(connection.recorder.errors.count == 1)
    }

    @Test func aHeadPastTheLimitIsRefusedBeforeItEnds() throws {
        let connection = try Connection()
        try connection.send("GET / HTTP/1.1\r\n")
        let line = "X-Filler: " + String(repeating: "a", count: 1000) + "\r\n"
        var sent = 0
        while connection.recorder.errors.isEmpty, sent < 200 {
            try connection.send(line)
            sent += 1
        }
        #expect(connection.recorder.errors == ["the request is not valid HTTP/1.1: the head is too large"])
        // Refused once 80 KiB had come, not at the end of the head (which never came).
        #expect(sent <= 82, "refused after \(sent) KiB")
        #expect(connection.recorder.parts.isEmpty)
    }

    @Test func moreThan256HeadersAreRefused() throws {
        let connection = try Connection()
        let headers = (0...256).map { "X-H\($0): v\r\n" }.joined()
        try connection.send("GET / HTTP/1.1\r\n\(headers)\r\n")
        #expect(connection.recorder.errors == ["the request is not valid HTTP/1.1: too many headers"])
        #expect(connection.recorder.parts.isEmpty)
    }

    @Test func halfClosureReachesTheHandlerAfterTheRequestsReadBeforeIt() throws {
        let connection = try Connection()
        try connection.send("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
        connection.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(connection.recorder.events.isEmpty)
        try connection.answer(headers: ["Content-Length": "0"])
        // Once the last request read is handed on, so that the handler closes after answering it.
        #expect(connection.recorder.parts == ["head GET /a", "end", "head GET /b", "end"])
        #expect(connection.recorder.events == ["input closed"])
        #expect(connection.recorder.errors.isEmpty)
    }

    @Test func halfClosureAfterPartOfAPipelinedHeadIsAnErrorOnceTheAnswerBeforeItEnds() throws {
        let connection = try Connection()
        try connection.send("GET /a HTTP/1.1\r\n\r\nGET /b HTT")
        connection.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(connection.recorder.errors.isEmpty)
        try connection.answer(headers: ["Content-Length": "0"])
        #expect(
            connection.recorder.errors == [
                "the request is not valid HTTP/1.1: the request ended before it was complete"
            ]
        )
        #expect(connection.recorder.events == ["input closed"])
    }

    @Test func halfClosureInsideABodyIsAnError() throws {
        let connection = try Connection()
        try connection.send("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        connection.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(
            connection.recorder.errors == [
                "the request is not valid HTTP/1.1: the request ended before it was complete"
            ]
        )
        #expect(connection.recorder.events == ["input closed"])
    }

    @Test func shutdownClosesAnIdleConnectionAtOnce() throws {
        let connection = try Connection()
        #expect(connection.channel.isActive)
        connection.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(!connection.channel.isActive)
    }

    @Test func shutdownClosesABusyConnectionAfterItsAnswerAndServesNoPipelinedRequest() throws {
        let connection = try Connection()
        try connection.send("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
        connection.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(connection.channel.isActive)
        try connection.answer(headers: ["Content-Length": "1"], body: "a")
        #expect(!connection.channel.isActive)
        #expect(connection.recorder.parts == ["head GET /a", "end"])
    }

    @Test func shutdownWithAnAnswerThatEndsItsConnectionWritesTheAnswerBeforeClosing() throws {
        let connection = try Connection()
        try connection.send("GET /a HTTP/1.1\r\nConnection: close\r\n\r\n")
        connection.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        let head = HTTPResponseHead(
            version: .http1_1,
            status: .ok,
            headers: ["Content-Length": "1", "Connection": "close"]
        )
        connection.channel.write(HTTPAnswerPart.head(head), promise: nil)
        connection.channel.write(HTTPAnswerPart.body(.byteBuffer(ByteBuffer(string: "a"))), promise: nil)
        // As the connection handler ends an answer that closes its connection: close once the end is written.
        let ended = connection.channel.embeddedEventLoop.makePromise(of: Void.self)
        var writtenWhenEnded: String?
        ended.futureResult.whenComplete { _ in
            writtenWhenEnded = try? connection.written()
            connection.channel.close(promise: nil)
        }
        connection.channel.write(HTTPAnswerPart.end, promise: ended)
        connection.channel.flush()
        #expect(writtenWhenEnded?.hasSuffix("\r\n\r\na") == true, "the end's write completed before its bytes went out")
        #expect(!connection.channel.isActive)
    }

    @Test func bodyPiecesAreSlicesOfTheReadNotCopies() throws {
        let connection = try Connection()
        final class Pieces: ChannelInboundHandler {
            typealias InboundIn = HTTPServerRequestPart
            var pointers: [UnsafeRawPointer] = []
            func channelRead(context: ChannelHandlerContext, data: NIOAny) {
                if case .body(let bytes) = self.unwrapInboundIn(data) {
                    bytes.withUnsafeReadableBytes { self.pointers.append($0.baseAddress!) }
                }
            }
        }
        let pieces = Pieces()
        try connection.channel.pipeline.syncOperations.addHandler(pieces, position: .before(connection.recorder))
        let read = ByteBuffer(string: "POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody")
        let start = read.withUnsafeReadableBytes { $0.baseAddress! }
        try connection.channel.writeInbound(read)
        #expect(pieces.pointers == [start + 38])
    }

    // MARK: - Forwarded heads written as bytes

    /// The head `encodeForwardedHead` writes is the one the codec frames from an `HTTPResponseHead` with the same
    /// headers (a relayed `Cache-Control` replaced, `Connection` as keep-alive requires), status by status, for both
    /// versions, with and without a length: but that an HTTP/1.0 answer ended by its connection says `close`.
    @Test func aForwardedHeadWrittenAsBytesIsTheHeadTheCodecFrames() throws {
        let statuses: [HTTPResponseStatus] = [.ok, .created, .noContent, .movedPermanently, .notModified, .notFound]
        let headerSets: [[(String, String)]] = [
            [("Content-Type", "application/json"), ("X-RateLimit-Remaining", "9")],
            [("content-length", "2"), ("ETag", "\"a\"")],
            [("Cache-Control", "public"), ("Content-Length", "0"), ("Connection", "x"), ("Transfer-Encoding", "gzip")],
            [],
        ]
        for status in statuses {
            for headers in headerSets {
                for http10 in [false, true] {
                    for keepAlive in [true, false] {
                        let encoded = HTTPServerCodec.encodeForwardedHead(
                            status: status,
                            headers: headers,
                            http10: http10,
                            keepAlive: keepAlive,
                            allocator: ByteBufferAllocator()
                        )
                        let hasLength =
                            status.mayHaveResponseBody && headers.contains { $0.0.lowercased() == "content-length" }
                        let endsByClose = http10 && status.mayHaveResponseBody && !hasLength
                        #expect(encoded.keepAlive == (keepAlive && !endsByClose))
                        #expect(encoded.chunked == (status.mayHaveResponseBody && !hasLength && !http10))

                        var expected = HTTPHeaders(
                            headers.filter {
                                !["cache-control", "connection", "transfer-encoding"].contains($0.0.lowercased())
                            }
                        )
                        expected.add(name: "Cache-Control", value: "no-store")
                        if !encoded.keepAlive {
                            expected.add(name: "Connection", value: "close")
                        } else if http10 {
                            expected.add(name: "Connection", value: "keep-alive")
                        }
                        let connection = try Connection()
                        try connection.send(http10 ? "GET / HTTP/1.0\r\n\r\n" : "GET / HTTP/1.1\r\n\r\n")
                        let head = HTTPResponseHead(
                            version: http10 ? .http1_0 : .http1_1,
                            status: status,
                            headers: expected
                        )
                        try connection.channel.writeOutbound(HTTPAnswerPart.head(head))
                        let framed = try connection.written()
                        #expect(
                            String(buffer: encoded.bytes) == framed,
                            "\(status.code) HTTP/1.\(http10 ? 0 : 1) keep-alive \(keepAlive) \(headers)"
                        )
                    }
                }
            }
        }
    }

    @Test func aForwardedHeadWrittenAsBytesFramesItsBodyAndTheAnswerToHEADSendsNone() throws {
        for method in ["GET", "HEAD"] {
            let connection = try Connection()
            try connection.send("\(method) /x HTTP/1.1\r\n\r\n")
            let encoded = HTTPServerCodec.encodeForwardedHead(
                status: .ok,
                headers: [("Content-Type", "text/plain")],
                http10: false,
                keepAlive: true,
                allocator: ByteBufferAllocator()
            )
            try connection.channel.writeOutbound(HTTPAnswerPart.encodedHead(encoded.bytes, chunked: encoded.chunked))
            try connection.channel.writeOutbound(HTTPAnswerPart.body(.byteBuffer(ByteBuffer(string: "hello"))))
            try connection.channel.writeOutbound(HTTPAnswerPart.end)
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: no-store\r\n"
                + "transfer-encoding: chunked\r\n\r\n"
            #expect(try connection.written() == head + (method == "HEAD" ? "" : "5\r\nhello\r\n0\r\n\r\n"))
            // The next request is read: the answer ended.
            try connection.send("GET /y HTTP/1.1\r\n\r\n")
            #expect(connection.recorder.parts.suffix(2) == ["head GET /y", "end"])
        }
    }
}
