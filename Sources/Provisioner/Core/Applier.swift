import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What an apply achieved, per tenant.
public struct ApplyResult: Sendable {
    public struct Outcome: Sendable, Equatable {
        public var status: Tenant.Status
        public var reason: String?
    }
    public var outcomes: [String: Outcome] = [:]
    public var reloaded: [String] = []
    public var phases: [(String, TimeInterval)] = []

    public var failures: [(code: String, reason: String)] {
        outcomes.filter { $0.value.status == .failed }.map { ($0.key, $0.value.reason ?? "") }.sorted { $0.code < $1.code }
    }
}

/// What executors and operations may use: the server, as the config describes it.
public struct ApplyContext: Sendable {
    public var config: Config
    public var runner: ProcessRunning
    public var users: Users
    public var services: ServiceControl
    public var time: TimeSource

    public init(config: Config, runner: ProcessRunning, time: TimeSource = .system) {
        self.config = config; self.runner = runner; self.time = time
        users = Users(runner: runner, passwdFile: config.passwdFile, sysusersFile: config.sysusersFile)
        services = ServiceControl(mode: config.mode, runner: runner, logDir: config.logDir, probeAddress: config.nginx.probe, time: time)
    }

    public var clock: TimeSource { time }
}

/// Carries out a plan, the only place that changes the server, phase by phase (see
/// `Phase`). Within a phase each step's effect goes to its executor: users in one
/// `systemd-sysusers` batch; directories, files, links and page content one by one by
/// descriptor; managed files in one transaction (write all, check each service, blame
/// and exclude the tenant a checker names, roll back, check again, reload each service
/// once); verification in parallel; a capability's operations by their own `run`.
///
/// An error of any type in a tenant's step fails that tenant with its message and the
/// batch goes on; an error in a server step fails the command. A rollback journal in
/// the state directory lets the next run undo config writes a killed process left.
public struct Applier: Sendable {
    public var context: ApplyContext
    public var progress: ProgressReporting
    public var verifyTimeout: TimeInterval = 10

    public init(context: ApplyContext, progress: ProgressReporting) {
        self.context = context; self.progress = progress
    }

    var config: Config { context.config }
    var services: ServiceControl { context.services }
    var time: TimeSource { context.time }

    /// The state of one apply: who failed, and what happened.
    final class Run {
        var result = ApplyResult()
        var failed: [String: String] = [:]
        var mark: Date
        let time: TimeSource
        init(time: TimeSource) { self.time = time; mark = time.now() }

        func fail(_ code: String, _ reason: String) { if failed[code] == nil { failed[code] = reason } }
        func alive(_ s: Step) -> Bool { s.tenant.map { failed[$0] == nil } ?? true }
        func phase(_ name: String) {
            let now = time.now()
            result.phases.append((name, now.timeIntervalSince(mark)))
            mark = now
        }
    }

    public func apply(_ plan: Plan) throws -> ApplyResult {
        let run = Run(time: time)
        for s in plan.steps { if case .fail(let r) = s.effect, let t = s.tenant { run.fail(t, r) } }
        // Stable: within a phase the server's steps first, then the tenants' in plan order.
        let ordered = plan.steps.enumerated().sorted {
            ($0.element.phase, $0.element.tenant == nil ? 0 : 1, $0.offset) < ($1.element.phase, $1.element.tenant == nil ? 0 : 1, $1.offset)
        }.map(\.element)
        var start = 0
        while start < ordered.count {
            let phase = ordered[start].phase
            var end = start
            while end < ordered.count && ordered[end].phase == phase { end += 1 }
            try execute(phase, Array(ordered[start..<end]), plan: plan, run: run)
            start = end
        }
        for s in plan.steps {
            guard let t = s.tenant else { continue }
            if let reason = run.failed[t] {
                run.result.outcomes[t] = .init(status: .failed, reason: reason)
            } else if case .verify(let v) = s.effect {
                run.result.outcomes[t] = .init(status: v.expect, reason: nil)
            }
        }
        run.phase("finish")
        return run.result
    }

