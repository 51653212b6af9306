import Logging
import NIOPosix
import Provisioner
import ServiceLifecycle

/// Serves the agent's Prometheus metrics (`[metrics] listen`) until the agent stops.
struct MetricsService: Service, CustomStringConvertible {
    let server: MetricsServer
    let logger: Logger

    var description: String { "metrics" }

    func run() async throws {
        let address = try await server.start()
        logger.notice("metrics on \(address)")
        try? await gracefulShutdown()
        try await server.stop()
    }
}

extension AgentMetrics {
    /// A sweep's figures: tenants by state, each check's duration, each tenant's
    /// certificate days left (tenants gone or without a certificate lose their series).
    func record(_ r: SweepResult) {
        var byState: [String: Int] = [:]
        for (state, n) in r.counts { byState[state.rawValue] = n }
        recordSweep(duration: r.duration, tenantsByState: byState)
        var withCertificate = Set<String>()
        for t in r.tenants {
            for o in t.outcomes where o.duration > .zero { observeCheck(o.check.rawValue, duration: o.duration) }
            if let days = t.certificateDaysLeft {
                setCertificateDaysLeft(slug: t.slug, days: days)
                withCertificate.insert(t.slug)
            }
        }
        for slug in certificateSlugs.subtracting(withCertificate) { setCertificateDaysLeft(slug: slug, days: nil) }
    }
}
