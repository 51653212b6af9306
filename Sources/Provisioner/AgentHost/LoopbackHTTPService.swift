import Logging
import NIOPosix

import ServiceLifecycle

/// Serves one of the agent's loopback HTTP servers (`[metrics] listen`, `[status] listen`)
/// until the agent stops.
struct LoopbackHTTPService: Service, CustomStringConvertible {
    let server: LoopbackHTTPServer
    let logger: Logger

    var description: String { server.name }

    func run() async throws {
        let address = try await server.start()
        logger.notice("\(server.name) on \(address)")
        try? await gracefulShutdown()
        try await server.stop()
    }
}
