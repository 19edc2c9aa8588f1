import VaultAPI

/// The connection lifecycle of DESIGN §5 as a pure state machine, tested as plain values.
///
/// `active ⇄ disabled` is reversible; `needs_reset` is entered when Personio rejects the credentials and left only
/// by `reset`. Repeating an operation that is already in effect is `.unchanged`: it succeeds and changes nothing.
public enum Lifecycle {
    public enum Action: String, Sendable, CaseIterable {
        case disable, enable, reset
        /// Personio answered `invalid_client` / `unauthorized_client` / `invalid_grant`.
        case credentialsRejected = "credentials_rejected"
    }

    public enum Outcome: Sendable, Equatable {
        case changed(to: ConnectionState)
        case unchanged
    }

    /// The outcome of `action` in `state`, or the error that refuses it.
    public static func transition(from state: ConnectionState, _ action: Action) throws(VaultError) -> Outcome {
        switch (state, action) {
        case (.active, .disable), (.needsReset, .disable):
            return .changed(to: .disabled)
        case (.disabled, .disable), (.active, .enable):
            return .unchanged
        case (.disabled, .enable):
            return .changed(to: .active)
        case (.needsReset, .enable):
            throw VaultError(
                .connectionNeedsReset,
                "Personio rejected this connection's credentials; reset it with new ones instead of enabling it"
            )
        case (_, .reset):
            // A reset always writes a new revision, even from `active`: it is how credentials are rotated.
            return .changed(to: .active)
        case (.active, .credentialsRejected):
            return .changed(to: .needsReset)
        case (.needsReset, .credentialsRejected), (.disabled, .credentialsRejected):
            // A disabled connection stays disabled; enabling it later will meet the rejection again.
            return .unchanged
        }
    }
}
