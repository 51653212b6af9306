import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Tests, reloads, starts and stops nginx and php-fpm. In a sandbox desactl runs them
/// itself (pid files and signals); in production it asks systemd.
public struct ServiceControl: Sendable {
    public var config: Config
    public var runner: ProcessRunning

    public init(config: Config, runner: ProcessRunning) { self.config = config; self.runner = runner }

    var nginxBase: [String] {
        var a = [config.nginxBinary]
        if let p = config.nginxPrefix { a += ["-p", p] }
        return a + ["-c", config.nginxMainConf]
    }

    public func test(_ s: ServiceRef) throws -> ProcessResult {
        switch s {
        case .nginx: return try runner.run(nginxBase + ["-t", "-q"])
        case .php(let v):
            let p = try config.phpVersion(v)
            return try runner.run([p.binary, "-t", "-y", p.mainConf])
        }
    }

    func pidFile(_ s: ServiceRef) throws -> String {
        switch s {
        case .nginx: return config.nginxPidFile
        case .php(let v): return try config.phpVersion(v).pidFile
        }
    }

    func binary(_ s: ServiceRef) throws -> String {
        switch s {
        case .nginx: return config.nginxBinary
        case .php(let v): return try config.phpVersion(v).binary
        }
    }

    /// Every service desa reloads: nginx and each configured php-fpm.
    public var all: [ServiceRef] { [.nginx] + config.php.keys.sorted().map { .php($0) } }

    /// The pid in the service's pid file, if that process is alive and is the service's
    /// binary (a pid file left by a killed master can name a reused pid).
    public func runningPID(_ s: ServiceRef) -> pid_t? {
        guard let file = try? pidFile(s), let bin = try? binary(s), let text = AtomicFiles.read(file),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0 else { return nil }
        return Processes.isAlive(pid: pid, executable: bin) ? pid : nil
    }

    /// Waits while a php-fpm master re-reads its configuration after a reload (it
    /// re-executes itself and shows its raw command line until it has read every pool),
    /// so that nobody removes a pool file under it: that kills the master.
    public func waitUntilSettled(_ s: ServiceRef, timeout: TimeInterval = 15) {
        guard config.mode == .sandbox, case .php = s else { return }
        let deadline = Date().addingTimeInterval(timeout)
        var deadSince: Date?
        while Date() < deadline {
            if let pid = runningPID(s) {
                if (AtomicFiles.read("/proc/\(pid)/cmdline") ?? "").hasPrefix("php-fpm: master process") { return }
                deadSince = nil
            } else {
                // Between the re-executed master's fork and its new pid file there is no
                // live pid for a moment; longer than that, the master is simply dead.
                deadSince = deadSince ?? Date()
                if Date().timeIntervalSince(deadSince!) > 1 { return }
            }
            usleep(10_000)
        }
    }

    /// A service found not running, and what was done about it.
    public struct Finding: Sendable {
        public var service: ServiceRef
        public var message: String
        /// Started again (sandbox); false when it is still down (production reports only).
        public var repaired: Bool
    }

    /// Checks that every service's master runs and that nginx answers on the probe
    /// address. In a sandbox a dead master is started again, after ending the orphaned
    /// nginx workers that still hold its port; in production systemd owns the services,
    /// so a dead one is only reported.
    public func ensureRunning() -> [Finding] {
        var out: [Finding] = []
        for s in all {
            if config.mode == .production {
                let unit = s == .nginx ? config.nginxService : ((try? config.phpVersion(s.phpVersion!).service) ?? "")
                guard !unit.isEmpty, let r = try? runner.run(["/usr/bin/systemctl", "is-active", unit]), !r.ok else { continue }
                out.append(Finding(service: s, message: "\(s) is not running (systemctl is-active \(unit): \(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))); start it with systemctl start \(unit)", repaired: false))
                continue
            }
            waitUntilSettled(s)
            guard runningPID(s) == nil else { continue }
            do {
                let r = try test(s)
                if !r.ok { throw DesaError(.checkFailed, "its configuration fails its check: \(r.message)") }
                try start(s)
                out.append(Finding(service: s, message: "\(s) was not running; started it again", repaired: true))
            } catch {
                out.append(Finding(service: s, message: "\(s) is not running and could not be started: \((error as? DesaError)?.message ?? "\(error)")", repaired: false))
            }
        }
        if out.allSatisfy({ $0.service != .nginx || $0.repaired }), let address = ProbeAddress(config.probeAddress),
           (try? HTTPProbe(address: address, timeout: 3).get(host: "desa-liveness.invalid")) == nil {
            out.append(Finding(service: .nginx, message: "nothing answers HTTP on \(config.probeAddress)", repaired: false))
        }
        return out
    }

