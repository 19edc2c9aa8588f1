import Testing
import VaultAPI
import VaultCore

@Suite struct LifecycleTests {
    /// What every (state, action) pair must do: the state it moves to, nil for "unchanged", or the refusal.
    enum Expected: Sendable, Equatable {
        case to(ConnectionState)
        case unchanged
        case refused(VaultError.Code)
    }

    static let table: [(ConnectionState, Lifecycle.Action, Expected)] = [
        (.active, .disable, .to(.disabled)),
        (.active, .enable, .unchanged),
        (.active, .reset, .to(.active)),
        (.active, .credentialsRejected, .to(.needsReset)),
        (.disabled, .disable, .unchanged),
        (.disabled, .enable, .to(.active)),
        (.disabled, .reset, .to(.active)),
        (.disabled, .credentialsRejected, .unchanged),
        (.needsReset, .disable, .to(.disabled)),
        (.needsReset, .enable, .refused(.connectionNeedsReset)),
        (.needsReset, .reset, .to(.active)),
        (.needsReset, .credentialsRejected, .unchanged),
    ]

    @Test(arguments: Self.table)
    func transition(state: ConnectionState, action: Lifecycle.Action, expected: Expected) {
        let outcome: Expected
        do {
            switch try Lifecycle.transition(from: state, action) {
            case .changed(let to): outcome = .to(to)
            case .unchanged: outcome = .unchanged
            }
        } catch {
            outcome = .refused(error.code)
        }
        #expect(outcome == expected)
    }

    @Test func theTableCoversEveryPair() {
        let covered = Set(Self.table.map { "\($0.0.rawValue)/\($0.1.rawValue)" })
        #expect(covered.count == ConnectionState.allCases.count * Lifecycle.Action.allCases.count)
        #expect(covered.count == Self.table.count)
    }

    @Test func theRefusalExplainsWhatToDo() {
        let error = #expect(throws: VaultError.self) { try Lifecycle.transition(from: .needsReset, .enable) }
        #expect(error?.code == .connectionNeedsReset)
        #expect(error?.message.contains("reset") == true)
    }

    @Test func actionNames() {
        #expect(Lifecycle.Action.allCases.map(\.rawValue) == ["disable", "enable", "reset", "credentials_rejected"])
    }
}