    func execute(_ phase: Phase, _ steps: [Step], plan: Plan, run: Run) throws {
        var users: [Step] = [], managed: [Step] = [], checks: [Step] = [], single: [Step] = []
        for s in steps where run.alive(s) {
            switch s.effect {
            case .user, .userBatch: users.append(s)
            case .managed: managed.append(s)
            case .verify: checks.append(s)
            case .fail: continue
            default: single.append(s)
            }
        }
        if !single.isEmpty {
            progress.begin(phase.description, total: single.count)
            if phase == .mounts {
                try performByTenant(single, run: run)
            } else {
                for s in single where run.alive(s) {
                    do { try perform(s) } catch {
                        guard let t = s.tenant else { progress.end(); throw error }
                        run.fail(t, Self.message(error))
                    }
                    progress.advance(1)
                }
            }
            progress.end()
            run.phase(phase.description)
        }
        if !users.isEmpty { createUsers(users, run: run); run.phase("users") }
        if !managed.isEmpty { try FileTransaction(applier: self, plan: plan, run: run).commit(managed) }
        if !checks.isEmpty { verify(checks, plan: plan, run: run); run.phase("verify") }
    }

    /// How many tenants' mounts run at once: each is a few short programs (mkfs, mount,
    /// tune2fs) that mostly wait on the kernel, so more than the cores pays.
    static let mountWidth = 4

    /// The server's steps in order, then each tenant's steps in order, several tenants at
    /// once: a tenant's step that fails ends that tenant's later steps, as in one sequence.
    func performByTenant(_ steps: [Step], run: Run) throws {
        var groups: [String: [Step]] = [:], order: [String] = []
        for s in steps {
            guard let t = s.tenant else {
                do { try perform(s) } catch { progress.end(); throw error }
                progress.advance(1)
                continue
            }
            if groups[t] == nil { order.append(t) }
            groups[t, default: []].append(s)
        }
        let lock = NSLock()
        nonisolated(unsafe) var next = 0
        nonisolated(unsafe) var failed: [(String, String)] = []
        let progress = self.progress, tenants = order, byTenant = groups
        DispatchQueue.concurrentPerform(iterations: min(Self.mountWidth, tenants.count)) { _ in
            while true {
                let i: Int = lock.withLock { defer { next += 1 }; return next }
                guard i < tenants.count, let group = byTenant[tenants[i]] else { return }
                for (k, s) in group.enumerated() {
                    do { try perform(s) } catch {
                        lock.withLock { failed.append((tenants[i], Self.message(error))) }
                        progress.advance(group.count - k)
                        break
                    }
                    progress.advance(1)
                }
            }
        }
        for (t, why) in failed { run.fail(t, why) }
    }

    /// One step whose effect stands alone.
    func perform(_ s: Step) throws {
        switch s.effect {
        case .directory(let d): try Self.ensureDirectory(d, config: config)
        case .file(let f): try Self.ensureFile(f, config: config)
        case .link(let path, let target): try Self.createLink(path, target: target, config: config)
        case .content(let c): try Self.writeContent(c, config: config)
        case .custom(let o): try o.run(context)
        case .user, .userBatch, .managed, .verify, .fail: break
        }
    }

