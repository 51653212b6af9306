import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Checks, reloads, starts and stops the services desa writes configuration for, as
/// `ServiceSpec` values. In a sandbox desactl runs the masters itself (pid files and
/// signals); in production it asks systemd.
public struct ServiceControl: Sendable {
    public var mode: Config.Mode
    public var runner: ProcessRunning
    /// Where a sandbox's masters write what they say while starting.
    public var logDir: String
    /// Where nginx must answer HTTP.
    public var probeAddress: String
    public var time: TimeSource

    public init(mode: Config.Mode, runner: ProcessRunning, logDir: String, probeAddress: String, time: TimeSource = .system) {
        self.mode = mode; self.runner = runner; self.logDir = logDir; self.probeAddress = probeAddress; self.time = time
    }

    public init(config: Config, runner: ProcessRunning, time: TimeSource = .system) {
        self.init(mode: config.mode, runner: runner, logDir: config.logDir, probeAddress: config.nginx.probe, time: time)
    }

    /// Runs the service's checker on its configuration (no checker: it passes).
    public func test(_ s: ServiceSpec) throws -> ProcessResult {
        guard !s.check.isEmpty else { return ProcessResult(status: 0, stdout: "", stderr: "") }
        return try runner.run(s.check)
    }

    /// The service's running master. In a sandbox: the master desa started and recorded
    /// (`ownedMaster`). In production: the pid in the service's pid file, if that process is
    /// alive and is the service's binary (a pid file left by a killed master can name a
    /// reused pid); there it is only looked at, never signalled.
    public func runningPID(_ s: ServiceSpec) -> pid_t? {
        if mode == .sandbox { return ownedMaster(s)?.pid }
        guard let pid = Self.pidFileValue(s.pidFile) else { return nil }
        return Processes.isAlive(pid: pid, executable: s.binary) ? pid : nil
    }

    static func pidFileValue(_ path: String) -> pid_t? {
        guard !path.isEmpty, let text = AtomicFiles.read(path),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0 else { return nil }
        return pid
    }

    /// This sandbox's master of `s`, if it runs: the process its record names, with the
    /// same start time and executable, its command line still naming this sandbox's config.
    /// A sandbox started by a desactl that kept no record has none: then the master its
    /// pid file names counts if its command line names this sandbox's config (only a
    /// master started with that file does), so that `stop` and `destroy` still end it.
    public func ownedMaster(_ s: ServiceSpec) -> StartedProcess? {
        guard mode == .sandbox, !s.pidFile.isEmpty else { return nil }
        if let r = StartedProcess.read(s.recordFile) { return r.isRunning ? r : nil }
        guard let argument = s.argument, let pid = Self.pidFileValue(s.pidFile) else { return nil }
        return StartedProcess.capture(pid: pid, executable: s.binary, argument: argument)
    }

    /// The processes of `s` that are this sandbox's: its master and the master's workers,
    /// or, with the master gone, the workers it left behind.
    public func ownedProcesses(_ s: ServiceSpec) -> Set<pid_t> {
        if let m = ownedMaster(s) { return Set([m.pid] + m.sessionMembers()) }
        return Set(leftovers(s))
    }

    /// Workers of this sandbox's master of `s` that outlived it (see `StartedProcess.leftovers`):
    /// tied to the sandbox by its log directory and, for php-fpm, its socket directory.
    func leftovers(_ s: ServiceSpec) -> [pid_t] {
        guard mode == .sandbox, let r = StartedProcess.read(s.recordFile) else { return [] }
        return r.leftovers(holdingFilesUnder: [logDir] + (s.socketDir.map { [$0] } ?? []))
    }

    /// Why `s` cannot bind its addresses, if another process holds one of them.
    func portConflict(_ s: ServiceSpec) -> String? {
        let ours = ownedProcesses(s)
        for listen in s.listens {
            guard let a = ProbeAddress(listen) else { continue }
            let use = Processes.use(port: a.port, host: a.host)
            let others = use.holders.filter { !ours.contains($0) }
            if !others.isEmpty { return "port \(a.port) on \(a.host) is in use by \(Processes.describe(others)), not this sandbox's" }
            if use.inUse && use.holders.isEmpty { return "port \(a.port) on \(a.host) is in use (by no process desa can see)" }
        }
        return nil
    }

    /// Waits while a php-fpm master re-reads its configuration after a reload (it
    /// re-executes itself and shows its raw command line until it has read every pool),
    /// so that nobody removes a pool file under it: that kills the master.
    public func waitUntilSettled(_ s: ServiceSpec, timeout: TimeInterval = 15) {
        guard mode == .sandbox, s.kind == .phpFPM else { return }
        let deadline = time.deadline(timeout)
        var deadSince: Date?
        while time.now() < deadline {
            if let pid = runningPID(s) {
                if (AtomicFiles.read("/proc/\(pid)/cmdline") ?? "").hasPrefix("php-fpm: master process") { return }
                deadSince = nil
            } else {
                // Between the re-executed master's fork and its new pid file there is no
                // live pid for a moment; longer than that, the master is simply dead.
                deadSince = deadSince ?? time.now()
                if time.now().timeIntervalSince(deadSince!) > 1 { return }
            }
            time.sleep(0.01)
        }
    }

