import NIOCore
import NIOHTTP1
import TestSupport
import Testing
import VaultAPI

@testable import VaultServer

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `GET /v1/connections` is written by ``JSONWriter``, not `JSONEncoder`: the bytes must be the encoder's, for every
/// kind of view.
@Suite("The connection list's JSON writer against JSONEncoder")
struct JSONWriterTests {
    static func encoded(_ value: some Encodable) throws -> [UInt8] {
        Array(try VaultJSON.encoder().encode(value))
    }

    static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    /// Where two documents part, with some bytes of each around it; nil when they are the same.
    static func difference(_ written: [UInt8], _ expected: [UInt8]) -> String? {
        guard written != expected else { return nil }
        let offset = zip(written, expected).prefix { $0 == $1 }.count
        let from = max(0, offset - 60)
        return "at byte \(offset): written …\(Self.text(Array(written[from..<min(written.count, offset + 60)])))… "
            + "JSONEncoder …\(Self.text(Array(expected[from..<min(expected.count, offset + 60)])))…"
    }

    @Test("every string of one to three awkward pieces is escaped as JSONEncoder escapes it")
    func strings() throws {
        let pieces = RandomConnectionViews.pieces
        var checked = 0
        for first in pieces {
            for second in pieces {
                let text = first + second
                var writer = JSONWriter()
                writer.string(text)
                let expected: [String] = [text]
                #expect(Self.text(writer.bytes) == Self.text(Array(try Self.encoded(expected).dropFirst().dropLast())))
                checked += 1
            }
        }
        // Every byte below 0x80 alone, in one string.
        let ascii = String(decoding: (0..<0x80).map { UInt8($0) }, as: UTF8.self)
        var writer = JSONWriter()
        writer.string(ascii)
        let expected: [String] = [ascii]
        #expect(writer.bytes == Array(try Self.encoded(expected).dropFirst().dropLast()))
        #expect(checked == pieces.count * pieces.count)
    }

    @Test("integers at their limits, and booleans")
    func scalars() throws {
        var writer = JSONWriter()
        writer.array([Int.min, -1, 0, 7, 10, Int.max]) { $0.integer($1) }
        #expect(writer.bytes == (try Self.encoded([Int.min, -1, 0, 7, 10, Int.max])))
        writer = JSONWriter()
        writer.array([UInt32.min, 9, UInt32.max]) { $0.integer($1) }
        #expect(writer.bytes == (try Self.encoded([UInt32.min, 9, UInt32.max])))
        writer = JSONWriter()
        writer.array([true, false]) { $0.bool($1) }
        #expect(writer.bytes == (try Self.encoded([true, false])))
    }

    @Test("2,000 generated views, one at a time and as lists: the same bytes, and they decode to the same views")
    func generatedViews() throws {
        var views = RandomConnectionViews(seed: 0x5EED_0013)
        for _ in 0..<2000 {
            let view = views.view()
            let written = view.jsonBytes
            let expected = try Self.encoded(view)
            try #require(Self.difference(written, expected) == nil)
            #expect(try VaultJSON.decoder().decode(ConnectionView.self, from: Data(written)) == view)
        }
        for _ in 0..<100 {
            let list = views.list()
            let written = list.jsonBytes
            try #require(written == (try Self.encoded(list)))
            #expect(try VaultJSON.decoder().decode(ConnectionList.self, from: Data(written)) == list)
        }
    }

    @Test("every provider and state, every optional member of settings and rules set alone and none set")
    func everyKind() throws {
        let full = ConnectionSettings(
            apiBaseURL: "https://api.personio.de/v2",
            appID: "app",
            partnerID: "partner",
            scope: "personio:persons:read",
            companyID: "42",
            permissions: ["employees:read", "documents:write"],
            proxyMaxBody: 1024
        )
        let settingsKeys: [WritableKeyPath<ConnectionSettings, String?>] = [
            \.apiBaseURL, \.appID, \.partnerID, \.scope, \.companyID,
        ]
        var settings = [ConnectionSettings(), full]
        for key in settingsKeys {
            var one = ConnectionSettings()
            one[keyPath: key] = full[keyPath: key]
            settings.append(one)
        }
        settings.append(ConnectionSettings(permissions: []))
        settings.append(ConnectionSettings(proxyMaxBody: 65536))
        let fullRule = GrantRule(
            uid: 1000,
            group: "payroll",
            unit: "payroll.service",
            exe: "/usr/bin/payroll",
            exeSHA256: "ab12",
            scope: "personio:persons:read",
            proxy: ["GET /v2/persons/*"],
            token: false,
            ratePerMinute: 60
        )
        var rules = [GrantRule(), fullRule, GrantRule(proxy: []), GrantRule(token: true)]
        let ruleKeys: [WritableKeyPath<GrantRule, String?>] = [\.group, \.unit, \.exe, \.exeSHA256, \.scope]
        for key in ruleKeys {
            var one = GrantRule()
            one[keyPath: key] = fullRule[keyPath: key]
            rules.append(one)
        }
        rules.append(GrantRule(uid: 0))
        rules.append(GrantRule(ratePerMinute: 1))
        var list: [ConnectionView] = []
        for provider in Provider.allCases {
            for state in ConnectionState.allCases {
                for (index, settings) in settings.enumerated() {
                    let secrets = Dictionary(
                        uniqueKeysWithValues: provider.allowedSecrets.prefix(index % 4).map {
                            (
                                $0.rawValue,
                                SecretFieldView(
                                    set: index % 2 == 0,
                                    fingerprint: "0011223344556677",
                                    updatedAt: "2026-12-01T19:00:00Z"
                                )
                            )
                        }
                    )
                    let optional: String? = index % 2 == 0 ? nil : "text \"quoted\" \\ /\n\u{1}é"
                    list.append(
                        ConnectionView(
                            id: "acme-\(index)",
                            provider: provider,
                            state: state,
                            revision: index,
                            settings: settings,
                            secrets: secrets,
                            grants: index == 0
                                ? Grants()
                                : Grants(uids: [0, 4242], groups: ["hr"], units: ["a.service"], rules: rules),
                            createdAt: "2026-12-01T19:00:00Z",
                            updatedAt: "2026-12-01T19:00:01Z",
                            lastError: optional,
                            disabledReason: optional,
                            tokensValidUntil: optional,
                            pendingRevocations: index
                        )
                    )
                }
            }
        }
        let connections = ConnectionList(connections: list)
        #expect(Self.text(connections.jsonBytes) == Self.text(try Self.encoded(connections)))
        #expect(ConnectionList(connections: []).jsonBytes == (try Self.encoded(ConnectionList(connections: []))))
    }

    @Test("the list route's body, written in chunks into the response buffer, is Response.json's")
    func routeBody() throws {
        var views = RandomConnectionViews(seed: 42)
        for count in [0, 1, 255, 256, 257, 600] {
            let list = (0..<count).map { _ in views.view() }
            let response = AdminRoutes.listResponse(list)
            let expected = try Response.json(ConnectionList(connections: list))
            #expect(response.status == .ok)
            #expect(response.headers["Content-Type"] == expected.headers["Content-Type"])
            #expect(response.body == expected.body)
        }
    }
}
