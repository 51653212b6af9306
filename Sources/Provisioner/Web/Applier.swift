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
        var clock = Date()
        func phase(_ name: String) { result.phases.append((name, Date().timeIntervalSince(clock))); clock = Date() }

        for case .fail(let t, let r) in plan.actions { fail(t, r) }

        // Server-wide directories first: nothing else works without them.
        for case .ensureDirectory(nil, let d, _) in plan.actions { try Self.ensureDirectory(d) }

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
            } catch let e as DesaError {
                for (t, _) in newUsers { fail(t, e.message) }
            }
            progress.advance(newUsers.count)
            progress.end()
            phase("users")
        }

        // Homes and starter pages.
        let dirActions = plan.actions.filter { if case .ensureDirectory(.some, _, _) = $0 { return true }; return false }
        if !dirActions.isEmpty { progress.begin("directories", total: dirActions.count) }
        for case .ensureDirectory(let t?, let d, _) in dirActions where failed[t] == nil {
            do { try Self.ensureDirectory(d) } catch let e as DesaError { fail(t, e.message) }
            progress.advance(1)
        }
        if !dirActions.isEmpty { progress.end() }
        var pages: [(String, FileWrite)] = []
        for case .writeStarterPage(let t, let path, let content, let uid, let gid) in plan.actions where failed[t] == nil {
            pages.append((t, FileWrite(path: path, content: content, mode: 0o640, owner: uid_t(uid), group: gid_t(gid))))
        }
        do { try AtomicFiles.write(pages.map(\.1)) } catch let e as DesaError { for (t, _) in pages { fail(t, e.message) } }
        phase("directories")

        // Configs: write, check, exclude a failing tenant and check again, reload once.
        var changes = plan.actions.filter { $0.service != nil && alive($0) }
        var reloads: [ServiceRef] = []
        let journal = RollbackJournal(dir: config.rollbackDir)
        while !changes.isEmpty {
            let backup = try journal.begin(paths: changes.map(Self.path(of:)))
            progress.begin("configs", total: changes.count)
            do { try Self.write(changes) } catch let e as DesaError {
                journal.restore(backup)
                for t in Set(changes.compactMap(\.tenant)) { fail(t, e.message) }
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
            var reloadError: DesaError?
            for s in reloads {
                do { try services.reloadOrStart(s) } catch let e as DesaError { reloadError = e; break }
                progress.advance(1)
            }
            if let e = reloadError, let backup = journal.pending() {
                journal.restore(backup)
                for s in reloads { try? services.reloadOrStart(s) }
                for t in Set(changes.compactMap(\.tenant)) { fail(t, e.message) }
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

        // Removals last: pools are gone, so the users have no processes left.
        for a in plan.actions where alive(a) {
            do {
                switch a {
                case .deleteUser(_, let name): try deleteUser(name)
                case .archiveHome(_, let home, let to): try Self.archive(home: home, to: to)
                case .purgeHome(_, let home):
                    do { try FileManager.default.removeItem(atPath: home) } catch {
                        throw DesaError.system("cannot remove \(home): \(error.localizedDescription)")
                    }
                default: break
                }
            } catch let e as DesaError {
                if let t = a.tenant { fail(t, e.message) } else { throw e }
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

    public static func ensureDirectory(_ d: DirSpec) throws {
        if mkdir(d.path, mode_t(d.mode & 0o777)) != 0 && errno != EEXIST {
            throw DesaError.system("cannot create directory \(d.path): \(errnoText())")
        }
        var st = stat()
        guard lstat(d.path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw DesaError.system("\(d.path) exists and is not a directory")
        }
        if Int(st.st_uid) != d.uid || Int(st.st_gid) != d.gid {
            if lchown(d.path, uid_t(d.uid), gid_t(d.gid)) != 0 { throw DesaError.system("cannot chown \(d.path): \(errnoText())") }
        }
        // chmod after chown: chown clears the setgid bit.
        if chmod(d.path, mode_t(d.mode)) != 0 { throw DesaError.system("cannot chmod \(d.path): \(errnoText())") }
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

    /// Moves a home into the archive and gives it to root: the UID will be reused.
    static func archive(home: String, to: String) throws {
        do {
            try FileManager.default.moveItem(atPath: home, toPath: to)
        } catch {
            throw DesaError.system("cannot archive \(home) to \(to): \(error.localizedDescription)")
        }
        lchown(to, 0, 0)
        chmod(to, 0o700)
        if let e = FileManager.default.enumerator(atPath: to) {
            while let rel = e.nextObject() as? String { lchown(to + "/" + rel, 0, 0) }
        }
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
                        if expect == .active, let socket, access(socket, F_OK) != 0 {
                            last = "PHP-FPM socket \(socket) does not exist"
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
