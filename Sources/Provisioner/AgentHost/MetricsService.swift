import Logging
import NIOPosix

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
