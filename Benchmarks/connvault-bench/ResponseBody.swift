/// The fixed body nginx and the bare NIO server return: a JSON object padded to the byte size of the vault's token
/// response, so all three servers move the same number of body bytes per request.
enum ResponseBody {
    /// The smallest body this can make: `{"pad":""}`.
    static let minimumSize = 10

    /// `{"pad":"xxxx…"}` of exactly `size` bytes (at least `minimumSize`). Plain ASCII with no quote, `$` or
    /// backslash inside, so it can stand in an nginx `return` string unchanged.
    static func json(size: Int) -> String {
        "{\"pad\":\"" + String(repeating: "x", count: max(size, Self.minimumSize) - Self.minimumSize) + "\"}"
    }
}
