import ArgumentParser
import Foundation
import Logging
import Provisioner
#if canImport(Glibc)
import Glibc
#endif

/// desa-agent: the long-running service host. Each round it compares the server with the
/// state database and reports drift to the journal (see `DriftWatch`); it tells systemd
/// it is ready and alive (`sd_notify` READY, STATUS, WATCHDOG) and stops cleanly on
/// SIGTERM or SIGINT between rounds.
@main
struct AgentCommand: ParsableCommand {
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

    @Option(help: "Seconds between rounds.")
    var interval: Int = 300

    @Flag(help: "Run one round, print its summary and exit: 0 when converged, 3 when something drifted.")
    var once = false

    func validate() throws {
        guard interval >= 1 else { throw ValidationError("--interval must be at least 1 second") }
    }

    func run() throws {
        let path = config ?? ProcessInfo.processInfo.environment["DESA_CONFIG"].flatMap { $0.isEmpty ? nil : $0 } ?? "/etc/desa/desa.toml"
        var logger = Logger(label: "desa-agent") { _ in StderrLogHandler(program: "desa-agent") }
        // Under systemd stderr already goes to the journal, where every report is
        // written as a structured entry: say there only what has no entry of its own.
        logger.logLevel = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] == nil ? .notice : .critical
        let watch: DriftWatch
        do {
            watch = DriftWatch(engine: try Engine(config: try Config.load(path: path), logger: logger, actor: "desa-agent"))
        } catch let e as DesaError {
            FileHandle.standardError.write(Data("desa-agent: error: \(e.message)\n".utf8))
            throw ExitCode(e.kind == .invalidInput ? 2 : 1)
        }
        if once {
            let r = oneRound(watch)
            print(r?.summary ?? "check failed")
            throw ExitCode(r == nil ? 1 : (r!.drifted.isEmpty && r!.server.isEmpty ? 0 : 3))
        }
        // SIGTERM and SIGINT are taken synchronously, as the wait between rounds.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        let watchdog = ProcessInfo.processInfo.environment["WATCHDOG_USEC"].flatMap { Int($0) }.map { $0 / 1_000_000 }
        let wait = max(1, min(interval, watchdog.map { max(1, $0 / 2) } ?? interval))
        var ready = false
        var next = Date()
        while true {
            if Date() >= next {
                let r = oneRound(watch)
                ServiceNotify.send((ready ? "" : "READY=1\n") + "STATUS=" + (r?.summary ?? "check failed, see the journal"))
                ready = true
                next = Date().addingTimeInterval(TimeInterval(interval))
            }
            ServiceNotify.send("WATCHDOG=1")
            var timeout = timespec(tv_sec: min(wait, max(1, Int(next.timeIntervalSinceNow.rounded(.up)))), tv_nsec: 0)
            let sig = sigtimedwait(&signals, nil, &timeout)
            if sig == SIGTERM || sig == SIGINT {
                ServiceNotify.send("STOPPING=1")
                logger.notice("stopping on signal \(sig)")
                return
            }
        }
    }

    /// A round whose failure (a database that cannot be read, a lock that cannot be
    /// taken) is reported and survived: the agent keeps running and tries again.
    func oneRound(_ watch: DriftWatch) -> DriftWatch.Round? {
        do {
            return try watch.round()
        } catch {
            let msg = "check failed: " + ((error as? DesaError)?.message ?? "\(error)")
            watch.engine.logger.error("\(msg)")
            watch.engine.journal.send(["MESSAGE": msg, "DESA_OP": "check", "PRIORITY": "\(JournalPriority.err.rawValue)"])
            return nil
        }
    }
}