    /// Reloads a running service, or starts it if it is not running.
    public func reloadOrStart(_ s: ServiceRef) throws {
        if config.mode == .production {
            let unit = s == .nginx ? config.nginxService : try config.phpVersion(s.phpVersion!).service
            let r = try runner.run(["/usr/bin/systemctl", "reload-or-restart", unit])
            if !r.ok { throw DesaError(.checkFailed, "systemctl reload-or-restart \(unit) failed: \(r.message)") }
            return
        }
        if let pid = runningPID(s) {
            if kill(pid, s == .nginx ? SIGHUP : SIGUSR2) != 0 { throw DesaError.system("cannot signal \(s) (pid \(pid)): \(errnoText())") }
            return
        }
        try start(s)
    }

    public func start(_ s: ServiceRef) throws {
        if runningPID(s) != nil { return }
        // Workers of a master that was killed keep its port: a new master could not bind.
        if s == .nginx, let port = ProbeAddress(config.probeAddress)?.port {
            let stale = Processes.listeners(port: port, executable: config.nginxBinary)
            if !stale.isEmpty { Processes.terminate(stale) }
        }
        if case .php(let v) = s, let p = try? config.phpVersion(v) {
            let stale = Processes.unixListeners(in: p.socketDir, executable: p.binary)
            if !stale.isEmpty { Processes.terminate(stale, grace: 1) }
        }
        raiseFileLimit()
        let argv: [String]
        switch s {
        case .nginx: argv = nginxBase
        case .php(let v):
            let p = try config.phpVersion(v)
            argv = [p.binary, "-y", p.mainConf]
        }
        let status = try runner.runDetached(argv, logFile: config.logDir + "/\(s)-start.log")
        let deadline = Date().addingTimeInterval(10)
        while runningPID(s) == nil {
            if status != 0 || Date() > deadline {
                let log = AtomicFiles.read(config.logDir + "/\(s)-start.log")?.split(separator: "\n").suffix(5).joined(separator: "\n") ?? ""
                throw DesaError(.checkFailed, "\(s) did not start (exit \(status)): \(log)")
            }
            usleep(20_000)
        }
    }

    /// Stops a sandbox service gracefully (SIGQUIT), then waits for it to exit.
    public func stop(_ s: ServiceRef) {
        guard let pid = runningPID(s) else { return }
        kill(pid, SIGQUIT)
        let deadline = Date().addingTimeInterval(10)
        while kill(pid, 0) == 0 && Date() < deadline { usleep(20_000) }
        if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        if let f = try? pidFile(s) { unlink(f) }
    }

    /// The children of nginx's master: its workers.
    public func nginxWorkers() -> Set<pid_t> {
        guard let master = runningPID(.nginx) else { return [] }
        return Self.children(of: master)
    }

    static func children(of pid: pid_t) -> Set<pid_t> {
        var out = Set<pid_t>()
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return out }
        for e in entries {
            guard let p = pid_t(e), let stat = AtomicFiles.read("/proc/\(p)/stat"),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 2, pid_t(fields[1]) == pid { out.insert(p) }
        }
        return out
    }

    /// nginx applies a reload asynchronously. It is done when a worker that was not there
    /// before runs (new workers start only once the new config is loaded) and every old
    /// worker has exited or stopped accepting (its title says "shutting down").
    public func waitForNewNginxWorkers(old: Set<pid_t>, timeout: TimeInterval = 15) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let now = nginxWorkers()
            let fresh = !now.subtracting(old).isEmpty
            let oldAccepting = now.intersection(old).contains { pid in
                let title = AtomicFiles.read("/proc/\(pid)/cmdline") ?? ""
                return !title.contains("shutting down")
            }
            if fresh && !oldAccepting { return true }
            usleep(5_000)
        }
        return false
    }

    /// Lets a sandbox's nginx and php-fpm open one log file per tenant.
    func raiseFileLimit() {
        var rl = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0, rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = min(rl.rlim_max, 1 << 20)
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
        }
    }
}

extension ServiceRef {
    var phpVersion: String? { if case .php(let v) = self { return v }; return nil }
}