    /// A service found not running, and what was done about it.
    public struct Finding: Sendable {
        public var service: String
        public var message: String
        /// Started again (sandbox); false when it is still down (production reports only).
        public var repaired: Bool
    }

    /// Checks that every service's master runs and that nginx answers on the probe
    /// address. In a sandbox a dead master is started again, after ending the workers it
    /// left holding its port (only the sandbox's own; a port another process holds is
    /// reported); in production systemd owns the services, so a dead one is only reported.
    public func ensureRunning(_ specs: [ServiceSpec]) -> [Finding] {
        var out: [Finding] = []
        for s in specs where s.kind != .systemd {
            if mode == .production {
                // A tenant's own master is its own: its pool's check finds it down.
                guard !s.unit.isEmpty, s.instances == nil, let r = try? runner.run(["/usr/bin/systemctl", "is-active", s.unit]), !r.ok else { continue }
                out.append(Finding(service: s.name, message: "\(s) is not running (systemctl is-active \(s.unit): \(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))); start it with systemctl start \(s.unit)", repaired: false))
                continue
            }
            waitUntilSettled(s)
            guard runningPID(s) == nil else { continue }
            do {
                let r = try test(s)
                if !r.ok { throw DesaError(.checkFailed, "its configuration fails its check: \(r.message)") }
                try start(s)
                out.append(Finding(service: s.name, message: "\(s) was not running; started it again", repaired: true))
            } catch {
                out.append(Finding(service: s.name, message: "\(s) is not running and could not be started: \((error as? DesaError)?.message ?? "\(error)")", repaired: false))
            }
        }
        let web = specs.first { $0.kind == .nginx }
        if let web, out.allSatisfy({ $0.service != web.name || $0.repaired }), let address = ProbeAddress(probeAddress),
           (try? HTTPProbe(address: address, timeout: 3).get(host: "desa-liveness.invalid")) == nil {
            out.append(Finding(service: web.name, message: "nothing answers HTTP on \(probeAddress)", repaired: false))
        }
        return out
    }

    /// Reloads a running service, or starts it if it is not running. systemd itself is
    /// told to re-read its units; a sandbox has no manager of its own, so nothing to do.
    public func reloadOrStart(_ s: ServiceSpec) throws {
        // desa writes no configuration MariaDB reads: never reload or restart it.
        if s.kind == .mariadb {
            if mode == .sandbox && runningPID(s) == nil { try start(s) }
            return
        }
        if s.kind == .systemd {
            guard mode == .production else { return }
            let r = try runner.run(["/usr/bin/systemctl", "daemon-reload"])
            if !r.ok { throw DesaError(.checkFailed, "systemctl daemon-reload failed: \(r.message)") }
            return
        }
        if mode == .production, s.instances != nil {
            // Every running instance (a pattern matches the units systemd has loaded).
            let pattern = s.instance("*")
            let r = try runner.run(["/usr/bin/systemctl", "reload-or-restart", pattern])
            if !r.ok { throw DesaError(.checkFailed, "systemctl reload-or-restart \(pattern) failed: \(r.message)") }
            return
        }
        if mode == .production {
            let r = try runner.run(["/usr/bin/systemctl", "reload-or-restart", s.unit])
            if !r.ok { throw DesaError(.checkFailed, "systemctl reload-or-restart \(s.unit) failed: \(r.message)") }
            return
        }
        if let pid = runningPID(s) {
            if kill(pid, s.kind == .nginx ? SIGHUP : SIGUSR2) != 0 { throw DesaError.system("cannot signal \(s) (pid \(pid)): \(errnoText())") }
            return
        }
        try start(s)
    }

    /// The instances of a template service (`ServiceSpec.instances`) whose files changed:
    /// those written reloaded or started, those removed stopped, each group in one call to
    /// systemd. Any other service is reloaded as a whole.
    public func reloadOrStart(_ s: ServiceSpec, instances: (reload: [String], stop: [String])) throws {
        // No pool among the changes (master.conf changed): every instance.
        guard mode == .production, s.instances != nil, !(instances.reload.isEmpty && instances.stop.isEmpty) else { return try reloadOrStart(s) }
        let units = { (names: [String]) in names.map(s.instance) }
        for (verb, names) in [("stop", instances.stop), ("reload-or-restart", instances.reload)] where !names.isEmpty {
            let r = try runner.run(["/usr/bin/systemctl", verb] + units(names))
            if !r.ok { throw DesaError(.checkFailed, "systemctl \(verb) \(units(names).joined(separator: " ")) failed: \(r.message)") }
        }
    }

