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
    public var reloaded: [ServiceRef] = []
    public var phases: [(String, TimeInterval)] = []

    public var failures: [(code: String, reason: String)] {
        outcomes.filter { $0.value.status == .failed }.map { ($0.key, $0.value.reason ?? "") }.sorted { $0.code < $1.code }
    }
}

/// Carries out a plan, the only place that changes the server. Order: users, then
/// directories and starter pages, then configs (written atomically, checked with
/// `nginx -t` / `php-fpm -t`, one reload per service), then verification over HTTP,
/// then removals. A tenant whose config fails a check gets its previous files back and
/// is marked failed; the others go ahead. A rollback journal in the state directory
/// lets the next run undo config writes that a killed process left behind.
public struct Applier {
    public var config: Config
    public var services: ServiceControl
    public var users: Users
    public var webGID: Int
    public var progress: ProgressReporting
    public var verifyTimeout: TimeInterval = 10

    public init(config: Config, services: ServiceControl, users: Users, webGID: Int, progress: ProgressReporting) {
        self.config = config; self.services = services; self.users = users; self.webGID = webGID; self.progress = progress
    }

    public func apply(_ plan: Plan, tenants: [Tenant], allUsers: [UserSpec]) throws -> ApplyResult {
        var result = ApplyResult()
        var failed: [String: String] = [:]
        func fail(_ code: String, _ reason: String) { if failed[code] == nil { failed[code] = reason } }
        func alive(_ a: Action) -> Bool { a.tenant.map { failed[$0] == nil } ?? true }
        let byCode = Dictionary(tenants.map { ($0.code, $0) }, uniquingKeysWith: { a, _ in a })
        func tenant(_ code: String) throws -> Tenant {
            guard let t = byCode[code] else { throw DesaError.system("tenant \(code) is in the plan but not in the state database") }
            return t
        }
        var clock = Date()
        func phase(_ name: String) { result.phases.append((name, Date().timeIntervalSince(clock))); clock = Date() }

        for case .fail(let t, let r) in plan.actions { fail(t, r) }

        // Server-wide directories first: nothing else works without them.
        for case .ensureDirectory(nil, let d, _) in plan.actions { try Self.ensureDirectory(d, config: config) }

        // Users, in one declarative batch.
        let newUsers: [(String, UserSpec)] = plan.actions.compactMap {
            if case .createUser(let t, let u) = $0, failed[t] == nil { return (t, u) } else { return nil }
        }
        if !newUsers.isEmpty {
            progress.begin("users", total: newUsers.count)
            do {
                try users.create(all: allUsers)
                let now = Dictionary(try users.tenants(prefix: config.userPrefix).map { ($0.name, $0.uid) }, uniquingKeysWith: { a, _ in a })
                for (t, u) in newUsers {
                    if now[u.name] == nil { fail(t, "user \(u.name) was not created") }
                    else if now[u.name] != u.uid { fail(t, "user \(u.name) got UID \(now[u.name]!) instead of \(u.uid): the UID is taken") }
                }
            } catch {
                for (t, _) in newUsers { fail(t, Self.message(error)) }
            }
            progress.advance(newUsers.count)
            progress.end()
            phase("users")
        }

        // Homes, log files and starter pages, each tenant's by descriptor from the web root.
        let homeActions = plan.actions.filter {
            switch $0 {
            case .ensureDirectory(.some, _, _), .ensureFile, .createLink, .writeStarterPage: return true
            default: return false
            }
        }
        if !homeActions.isEmpty { progress.begin("directories", total: homeActions.count) }
        for a in homeActions {
            guard let t = a.tenant, failed[t] == nil else { continue }
            do {
                switch a {
                case .ensureDirectory(_, let d, _): try Self.ensureDirectory(d, config: config)
                case .ensureFile(_, let f, _): try Self.ensureFile(f, config: config)
                case .createLink(_, let path, let target): try Self.createLink(path, target: target, config: config)
                case .writeStarterPage(_, let path, let content, let uid, let gid):
                    try Self.writeStarterPage(path, content: content, uid: uid, gid: gid, config: config)
                default: break
                }
            } catch { fail(t, Self.message(error)) }
            progress.advance(1)
        }
        if !homeActions.isEmpty { progress.end(); phase("directories") }

        // Configs: write, check, exclude a failing tenant and check again, reload once.
        var changes = plan.actions.filter { $0.service != nil && alive($0) }
        var reloads: [ServiceRef] = []
        let journal = RollbackJournal(dir: config.rollbackDir)
        while !changes.isEmpty {
            // Never change a pool file while php-fpm is still re-reading its pools.
            for s in Set(changes.compactMap(\.service)) { services.waitUntilSettled(s) }
            let backup = try journal.begin(paths: changes.map(Self.path(of:)))
            progress.begin("configs", total: changes.count)
            do { try Self.write(changes) } catch {
                journal.restore(backup)
                for t in Set(changes.compactMap(\.tenant)) { fail(t, Self.message(error)) }
                changes = []
                break
            }
            progress.advance(changes.count)
            progress.end()
            let touched = Array(Set(changes.compactMap(\.service))).sorted()
            var failure: (ServiceRef, String)?
            for s in touched {
                let r = try services.test(s)
                if !r.ok { failure = (s, Self.checkerMessage(r.message)); break }
            }
            guard let (service, message) = failure else { reloads = touched; break }
            journal.restore(backup)
            let reason = "\(service) rejected the new configuration: \(message)"
            if let culprit = Self.culprit(in: message, changes: changes, tenants: byCode, config: config) {
                fail(culprit, reason)
                changes.removeAll { $0.tenant == culprit }
            } else {
                for t in Set(changes.compactMap(\.tenant)) { fail(t, reason) }
                changes = []
            }
        }
        phase("check")
        if !reloads.isEmpty {
            progress.begin("reload", total: reloads.count)
            let oldWorkers = services.nginxWorkers()
            var reloadError: Error?
            for s in reloads {
                do { try services.reloadOrStart(s) } catch { reloadError = error; break }
                progress.advance(1)
            }
            if let e = reloadError, let backup = journal.pending() {
                journal.restore(backup)
                for s in reloads { try? services.reloadOrStart(s) }
                for t in Set(changes.compactMap(\.tenant)) { fail(t, Self.message(e)) }
            } else if reloads.contains(.nginx), !oldWorkers.isEmpty {
                if !services.waitForNewNginxWorkers(old: oldWorkers, timeout: max(15, Double(tenants.count) / 200)) {
                    let why = Self.lastEmergency(in: config.nginxErrorLog).map { ": \($0)" } ?? ""
                    for t in Set(changes.compactMap(\.tenant)) { fail(t, "nginx did not pick up the new configuration\(why)") }
                }
            }
            if reloadError == nil, reloads.contains(where: { $0.phpVersion != nil }) {
                // php-fpm reloads asynchronously too: its master re-executes and opens the
                // sockets of new pools once it has read every pool, which takes longer the
                // more pools there are (tens of seconds at 10,000). Wait for the sockets of
                // the tenants about to be verified, so verification measures the tenant and
                // not the reload.
                let sockets = plan.actions.compactMap { a -> String? in
                    guard case .verify(let code, .active) = a, failed[code] == nil, let t = byCode[code] else { return nil }
                    return try? t.phpSocket(config)
                }
                Self.waitForFiles(sockets, timeout: max(15, Double(tenants.count) / 100))
            }
            progress.end()
            result.reloaded = reloads
            phase("reload")
        }
        // The new files are in place (or restored): nothing is left to roll back.
        journal.clear()

        // Verify over HTTP that each tenant serves what it should.
        let checks: [(String, Tenant.Status)] = plan.actions.compactMap {
            if case .verify(let t, let s) = $0, failed[t] == nil, s != .deleted { return (t, s) } else { return nil }
        }
        if !checks.isEmpty {
            progress.begin("verify", total: checks.count)
            let verdicts = verify(checks.compactMap { c in byCode[c.0].map { ($0, c.1) } })
            for (code, reason) in verdicts { if let reason { fail(code, reason) } }
            progress.advance(checks.count)
            progress.end()
            phase("verify")
        }

        // Removals last: pools are gone, so the tenants' PHP has stopped; what else they
        // run is ended before their files and users go.
        for a in plan.actions where alive(a) {
            do {
                switch a {
                case .stopProcesses(_, let uid, let gid, _): try Self.stopProcesses(uid: uid, gid: gid)
                case .deleteUser(_, let name): try deleteUser(name)
                case .archiveHome(let code, _, let to): try Self.archive(try tenant(code), to: to, config: config)
                case .purgeHome(let code, _): try Self.purge(try tenant(code), config: config)
                default: break
                }
            } catch {
                if let t = a.tenant { fail(t, Self.message(error)) } else { throw error }
            }
        }

        for a in plan.actions {
            guard let t = a.tenant else { continue }
            if let reason = failed[t] {
                result.outcomes[t] = .init(status: .failed, reason: reason)
            } else if case .verify(_, let s) = a {
                result.outcomes[t] = .init(status: s, reason: nil)
            }
        }
        phase("finish")
        return result
    }

