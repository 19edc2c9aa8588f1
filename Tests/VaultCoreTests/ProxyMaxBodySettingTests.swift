import Foundation
import Testing
import VaultAPI

/// `proxy_max_body`: the proxy route's request body limit per connection (1 KiB to 1 GiB, 64 MiB by default).
@Suite struct ProxyMaxBodySettingTests {
    @Test func theDefaultIsSixtyFourMebibytes() {
        #expect(ConnectionSettings.defaultProxyMaxBody == 64 * 1024 * 1024)
        #expect(ConnectionSettings().effectiveProxyMaxBody == ConnectionSettings.defaultProxyMaxBody)
        #expect(ConnectionSettings(proxyMaxBody: 2 << 20).effectiveProxyMaxBody == 2 << 20)
    }

    @Test(arguments: [1024, 65_536, 64 << 20, 1 << 30])
    func valuesInRangeAreValid(bytes: Int) {
        for provider in Provider.allCases {
            #expect(
                ConnectionSettings(companyID: provider == .personioRecruiting ? "1" : nil, proxyMaxBody: bytes)
                    .validationErrors(for: provider).isEmpty
            )
        }
    }

    @Test(arguments: [Int.min, -1, 0, 1, 1023, (1 << 30) + 1, Int.max])
    func valuesOutOfRangeAreRejectedWithTheRange(bytes: Int) throws {
        let errors = ConnectionSettings(proxyMaxBody: bytes).validationErrors(for: .personioV2)
        let error = try #require(errors.first)
        #expect(errors.count == 1)
        #expect(error.field == "proxy_max_body")
        #expect(error.reason == "must be a number of bytes from 1024 (1 KiB) to 1073741824 (1 GiB)")
    }

    @Test func theWireNameIsProxyMaxBody() throws {
        let settings = try VaultJSON.decoder().decode(
            ConnectionSettings.self,
            from: Data(#"{"proxy_max_body":2097152}"#.utf8)
        )
        #expect(settings.proxyMaxBody == 2_097_152)
        let encoded = try JSONSerialization.jsonObject(with: try VaultJSON.encoder().encode(settings)) as? [String: Any]
        #expect(encoded?["proxy_max_body"] as? Int == 2_097_152)
        // Unset, the member is absent: the view shows only what was set.
        let plain = try JSONSerialization.jsonObject(with: try VaultJSON.encoder().encode(ConnectionSettings()))
        #expect((plain as? [String: Any])?["proxy_max_body"] == nil)
    }

    @Test(arguments: [#"{"proxy_max_body":"2MiB"}"#, #"{"proxy_max_body":1.5}"#, #"{"proxy_max_body":true}"#])
    func aValueThatIsNotAnIntegerDoesNotDecode(json: String) {
        #expect(throws: (any Error).self) {
            try VaultJSON.decoder().decode(ConnectionSettings.self, from: Data(json.utf8))
        }
    }

    @Test func aPatchSetsKeepsAndClearsIt() throws {
        let decoder = VaultJSON.decoder()
        let set = try decoder.decode(SettingsPatch.self, from: Data(#"{"proxy_max_body":4096}"#.utf8))
        let clear = try decoder.decode(SettingsPatch.self, from: Data(#"{"proxy_max_body":null}"#.utf8))
        let keep = try decoder.decode(SettingsPatch.self, from: Data(#"{"app_id":"X"}"#.utf8))
        #expect(set.proxyMaxBody == .set(4096))
        #expect(clear.proxyMaxBody == .clear)
        #expect(keep.proxyMaxBody == .keep)

        let before = ConnectionSettings(proxyMaxBody: 8192)
        #expect(set.applied(to: before).proxyMaxBody == 4096)
        #expect(clear.applied(to: before).proxyMaxBody == nil)
        #expect(keep.applied(to: before).proxyMaxBody == 8192)

        let roundTrip = try decoder.decode(SettingsPatch.self, from: try VaultJSON.encoder().encode(set))
        #expect(roundTrip == set)
    }
}
