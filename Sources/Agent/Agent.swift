import ArgumentParser
import Foundation
import Logging
import Provisioner

/// desa-agent: the long-running service host (`AgentHost`, a `ServiceGroup`): health
/// (every tenant's checks, recorded and journaled on change; READY=1 after the first
/// sweep, STATUS= after each), the capabilities' jobs (certificate renewals when `[tls]`
/// is on), reconcile (repairs drift, when `health.repair_drift` says so), metrics, and
/// alive (WATCHDOG=1, STOPPING=1). SIGTERM or SIGINT stops the agent at once, abandoning
/// a sweep in progress (its threads die with the process, and the kernel releases the
/// state lock a drift look held); the exit status is then 0.
@main
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "desa-agent",
        abstract: "Check every tenant's health, renew certificates, and report to the systemd journal.",
        discussion: """
        Each sweep checks every tenant (HTTP and HTTPS through nginx, the PHP-FPM pool, the \
        certificate, the database, drift) and the server (nginx and php-fpm masters, disk, \
        the state database), records the result in the state database (desactl health) and \
        writes a journal entry for each change of state (journalctl -x MESSAGE_ID=... or \
        DESA_OP=health). Certificates that are due are renewed every health.renew_interval; \
        drift is repaired only when health.repair_drift is on.
        """,
        version: DesaVersion.string
    )

    @Option(help: ArgumentHelp("Config file (default: $DESA_CONFIG or /etc/desa/desa.toml).", valueName: "PATH"))
    var config: String?

    @Option(help: ArgumentHelp("Seconds between sweeps (default: health.interval).", valueName: "SECONDS"))
    var interval: Int?

    @Option(help: ArgumentHelp("Seconds the drift look waits for the state lock (a desactl apply may hold it); past it, drift is skipped for that sweep.",
                               valueName: "SECONDS"))
    var lockTimeout: Double = 60

    @Flag(help: "Run one sweep, record it, print its summary and exit: 0 when all is ok, 3 when something is degraded, 1 when something is down.")
    var once = false

    func validate() throws {
        if let interval, interval < 1 { throw ValidationError("--interval must be at least 1 second") }
        guard lockTimeout >= 0, lockTimeout.isFinite else { throw ValidationError("--lock-timeout must be 0 or more seconds") }
    }

    func run() async throws {
        // As desactl: the modes desa sets, not the caller's umask (see Desactl.main).
        umask(0o022)
        ProcessMemory.tuneForSweeps()
        let path = Config.resolvedPath(config)
        var logger = Logger(label: "desa-agent") { _ in StderrLogHandler(program: "desa-agent") }
        // Under systemd stderr already goes to the journal, where every report is
        // written as a structured entry: say there only what has no entry of its own.
        logger.logLevel = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] == nil ? .notice : .critical
        let engine: Engine
        do {
            engine = try Engine(config: try Config.load(path: path), logger: logger, actor: "desa-agent", stateCacheKiB: 256)
            #if DEBUG
            // Tests only: DESA_TEST_NOW moves the clock (certificate renewals, days left).
            if let t = try TimeSource.testOverride() { engine.time = t }
            #endif
        } catch {
            FileHandle.standardError.write(Data("desa-agent: error: \(Applier.message(error))\n".utf8))
            throw ExitCode(ExitStatus.of(error))
        }
        // The agent plans every sweep (drift): a file whose template inputs have not changed
        // since it was last rendered is not rendered again.
        engine.renderMemo = RenderMemo()
        let host = AgentHost(engine: engine, interval: interval, lockTimeout: lockTimeout)
        if once {
            let r = try await host.healthRounds().round()
            print(r.summary)
            for t in r.tenants where t.state != .ok {
                for o in t.outcomes where o.state != .ok { print("\(o.state.rawValue) \(t.slug) \(o.check.rawValue): \(o.reason)") }
            }
            for o in r.server where o.state != .ok { print("\(o.state.rawValue) server \(o.check.rawValue): \(o.reason)") }
            let worst = max(r.tenants.map(\.state).max() ?? .ok, r.serverState)
            throw ExitCode(worst == .down ? ExitStatus.failed : worst == .degraded ? ExitStatus.drifted : ExitStatus.ok)
        }
        try await host.run(logger: logger)
    }
}