    // MARK: steps

    static func path(of a: Action) -> String {
        switch a {
        case .writeConfig(_, let p, _, _, _), .removeConfig(_, let p, _): return p
        default: return ""
        }
    }

    static func write(_ changes: [Action]) throws {
        var writes: [FileWrite] = []
        var removals: [String] = []
        for c in changes {
            switch c {
            case .writeConfig(_, let p, let content, _, _): writes.append(FileWrite(path: p, content: content, mode: 0o644))
            case .removeConfig(_, let p, _): removals.append(p)
            default: break
            }
        }
        try AtomicFiles.write(writes)
        AtomicFiles.remove(removals)
    }

    /// What to tell the operator about an error of any type.
    static func message(_ error: Error) -> String {
        (error as? DesaError)?.message ?? "\(error)"
    }

    /// The checker's complaint without timestamps, pids and its closing "test failed" line.
    static func checkerMessage(_ raw: String) -> String {
        let lines = raw.split(separator: "\n").map { line -> String in
            var l = String(line)
            // nginx: "2026/11/24 16:17:39 [emerg] 13974#13974: ..."; php-fpm: "[24-Nov-2026 15:53:15] ERROR: ..."
            if let r = l.range(of: #"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[\w+\] \d+#\d+: "#, options: .regularExpression) { l.removeSubrange(r) }
            if let r = l.range(of: #"^\[[^\]]+\] "#, options: .regularExpression) { l.removeSubrange(r) }
            return l
        }.filter { !$0.hasSuffix("test failed") && !$0.contains("FPM initialization failed") && !$0.hasPrefix("nginx: the configuration file") }
        return lines.joined(separator: "; ")
    }

    /// The last [emerg] or [alert] line of nginx's error log, without its timestamp.
    static func lastEmergency(in path: String) -> String? {
        guard let fd = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? fd.close() }
        let size = (try? fd.seekToEnd()) ?? 0
        try? fd.seek(toOffset: size > 16384 ? size - 16384 : 0)
        let tail = String(decoding: fd.readDataToEndOfFile(), as: UTF8.self)
        guard let line = tail.split(separator: "\n").last(where: { $0.contains("[emerg]") || $0.contains("[alert]") }) else { return nil }
        return checkerMessage(String(line))
    }

    /// Which tenant a checker's message points at: a config file it names, a pool name,
    /// or a path inside a tenant's home.
    static func culprit(in message: String, changes: [Action], tenants: [String: Tenant], config: Config) -> String? {
        for c in changes {
            guard let t = c.tenant else { continue }
            let p = path(of: c)
            if message.contains(p + ":") || message.contains(p + "\"") || message.contains(p + " ") { return t }
            if case .php = c.service, message.contains("[pool \(((p as NSString).lastPathComponent as NSString).deletingPathExtension)]") { return t }
            if let tenant = tenants[t], message.contains(tenant.home(config) + "/") { return t }
        }
        return nil
    }

    func deleteUser(_ name: String) throws {
        var attempt = 0
        while true {
            do { try users.delete(name); return } catch let e as DesaError {
                // php-fpm may still be winding down the pool's last worker.
                attempt += 1
                if attempt > 20 { throw e }
                usleep(100_000)
            }
        }
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
    static func waitForFiles(_ paths: [String], timeout: TimeInterval) {
        let deadline = Date().addingTimeInterval(timeout)
        var missing = paths
        while !missing.isEmpty, Date() < deadline {
            missing = missing.filter { access($0, F_OK) != 0 }
            if !missing.isEmpty { usleep(20_000) }
        }
    }

    /// Asks each tenant over HTTP, in parallel, until it answers as expected or time runs out.
    func verify(_ checks: [(Tenant, Tenant.Status)]) -> [String: String?] {
        guard let address = ProbeAddress(config.probeAddress) else { return [:] }
        let probe = HTTPProbe(address: address, timeout: 3)
        let lock = NSLock()
        nonisolated(unsafe) var out: [String: String?] = [:]
        let deadline = Date().addingTimeInterval(verifyTimeout)
        let cfg = config
        DispatchQueue.concurrentPerform(iterations: checks.count) { i in
            let (t, expect) = checks[i]
            let host = t.primaryDomain(cfg)
            let socket = try? t.phpSocket(cfg)
            var last = "no answer"
            var verdict: String? = "did not answer"
            repeat {
                do {
                    let r = try probe.get(host: host)
                    let good = expect == .suspended ? r.status == 503 : (r.status < 500 && r.status != 421)
                    if good {
                        // A socket file outlives a killed php-fpm master: ask it to accept.
                        if expect == .active, let socket, let why = Self.unixSocketRefuses(socket) {
                            last = "PHP-FPM socket \(socket): \(why)"
                        } else { verdict = nil; break }
                    } else {
                        last = "answered \(r.status)"
                    }
                } catch let e as DesaError { last = e.message } catch { last = "\(error)" }
                usleep(50_000)
            } while Date() < deadline
            if verdict != nil { verdict = "http://\(host)/ via \(cfg.probeAddress) did not serve as \(expect.rawValue): \(last)" }
            lock.lock(); out[t.code] = verdict; lock.unlock()
        }
        return out
    }
}
