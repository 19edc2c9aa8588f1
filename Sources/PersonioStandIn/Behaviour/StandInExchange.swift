/// A request as the HTTP handler hands it over: head and whole body.
struct StandInRequest: Sendable {
    var method: String
    var path: String
    var query: String?
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    /// The first value of the header `name`, compared case-insensitively.
    func header(_ name: String) -> String? {
        let lowercased = name.lowercased()
        return self.headers.first { $0.name.lowercased() == lowercased }?.value
    }

    /// The media type of `Content-Type`, lower-cased, without parameters.
    var mediaType: String? {
        self.header("Content-Type").map {
            String($0.split(separator: ";", maxSplits: 1).first ?? "").trimmingASCIISpaces().lowercased()
        }
    }

    var queryFields: [String: String] { self.query.flatMap { FormFields.decode($0) } ?? [:] }
}

/// An answer to write.
struct StandInResponse: Sendable {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    init(status: Int, contentType: String, json: JSONText, headers: [(name: String, value: String)] = []) {
        self.init(status: status, headers: [("Content-Type", contentType)] + headers, body: Array(json.rendered.utf8))
    }
}

/// What the handler does with a request.
enum StandInReply: Sendable {
    case respond(StandInResponse)
    /// Never answer; the connection stays open until the peer or shutdown closes it.
    case hang
    /// Close the connection without answering.
    case close
}

extension StringProtocol {
    func trimmingASCIISpaces() -> Substring {
        var text = Substring(self)
        while text.first == " " || text.first == "\t" { text = text.dropFirst() }
        while text.last == " " || text.last == "\t" { text = text.dropLast() }
        return text
    }
}
