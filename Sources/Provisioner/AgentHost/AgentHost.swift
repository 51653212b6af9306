import Foundation
import Logging
import NIOPosix
import ServiceLifecycle
import UnixSignals

/// What desa-agent runs, as a `ServiceGroup`: the health sweeps (READY=1 after the first,
/// STATUS= after each), every job the capabilities in use bring (`JobProviding`:
/// certificate renewals, ...) and the agent's own (reconcile, when `health.repair_drift`),
/// the metrics endpoint when `[metrics] listen` says where, the status page when `[status]
/// listen` does, and alive (WATCHDOG=1,
/// STOPPING=1), last so that it is the first told to stop. The executable only parses its
/// flags and runs this; tests run it in-process with capabilities of their own.
public struct AgentHost: Sendable {
    public var engine: Engine
    /// Seconds between sweeps (default `health.interval`).
    public var interval: Int
    /// How long a drift look waits for the state lock.
    public var lockTimeout: TimeInterval
    /// How often a waiting job looks at the clock.
    public var jobPoll: Duration = .seconds(15)
    public let metrics: AgentMetrics?

    public init(engine: Engine, interval: Int? = nil, lockTimeout: TimeInterval = 60) {
        self.engine = engine
        self.interval = interval ?? engine.config.health.interval
        self.lockTimeout = lockTimeout
        metrics = engine.config.metrics.listen.isEmpty ? nil : AgentMetrics(definitions: Capabilities.metrics(engine.capabilities))
    }

    public func healthRounds() -> HealthRounds {
        HealthRounds(sweep: HealthSweep(engine: engine, lockTimeout: lockTimeout)) { [metrics] in metrics?.record($0) }
    }

    public func services(logger: Logger) throws -> [any Service] {
        let clock = ContinuousClock()
        let health = healthRounds()
        var services: [any Service] = [Periodic("health", every: .seconds(interval), clock: clock, health.tick)]
        for job in engine.jobs {
            services.append(JobService(job: job, engine: engine, metrics: metrics, poll: jobPoll))
        }
        if let metrics {
            let server = try MetricsServer(listen: engine.config.metrics.listen, metrics: metrics, group: MultiThreadedEventLoopGroup.singleton)
            services.append(LoopbackHTTPService(server: server, logger: logger))
        }
        if !engine.config.status.listen.isEmpty {
            if let file = engine.config.status.authFile, case .failure(let e) = StatusAuth.read(file) { throw e }
            services.append(LoopbackHTTPService(server: try StatusServer.make(engine, group: MultiThreadedEventLoopGroup.singleton), logger: logger))
        }
        services.append(Alive(watchdog: ServiceNotify.watchdog, clock: clock, logger: logger))  // last: first told to stop
        return services
    }

    /// Runs until one of `signals` (or the task is cancelled); a test passes none.
    public func run(logger: Logger, signals: [UnixSignal] = [.sigterm, .sigint]) async throws {
        var group = ServiceGroupConfiguration(services: try services(logger: logger), gracefulShutdownSignals: signals,
                                              logger: logger)
        // Every service stops at once; should one not, cancellation comes well inside systemd's stop timeout.
        group.maximumGracefulShutdownDuration = .seconds(3)
        try await ServiceGroup(configuration: group).run()
    }
}