    /// The declaration file first, then one `systemd-sysusers` for every user to create;
    /// each tenant whose user did not come out with its UID fails.
    func createUsers(_ steps: [Step], run: Run) {
        let creates: [(String, UserSpec)] = steps.compactMap { s in
            if case .user(let u) = s.effect, let t = s.tenant { return (t, u) }
            return nil
        }
        progress.begin("users", total: max(1, creates.count))
        defer { progress.advance(max(1, creates.count)); progress.end() }
        do {
            for s in steps {
                guard case .userBatch(let b) = s.effect else { continue }
                // Debian 12's systemd ships /usr/lib/sysusers.d but no /etc/sysusers.d.
                let parent = (b.file as NSString).deletingLastPathComponent
                if !FileManager.default.fileExists(atPath: parent) {
                    try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true,
                                                            attributes: [.posixPermissions: 0o755])
                }
                try AtomicFiles.write([FileWrite(path: b.file, content: b.content, mode: 0o644)])
            }
            guard !creates.isEmpty else { return }
            try context.users.createDeclared()
            let now = Dictionary(try context.users.tenants(prefix: config.userPrefix).map { ($0.name, $0.uid) }, uniquingKeysWith: { a, _ in a })
            for (t, u) in creates {
                if now[u.name] == nil { run.fail(t, "user \(u.name) was not created") }
                else if now[u.name] != u.uid { run.fail(t, "user \(u.name) got UID \(now[u.name]!) instead of \(u.uid): the UID is taken") }
            }
        } catch {
            for (t, _) in creates { run.fail(t, Self.message(error)) }
        }
    }

    /// What to tell the operator about an error of any type.
    public static func message(_ error: Error) -> String {
        (error as? DesaError)?.message ?? "\(error)"
    }

    /// Nil when something accepts connections on the Unix socket, else why not.
    static func unixSocketRefuses(_ path: String) -> String? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return "socket: \(errnoText())" }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return "path too long" }
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in for (i, b) in bytes.enumerated() { buf[i] = b } }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return rc == 0 ? nil : errnoText()
    }

    /// Waits until every path exists or time runs out; verification reports what is missing.
    func waitForFiles(_ paths: [String], timeout: TimeInterval) {
        let deadline = time.deadline(timeout)
        var missing = paths
        while !missing.isEmpty, time.now() < deadline {
            missing = missing.filter { access($0, F_OK) != 0 }
            if !missing.isEmpty { time.sleep(0.02) }
        }
    }

    /// Asks each tenant, in parallel, until every probe answers as expected or time runs out.
    func verify(_ checks: [Step], plan: Plan, run: Run) {
        progress.begin("verify", total: checks.count)
        defer { progress.advance(checks.count); progress.end() }
        // php-fpm reloads asynchronously: its master re-executes and opens the sockets of
        // new pools once it has read every pool (tens of seconds at 10,000). Wait for the
        // sockets, so verification measures the tenant and not the reload.
        if run.result.reloaded.contains(where: { name in plan.services.first { $0.name == name }?.kind == .phpFPM }) {
            let sockets = checks.flatMap { s -> [String] in
                guard case .verify(let v) = s.effect else { return [] }
                return v.probes.compactMap { if case .socket(let p) = $0 { return p }; return nil }
            }
            waitForFiles(sockets, timeout: max(15, Double(plan.scale) / 100))
        }
        let lock = NSLock()
        nonisolated(unsafe) var out: [String: String] = [:]
        let deadline = time.deadline(verifyTimeout)
        let time = self.time
        let listening = Processes.ListeningUnixSockets(time: time)
        DispatchQueue.concurrentPerform(iterations: checks.count) { i in
            guard case .verify(let v) = checks[i].effect, let code = checks[i].tenant else { return }
            if let why = Self.probe(v, until: deadline, time: time, listening: listening) { lock.lock(); out[code] = why; lock.unlock() }
        }
        for (code, why) in out { run.fail(code, why) }
    }

    /// Nil when every probe answers as expected before the deadline, else what did not.
    static func probe(_ v: Verification, until deadline: Date, time: TimeSource, listening: Processes.ListeningUnixSockets) -> String? {
        var pending = v.probes
        var last = "no answer"
        repeat {
            probing: while let p = pending.first {
                switch p {
                case .http(let host, let address, let expect):
                    guard let a = ProbeAddress(address) else { return "\(address) is not HOST:PORT" }
                    do {
                        let r = try HTTPProbe(address: a, timeout: 3).get(host: host)
                        let good = expect == .suspended ? r.status == 503 : (r.status < 500 && r.status != 421)
                        last = "answered \(r.status)"
                        if !good { break probing }
                    } catch { last = message(error); break probing }
                case .socket(let path):
                    // A socket file outlives a killed php-fpm master: the kernel says whether
                    // something listens on it. Connecting would start a worker of an ondemand
                    // pool (23 MB for 20 s): an import of 5,000 tenants exhausted 24 GB so.
                    if !listening.contains(path) {
                        last = "PHP-FPM socket \(path): " + (access(path, F_OK) == 0 ? "nothing listens on it" : "missing")
                        break probing
                    }
                }
                pending.removeFirst()
            }
            if pending.isEmpty { return nil }
            time.sleep(0.05)
        } while time.now() < deadline
        if case .http(let host, let address, let expect)? = v.probes.first {
            return "http://\(host)/ via \(address) did not serve as \(expect.rawValue): \(last)"
        }
        return last
    }
}
