import Foundation
import Logging
import VaultAPI
import VaultServer

/// Every request body type through the decoders the routes use (`Request.decode`: strict members, secret fields
/// scanned out of the raw bytes first), and the settings and grant rules inside them. The first byte picks the type;
/// the rest is the body.
///
/// Invariants: a refusal's problem body never holds a secret value of the input; a decoded value that has a
/// canonical form survives encode → decode unchanged; validation never traps.
final class JSONRequestsTarget: FuzzTarget {
    let logger = Logger(label: "fuzz") { _ in SwiftLogNoOpLogHandler() }

    enum Kind: UInt8, CaseIterable {
        case create, edit, disable, enable, reset, grants, grantRule, settings, settingsPatch, secrets
    }

    func run(_ input: [UInt8]) {
        guard let first = input.first else { return }
        let kind = Kind.allCases[Int(first) % Kind.allCases.count]
        let body = Array(input.dropFirst())
        do {
            try self.decode(kind, body)
        } catch {
            self.checkRefusal(error, body: body)
        }
    }

    private func decode(_ kind: Kind, _ body: [UInt8]) throws {
        switch kind {
        case .create:
            let create = try InProcessServer.decodeBody(body, as: CreateConnectionRequest.self, containsSecrets: true)
            _ = create.settings.validationErrors(for: create.provider)
            Self.checkGrants(create.grants)
        case .edit:
            let edit = try InProcessServer.decodeBody(body, as: EditConnectionRequest.self, containsSecrets: true)
            Self.roundTrip(edit.settings)
            for provider in Provider.allCases {
                _ = edit.settings.applied(to: ConnectionSettings()).validationErrors(for: provider)
            }
            if let grants = edit.grants { Self.checkGrants(grants) }
        case .disable:
            let disable = try InProcessServer.decodeBody(body, as: DisableRequest.self, containsSecrets: false)
            _ = disable.reason?.utf8.count
        case .enable:
            try InProcessServer.decodeEmptyBody(body)
        case .reset:
            let reset = try InProcessServer.decodeBody(body, as: ResetRequest.self, containsSecrets: true)
            _ = reset.isEmpty
        case .grants:
            Self.checkGrants(try InProcessServer.decodeBody(body, as: GrantsRequest.self, containsSecrets: false))
        case .grantRule:
            let rule = try InProcessServer.decodeBody(body, as: GrantRule.self, containsSecrets: false)
            Self.checkGrants(Grants(rules: [rule]))
        case .settings:
            let settings = try InProcessServer.decodeBody(body, as: ConnectionSettings.self, containsSecrets: false)
            Self.roundTrip(settings)
            for provider in Provider.allCases { _ = settings.validationErrors(for: provider) }
        case .settingsPatch:
            Self.roundTrip(try InProcessServer.decodeBody(body, as: SettingsPatch.self, containsSecrets: false))
        case .secrets:
            _ = try InProcessServer.decodeBody(body, as: SecretsInput.self, containsSecrets: true)
        }
    }

    /// The problem answered for a body that did not decode names no secret value of that body.
    private func checkRefusal(_ error: any Error, body: [UInt8]) {
        let problem = InProcessServer.problemBody(for: error, logger: self.logger)
        FuzzTargets.check(!problem.isEmpty, "a refusal without a problem body")
        for secret in InProcessServer.secretValues(in: body) ?? [] where secret.count >= 4 {
            FuzzTargets.check(!Self.contains(problem, secret), "a problem body quotes a secret of the request")
        }
    }

    /// Validation never traps; the normalized form is stable and survives the wire.
    static func checkGrants(_ grants: Grants) {
        _ = grants.validationErrors
        for rule in grants.rules {
            _ = rule.validationErrors
            _ = rule.spelling
            FuzzTargets.check(rule.normalized.normalized == rule.normalized, "GrantRule.normalized not idempotent")
        }
        let normalized = grants.normalized
        FuzzTargets.check(normalized.normalized == normalized, "Grants.normalized not idempotent")
        Self.roundTrip(normalized)
    }

    /// encode → decode (strictly, as a request body) gives the value back.
    static func roundTrip<T: Codable & Equatable & Sendable>(_ value: T) {
        let encoded: Data
        do {
            encoded = try VaultJSON.encoder().encode(value)
        } catch {
            FuzzTargets.fail("cannot encode a decoded \(T.self): \(error)")
        }
        do {
            let again = try InProcessServer.decodeBody(Array(encoded), as: T.self, containsSecrets: false)
            FuzzTargets.check(again == value, "\(T.self) changed through encode → decode")
        } catch {
            FuzzTargets.fail("a re-encoded \(T.self) does not decode: \(error)")
        }
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count else { return false }
        return (0...(haystack.count - needle.count)).contains {
            haystack[$0..<($0 + needle.count)].elementsEqual(needle)
        }
    }
}
