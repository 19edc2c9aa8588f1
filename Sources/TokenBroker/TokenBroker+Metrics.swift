import PersonioClient
import VaultMetrics

extension TokenBroker {
    /// One token exchange with Personio, counted by its outcome as `exchange`.
    func counted(
        _ exchange: BrokerMetrics.Exchange,
        _ request: PersonioCredentials
    ) async throws(PersonioAuthError) -> IssuedToken {
        do {
            let issued = try await self.auth.exchange(request)
            self.metrics.exchanged(exchange, .ok)
            return issued
        } catch {
            self.metrics.exchanged(exchange, BrokerMetrics.Outcome(error))
            throw error
        }
    }
}

extension BrokerMetrics.Outcome {
    /// The outcome a failed exchange is counted as.
    init(_ error: PersonioAuthError) {
        switch error.code {
        case .credentialsRejected, .invalidRequest: self = .rejected
        case .unavailable: self = .unavailable
        default: self = .error
        }
    }
}
