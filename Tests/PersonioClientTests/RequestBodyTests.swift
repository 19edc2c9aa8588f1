import NIOCore
import Testing
import VaultLocks
import ZeroedBuffers

@testable import PersonioClient

/// The secret-bearing request bodies: exact encoding, and memory that goes back to the system through the zeroing
/// path, whoever frees it.
@Suite struct RequestBodyTests {
    static func address(_ buffer: ByteBuffer) -> UInt {
        buffer.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
    }

    static func isLive(_ address: UInt) -> Bool {
        ZeroingAllocator.liveBlocks.withLock { $0.contains(address) }
    }

    @Test func v2BodyIsFormEncodedByteForByte() {
        var credentials = PersonioCredentials(
            api: .v2,
            clientID: secret("fake id"),
            clientSecret: secret("fake&secret=1+é"),
            scope: "a:b c"
        )
        #expect(
            String(buffer: RequestBody.v2Token(credentials))
                == "grant_type=client_credentials&client_id=fake%20id"
                + "&client_secret=fake%26secret%3D1%2B%C3%A9&scope=a%3Ab%20c"
        )
        credentials.scope = nil
        #expect(!String(buffer: RequestBody.v2Token(credentials)).contains("scope"))
    }

    @Test func v1BodyIsJSONEscapedByteForByte() {
        let credentials = PersonioCredentials(
            api: .v1,
            clientID: secret("fake-id"),
            clientSecret: secret("fake \"secret\" \\ é\u{1}")
        )
        #expect(
            String(buffer: RequestBody.v1Auth(credentials))
                == #"{"client_id":"fake-id","client_secret":"fake \"secret\" \\ é\u0001"}"#
        )
    }

    @Test func bodiesComeFromTheZeroingAllocatorAndGoBackThroughIt() {
        var address: UInt = 0
        do {
            let body = RequestBody.v2Token(
                PersonioCredentials(api: .v2, clientID: secret("fake-id"), clientSecret: secret("fake-secret"))
            )
            address = Self.address(body)
            #expect(Self.isLive(address))
        }
        #expect(!Self.isLive(address))
    }

    @Test func copiesMadeByCopyOnWriteComeFromTheZeroingAllocator() {
        var original = RequestBody.v1Auth(
            PersonioCredentials(api: .v1, clientID: secret("fake-id"), clientSecret: secret("fake-secret"))
        )
        let shared = original
        original.writeString(" and more bytes than the exact capacity held, to force a move")
        let moved = Self.address(original)
        #expect(Self.isLive(moved))
        #expect(Self.isLive(Self.address(shared)))
        #expect(moved != Self.address(shared))
    }
}
