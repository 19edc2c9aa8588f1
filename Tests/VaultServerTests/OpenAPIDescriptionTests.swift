import Foundation
import NIOHTTP1
import Testing
import VaultAPI
import VaultCore

@testable import VaultServer

/// docs/openapi-admin.json and docs/openapi-app.json against the code they describe: the shared route table
/// (`Endpoint`), the problem codes, the body rule of each route, and the members of every request and response type
/// (each schema's properties are the keys a fully populated sample of its type encodes to; a request schema closed
/// with `additionalProperties: false` belongs to a type whose decoder refuses an unknown member).
@Suite("OpenAPI description")
struct OpenAPIDescriptionTests {
    /// Tests/VaultServerTests/OpenAPIDescriptionTests.swift → the package root.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func document(_ socket: SocketKind) throws -> [String: Any] {
        let url = Self.root.appendingPathComponent("docs/openapi-\(socket.rawValue).json")
        let data = try Data(contentsOf: url)
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(url.path)")
    }

    /// `(method, template)` of every operation, as `GET /v1/connections/{id}`.
    static func operations(_ document: [String: Any]) throws -> [String: [String: Any]] {
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        var operations: [String: [String: Any]] = [:]
        for (path, item) in paths {
            for (method, operation) in item {
                guard Endpoint.Method(rawValue: method.uppercased()) != nil else { continue }
                operations["\(method.uppercased()) \(path)"] = try #require(operation as? [String: Any])
            }
        }
        return operations
    }

    /// OpenAPI has no parameter that spans segments: the table's `{path...}` is written `{path}` (one parameter
    /// whose value holds the rest of the path).
    static func openAPIName(_ endpoint: Endpoint) -> String {
        "\(endpoint.method.rawValue) \(endpoint.template.description.replacing("...}", with: "}"))"
    }

    static func schemas(_ document: [String: Any]) throws -> [String: [String: Any]] {
        let components = try #require(document["components"] as? [String: Any])
        return try #require(components["schemas"] as? [String: [String: Any]])
    }

    @Test("every route of the table is described, and nothing else, per socket", arguments: SocketKind.allCases)
    func routes(_ socket: SocketKind) throws {
        let document = try Self.document(socket)
        #expect(document["openapi"] as? String == "3.1.0")
        #expect(document["x-connvault-socket"] as? String == socket.rawValue)
        let described = Set(try Self.operations(document).keys)
        let table = Set(Endpoint.all(on: socket).map(Self.openAPIName))
        #expect(described.subtracting(table).isEmpty, "described but not routed: \(described.subtracting(table))")
        #expect(table.subtracting(described).isEmpty, "routed but not described: \(table.subtracting(described))")
    }

    @Test("each operation's body and path parameters follow the route's", arguments: SocketKind.allCases)
    func bodiesAndParameters(_ socket: SocketKind) throws {
        let operations = try Self.operations(try Self.document(socket))
        for endpoint in Endpoint.all(on: socket) {
            let name = Self.openAPIName(endpoint)
            guard let operation = operations[name] else { continue }  // reported by `routes`
            let body = operation["requestBody"] as? [String: Any]
            switch endpoint.body {
            case .none:
                #expect(body == nil, "\(name) takes no body")
            case .optional:
                #expect(body != nil && body?["required"] as? Bool == false, "\(name) takes an optional body")
            case .required:
                #expect(body?["required"] as? Bool == true, "\(name) requires a body")
            }
            if endpoint.body != .none, !endpoint.template.description.contains("/proxy/") {
                let content = body?["content"] as? [String: Any]
                #expect(content.map { Array($0.keys) } == ["application/json"], "\(name): application/json only")
            }
            let parameters = (operation["parameters"] as? [[String: Any]]) ?? []
            let pathParameters = parameters.filter { $0["in"] as? String == "path" }.compactMap {
                $0["name"] as? String
            }
            #expect(pathParameters == endpoint.template.parameterNames, "\(name): path parameters")
            let responses = try #require(operation["responses"] as? [String: Any], "\(name)")
            #expect(responses.keys.contains { $0.hasPrefix("2") } || responses["default"] != nil, "\(name): success")
        }
    }

    @Test("the problem code enum is ProblemCode's set, and every error status is one the server answers")
    func problemCodes() throws {
        let source = try String(
            contentsOf: Self.root.appendingPathComponent("Sources/VaultAPI/ProblemCode.swift"),
            encoding: .utf8
        )
        let declared = Set(
            source.matches(of: /static let \w+ = ProblemCode\(rawValue: "([a-z_]+)"\)/).map { String($0.output.1) }
        )
        let server = Set(VaultError.Code.allCases.map(\.problemCode.rawValue))
        #expect(declared == server, "ProblemCode.swift and VaultError.Code differ")
        let statuses = Set(VaultError.Code.allCases.map { Int(ErrorResponse.status(for: $0).code) })
        for socket in SocketKind.allCases {
            let document = try Self.document(socket)
            let problem = try #require(try Self.schemas(document)["Problem"])
            let properties = try #require(problem["properties"] as? [String: [String: Any]])
            let codes = try #require(properties["code"]?["enum"] as? [String])
            #expect(Set(codes) == declared, "\(socket): the code enum")
            #expect(codes.count == declared.count, "\(socket): a code listed twice")
            for (name, operation) in try Self.operations(document) {
                let responses = try #require(operation["responses"] as? [String: Any])
                for status in responses.keys.compactMap(Int.init) where status >= 400 {
                    #expect(statuses.contains(status), "\(socket) \(name): no problem code answers \(status)")
                }
            }
        }
    }

    @Test("every $ref resolves", arguments: SocketKind.allCases)
    func references(_ socket: SocketKind) throws {
        let document = try Self.document(socket)
        var references: [String] = []
        func walk(_ value: Any) {
            if let object = value as? [String: Any] {
                if let reference = object["$ref"] as? String { references.append(reference) }
                object.values.forEach(walk)
            } else if let array = value as? [Any] {
                array.forEach(walk)
            }
        }
        walk(document)
        #expect(!references.isEmpty)
        for reference in Set(references) {
            let parts = reference.split(separator: "/").map(String.init)
            #expect(parts.first == "#", "\(reference)")
            var node: Any? = document
            for part in parts.dropFirst() { node = (node as? [String: Any])?[part] }
            #expect(node != nil, "\(socket): \(reference) resolves to nothing")
        }
    }

    // MARK: - Members

    /// A value of each described type with every optional member set, by schema name.
    static var samples: [String: any Encodable] {
        let settings = ConnectionSettings(
            apiBaseURL: "https://api.personio.de",
            appID: "APP",
            partnerID: "PARTNER",
            scope: "personio:persons:read",
            companyID: "42",
            permissions: ["employees:read"],
            proxyMaxBody: 4096
        )
        var patch = SettingsPatch()
        patch.apiBaseURL = .set("https://api.personio.de")
        patch.appID = .clear
        patch.partnerID = .set("P")
        patch.scope = .set("personio:persons:read")
        patch.companyID = .clear
        patch.permissions = .set([])
        patch.proxyMaxBody = .set(2048)
        let secrets = SecretsInput(
            Dictionary(
                uniqueKeysWithValues: SecretField.allCases.map { ($0, SecretInput(bytes: Array("CANARY".utf8))) }
            )
        )
        let rule = GrantRule(
            uid: 1000,
            group: "payroll",
            unit: "payroll.service",
            exe: "/usr/bin/true",
            exeSHA256: String(repeating: "a", count: 64),
            scope: "personio:persons:read",
            proxy: ["GET /v2/persons"],
            token: false,
            ratePerMinute: 60
        )
        let grants = Grants(uids: [1000], groups: ["payroll"], units: ["payroll.service"], rules: [rule])
        let time = "2026-01-01T00:00:00Z"
        let view = ConnectionView(
            id: "acme",
            provider: .personioV2,
            state: .active,
            revision: 1,
            settings: settings,
            secrets: ["client_id": SecretFieldView(set: true, fingerprint: "00", updatedAt: time)],
            grants: grants,
            createdAt: time,
            updatedAt: time,
            lastError: "e",
            disabledReason: "r",
            tokensValidUntil: time,
            pendingRevocations: 1
        )
        let problem = Problem(status: 502, code: .upstreamRejected, title: "t", detail: "d")
        let actor = AuditActor(uid: 0, pid: 1, comm: "connvaultctl", unit: "session-1.scope")
        let entry = AuditEntry(
            seq: 1,
            time: time,
            actor: actor,
            action: "connection.create",
            connection: "acme",
            outcome: "ok",
            detail: "d",
            hash: "00"
        )
        let pending = PendingRevocationView(
            connection: "acme",
            revision: 1,
            expiresAt: time,
            attempts: 1,
            lastError: "e",
            nextAttemptAt: time
        )
        var status = StatusView(
            version: "0.1.0",
            pid: 1,
            uptimeSeconds: 1,
            connections: 1,
            byState: ["active": 1],
            needsReset: [],
            masterKeyID: 1,
            masterKeyCreatedAt: time,
            aead: "aes256gcm",
            auditEntries: 1,
            databaseBytes: 1,
            pendingRevocations: [pending],
            tokensValidUntil: ["acme": time]
        )
        status.peerPidfd = true
        status.peerExe = true
        let ruleView = AppRuleView(scope: "s", proxy: ["GET /v2/persons"], token: true, ratePerMinute: 60)
        let appView = AppConnectionView(
            id: "acme",
            provider: .personioV2,
            state: .active,
            apiBaseURL: "https://api.personio.de",
            scope: "s",
            tokenExportable: true,
            rule: ruleView
        )
        return [
            "Health": HealthView(status: "ok"),
            "Problem": problem,
            // Requests.
            "ConnectionSettings": settings,
            "SettingsPatch": patch,
            "SecretsInput": secrets,
            "GrantRule": rule,
            "GrantsInput": grants,
            "CreateConnectionRequest": CreateConnectionRequest(
                id: "acme",
                provider: .personioV2,
                settings: settings,
                secrets: secrets,
                grants: grants
            ),
            "EditConnectionRequest": EditConnectionRequest(settings: patch, secrets: secrets, grants: grants),
            "DisableRequest": DisableRequest(reason: "audit week"),
            // Responses.
            "Grants": grants,
            "SecretFieldView": SecretFieldView(set: true, fingerprint: "00", updatedAt: time),
            "ConnectionView": view,
            "ConnectionList": ConnectionList(connections: [view]),
            "AuditActor": actor,
            "AuditEntry": entry,
            "AuditList": AuditList(entries: [entry]),
            "AuditVerification": AuditVerification(intact: false, entries: 2, head: "00", brokenAt: 2, reason: "r"),
            "KeyRotationResult": KeyRotationResult(keyID: 2, rewrappedDataKeys: 1),
            "PendingRevocationView": pending,
            "StatusView": status,
            "VerifyResult": VerifyResult(
                connection: "acme",
                ok: false,
                expiresIn: 1,
                expiresAt: time,
                scope: "s",
                error: problem,
                state: .needsReset
            ),
            "TokenResponse": TokenResponse(
                connection: "acme",
                tokenType: "Bearer",
                accessToken: "CANARY-TOKEN",
                expiresAt: time,
                expiresIn: 1,
                scope: nil,
                apiBaseURL: "https://api.personio.de",
                headers: ["Authorization": "Bearer CANARY-TOKEN"]
            ),
            "AppRuleView": ruleView,
            "AppConnectionView": appView,
            "AppConnectionList": AppConnectionList(connections: [appView]),
        ]
    }

    /// Request schemas and the types whose strict decoders refuse an unknown member.
    static let strictRequests: [String: any Decodable.Type] = [
        "ConnectionSettings": ConnectionSettings.self,
        "SettingsPatch": SettingsPatch.self,
        "SecretsInput": SecretsInput.self,
        "GrantRule": GrantRule.self,
        "GrantsInput": Grants.self,
        "CreateConnectionRequest": CreateConnectionRequest.self,
        "EditConnectionRequest": EditConnectionRequest.self,
        "DisableRequest": DisableRequest.self,
        "EnableRequest": EmptyRequest.self,
    ]

    @Test("each schema's properties are the keys its type encodes", arguments: SocketKind.allCases)
    func members(_ socket: SocketKind) throws {
        let samples = Self.samples
        for (name, schema) in try Self.schemas(try Self.document(socket)) {
            guard let properties = schema["properties"] as? [String: Any] else { continue }
            if name == "EnableRequest" {
                #expect(properties.isEmpty)
                continue
            }
            let sample = try #require(samples[name], "\(socket): schema \(name) has no sample here")
            let data = try VaultJSON.encoder().encode(sample)
            let encoded = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            #expect(Set(properties.keys) == Set(encoded.keys), "\(socket): \(name)")
            for required in (schema["required"] as? [String]) ?? [] {
                #expect(properties[required] != nil, "\(socket): \(name) requires undescribed \(required)")
            }
        }
    }

    @Test("a closed request schema belongs to a decoder that refuses unknown members", arguments: SocketKind.allCases)
    func closedRequests(_ socket: SocketKind) throws {
        let samples = Self.samples
        let schemas = try Self.schemas(try Self.document(socket))
        for (name, type) in Self.strictRequests {
            guard let schema = schemas[name] else {
                #expect(socket == .app, "\(name) is not described on the admin socket")
                continue
            }
            #expect(schema["additionalProperties"] as? Bool == false, "\(name) must be closed")
            var object: [String: Any] = [:]
            if let sample = samples[name] {
                let data = try VaultJSON.encoder().encode(sample)
                object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            }
            _ = try VaultJSON.decoder().decode(type, from: try JSONSerialization.data(withJSONObject: object))
            object["zz_unknown"] = 1
            let extended = try JSONSerialization.data(withJSONObject: object)
            #expect(throws: UnknownFieldError.self, "\(name)") {
                _ = try VaultJSON.decoder().decode(type, from: extended)
            }
        }
    }
}