    /// Starts a sandbox's master and records it. In production systemd runs the services:
    /// desa starts, stops and ends nothing there.
    public func start(_ s: ServiceSpec) throws {
        guard mode == .sandbox, !s.start.isEmpty, ownedMaster(s) == nil else { return }
        // Workers of our master that was killed keep its port or sockets: a new master could
        // not bind. Only those that are this sandbox's are ended, never a process found by
        // its port or its name alone.
        let left = leftovers(s)
        if !left.isEmpty { Processes.terminate(left, grace: s.kind == .phpFPM ? 1 : 3, time: time) }
        if let conflict = portConflict(s) { throw DesaError(.conflict, "\(s) did not start: \(conflict)") }
        if let dir = s.socketDir, let names = try? FileManager.default.contentsOfDirectory(atPath: dir) {
            // A socket that still accepts with no master running is held by a process that
            // inherited it (php-fpm's listening sockets survive exec): php-fpm would refuse
            // to start ("Another FPM instance seems to already listen"). The directory is
            // this sandbox's own; the path is taken back, the process is left alone.
            for n in names where n.hasSuffix(".sock") && Applier.unixSocketRefuses(dir + "/" + n) == nil {
                unlink(dir + "/" + n)
            }
        }
        raiseFileLimit()
        let log = logDir + "/\(s.name)-start.log"
        func failed(_ status: String) -> DesaError {
            var text = StartedProcess.tail(log)
            if text.isEmpty, let e = s.errorLog { text = StartedProcess.tail(e) }
            return DesaError(.checkFailed, "\(s) did not start (\(status)): \(text)")
        }
        var master: StartedProcess?
        if s.foreground {
            master = try StartedProcess.launch(s.start, executable: s.binary, argument: s.argument, cwd: nil, name: s.name,
                                               logFile: log, record: s.recordFile, runner: runner, time: time)
        } else {
            let status = try runner.runDetached(s.start, logFile: log)
            if status != 0 { throw failed("exit \(status)") }
        }
        // Started once its pid file names it: a daemonizing master's pid is known only from
        // there, and a foreground one writes it once it is up. MariaDB writes its pid file
        // only after InnoDB has started: on a busy machine that alone took more than 10 s.
        let deadline = time.deadline(s.kind == .mariadb ? 60 : 10)
        while true {
            if master == nil, let pid = Self.pidFileValue(s.pidFile),
               let r = StartedProcess.capture(pid: pid, executable: s.binary, argument: s.argument) {
                try r.write(to: s.recordFile)
                master = r
            }
            if let m = master {
                if Self.pidFileValue(s.pidFile) == m.pid { break }
                if !m.isRunning { throw failed(Processes.reap(m.pid).map { "exit \($0)" } ?? "it exited") }
            }
            if time.now() > deadline { throw failed("no pid file after \(s.kind == .mariadb ? 60 : 10) s") }
            time.sleep(0.02)
        }
        if let socket = s.readySocket {
            let ready = time.deadline(60)
            while Applier.unixSocketRefuses(socket) != nil {
                if runningPID(s) == nil || time.now() > ready {
                    throw DesaError(.checkFailed, "\(s) did not come up on \(socket): \(StartedProcess.tail(s.errorLog ?? log))")
                }
                time.sleep(0.05)
            }
        }
    }

    /// Stops a sandbox's master gracefully (SIGQUIT; MariaDB SIGTERM), then waits for it to
    /// exit, and ends the workers of its that are left. Only what this sandbox started.
    public func stop(_ s: ServiceSpec) {
        guard mode == .sandbox else { return }
        let running = ownedMaster(s)
        if let m = running {
            kill(m.pid, s.kind == .mariadb ? SIGTERM : SIGQUIT)
            var deadline = time.deadline(s.kind == .mariadb ? 30 : 10)
            while m.isRunning && time.now() < deadline { time.sleep(0.02) }
            if m.isRunning { kill(m.pid, SIGKILL) }
            deadline = time.deadline(2)
            while m.isRunning && time.now() < deadline { time.sleep(0.01) }
            _ = Processes.reap(m.pid)
        }
        // A master killed outright (by someone, or by the SIGKILL above) leaves its workers.
        if let m = running ?? StartedProcess.read(s.recordFile) {
            let left = m.leftovers(holdingFilesUnder: [logDir] + (s.socketDir.map { [$0] } ?? []))
            if !left.isEmpty { Processes.terminate(left, grace: 1, time: time) }
        }
        unlink(s.pidFile)
        unlink(s.recordFile)
    }

    /// The children of a service's master: its workers.
    public func workers(_ s: ServiceSpec) -> Set<pid_t> {
        guard let master = runningPID(s) else { return [] }
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
    public func waitForNewWorkers(_ s: ServiceSpec, old: Set<pid_t>, timeout: TimeInterval = 15) -> Bool {
        let deadline = time.deadline(timeout)
        while time.now() < deadline {
            let now = workers(s)
            let fresh = !now.subtracting(old).isEmpty
            let oldAccepting = now.intersection(old).contains { pid in
                let title = AtomicFiles.read("/proc/\(pid)/cmdline") ?? ""
                return !title.contains("shutting down")
            }
            if fresh && !oldAccepting { return true }
            time.sleep(0.005)
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
