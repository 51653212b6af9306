import ArgumentParser
import Foundation
import Logging
import Provisioner
import ServiceLifecycle

/// desa-agent: the long-running service host, a `ServiceGroup` of periodic services.
/// Today one does work: the drift service compares the server with the state database
/// and reports drift to the journal (see `DriftWatch`). The alive service tells systemd
/// the agent lives (`sd_notify` WATCHDOG=1) and stops (STOPPING=1); the drift service
/// says READY=1 after its first round and STATUS= after each. SIGTERM or SIGINT stops the
/// agent at once, abandoning a round in progress (its thread dies with the process, and
/// the kernel releases the state lock it held); the exit status is then 0.
@main
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "desa-agent",
        abstract: "Watch every tenant and report to the systemd journal.",
        discussion: """
        Each round compares nginx vhosts, PHP-FPM pools, users and homes with the state \
        database and writes a journal entry (DESA_OP=drift) for each tenant that drifted or \
        came back in line. It never changes the server: `desactl apply` repairs.
        """
    )

    @Option(help: ArgumentHelp("Config file (default: $DESA_CONFIG or /etc/desa/desa.toml).", valueName: "PATH"))
    var config: String?

    @Option(help: "Seconds between drift rounds.")
    var interval: Int = 300

    @Option(help: ArgumentHelp("Seconds a round waits for the state lock (a desactl apply may hold it) before it fails; the next round tries again.",
                               valueName: "SECONDS"))
    var lockTimeout: Double = 60

    @Flag(help: "Run one round, print its summary and exit: 0 when converged, 3 when something drifted, 1 when the check failed.")
    var once = false

    func validate() throws {
        guard interval >= 1 else { throw ValidationError("--interval must be at least 1 second") }
        guard lockTimeout >= 0, lockTimeout.isFinite else { throw ValidationError("--lock-timeout must be 0 or more seconds") }
    }

    func run() async throws {
        let path = Config.resolvedPath(config)
        var logger = Logger(label: "desa-agent") { _ in StderrLogHandler(program: "desa-agent") }
        // Under systemd stderr already goes to the journal, where every report is
        // written as a structured entry: say there only what has no entry of its own.
        logger.logLevel = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] == nil ? .notice : .critical
        let drift: DriftRounds
        do {
            let engine = try Engine(config: try Config.load(path: path), logger: logger, actor: "desa-agent")
            drift = DriftRounds(watch: DriftWatch(engine: engine, lockTimeout: lockTimeout))
        } catch {
            FileHandle.standardError.write(Data("desa-agent: error: \(Applier.message(error))\n".utf8))
            throw ExitCode(ExitStatus.of(error))
        }
        if once {
            let r = try await drift.round()
            print(r?.summary ?? "check failed")
            throw ExitCode(r.map { $0.drifted.isEmpty && $0.server.isEmpty ? ExitStatus.ok : ExitStatus.drifted } ?? ExitStatus.failed)
        }
        let clock = ContinuousClock()
        let services: [any Service] = [
            Periodic("drift", every: .seconds(interval), clock: clock, drift.tick),
            // Health, renewal and backup-age services join here, one line each.
            Alive(watchdog: ServiceNotify.watchdog, clock: clock, logger: logger),  // last: first told to stop
        ]
        var group = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // Every service stops at once; should one not, cancellation comes well inside systemd's stop timeout.
        group.maximumGracefulShutdownDuration = .seconds(3)
        try await ServiceGroup(configuration: group).run()
    }
}
