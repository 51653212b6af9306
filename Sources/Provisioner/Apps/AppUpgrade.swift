import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// What `app upgrade` did, tenant by tenant.
public struct AppUpgradeReport: OperationReport {
    public struct Row: Sendable {
        public var slug: String
        public var code: String
        public var from: String?
        public var to: String
        /// `upgraded`, `current` (already on it), `moved` (a full copy now runs the stored
        /// release), `skipped` (failing before), `rolled-back`, `failed`, `not-run` (after a stop).
        public var outcome: String
        public var wave: Int
        public var seconds: Double
        /// How long it answered 503.
        public var unavailable: Double?
        public var reason: String?
    }

    public var to: String
    public var rows: [Row]
    public var dryRun: Bool
    /// Why the run stopped before the end.
    public var stopped: String?
    public var seconds: Double

    static let bad: Set<String> = ["skipped", "rolled-back", "failed"]
    public var exitStatus: Int32 { stopped == nil && !rows.contains { Self.bad.contains($0.outcome) } ? ExitStatus.ok : ExitStatus.failed }

    func count(_ o: String) -> Int { rows.filter { $0.outcome == o }.count }

    public var summary: String {
        if dryRun { return "would upgrade \(rows.filter { $0.outcome == "planned" }.count) tenants to opensid \(to)" }
        var s = "opensid \(to): \(count("upgraded")) upgraded"
        for o in ["moved", "current", "skipped", "rolled-back", "failed", "not-run"] where count(o) > 0 { s += ", \(count(o)) \(o)" }
        if let stopped { s += "; stopped: \(stopped)" }
        return s
    }

    public var json: JSON {
        .object([("to", .string(to)), ("dry_run", .bool(dryRun)), ("stopped", .str(stopped)), ("seconds", .double(seconds)),
                 ("tenants", .array(rows.map { r in
                     .object([("slug", .string(r.slug)), ("code", .string(r.code)), ("from", .str(r.from)), ("to", .string(r.to)),
                              ("outcome", .string(r.outcome)), ("wave", .int(r.wave)), ("seconds", .double(r.seconds)),
                              ("unavailable_seconds", r.unavailable.map { .double($0) } ?? .null), ("reason", .str(r.reason))])
                 }))])
    }

    public var lines: [String] {
        var out: [String] = []
        for r in rows {
            let wave = r.wave == 0 ? "canary" : "wave \(r.wave)"
            var line = "\(r.slug): \(r.outcome) (\(wave))"
            if let f = r.from, f != r.to { line += ", \(f) -> \(r.to)" }
            if !dryRun, r.outcome != "not-run" { line += String(format: ", %.1f s", r.seconds) }
            if let u = r.unavailable { line += String(format: ", 503 for %.1f s", u) }
            if let why = r.reason { line += ": " + why }
            out.append(line)
        }
        out.append((dryRun ? "Dry run: " : "") + summary + (dryRun ? "" : String(format: " (%.0f s)", seconds)))
        if stopped != nil { out.append("Fix what failed, then go on with: desactl app upgrade opensid --resume") }
        return out
    }
}

/// The run `--resume` goes on with: what it upgrades to and which tenants, in order.
struct UpgradeRun: Codable {
    var app: String
    var to: String
    var codes: [String]
    var startedAt: String

    static func path(_ c: Config) -> String { c.appsStateDir + "/upgrade-run.json" }
}

/// `app upgrade opensid`: tenants move to another stored release one by one (up to
/// `apps.parallel` at once within a wave): a canary first, then growing waves; each behind
/// a health check before, a dump (and a backup snapshot when backups are on), a 503 while
/// it changes, an atomic switch, OpenSID's migrations as the tenant, and a gate after. A
/// failed gate rolls that tenant back (the old release and the dump) and stops the run.
public struct AppUpgrade: Operation {
    public var keys: [String]
    public var version: String?
    public var tarball: String?
    public var resume: Bool
    public var dryRun: Bool
    let lockPath: String

    public init(engine: Engine, keys: [String], version: String?, tarball: String?, resume: Bool, dryRun: Bool) {
        self.keys = keys; self.version = version; self.tarball = tarball; self.resume = resume; self.dryRun = dryRun
        lockPath = engine.config.appsStateDir + "/upgrade.lock"
    }

    public var name: String { "app upgrade" }
    public var target: String { keys.isEmpty ? "all" : keys.joined(separator: " ") }
    public var lock: OperationLock { dryRun ? .none : .file(lockPath, timeout: 0) }

    public func run(_ context: OperationContext) throws -> AppUpgradeReport {
        let e = context.engine, c = e.config
        let started = e.time.now()
        try e.requireDatabases()
        // What to upgrade to, and whom.
        var release: AppRelease
        var tenants: [Tenant]
        if resume {
            guard let data = FileManager.default.contents(atPath: UpgradeRun.path(c)), let saved = try? JSONDecoder().decode(UpgradeRun.self, from: data) else {
                throw DesaError(.notFound, "no upgrade to resume (\(UpgradeRun.path(c)) is missing: the last run finished, or none was started)")
            }
            release = try Releases.find(e, app: saved.app, version: saved.to)
            tenants = try Backups.tenants(e, saved.codes)
        } else {
            if let tarball {
                guard !dryRun else { throw DesaError.invalid("--dry-run does not store a release: add it first (desactl app release add opensid \(tarball)), then --to its version") }
                release = try Releases.add(e, tarball: tarball).0
            } else if let version {
                release = try Releases.find(e, app: "opensid", version: version)
            } else {
                throw DesaError.invalid("say which release: --to VERSION (a stored one) or --from TARBALL")
            }
            let apps = try e.store.queue.read { db in try TenantApp.byCode(db) }
            tenants = try Backups.tenants(e, keys)
            if keys.isEmpty {
                // --all: every active tenant that runs OpenSID (recorded, or a full copy to move).
                tenants = tenants.filter { apps[$0.code] != nil || Self.fullCopy($0, c) }
            }
        }
        let plan = Self.waves(tenants, canary: c.apps.canary, shares: c.apps.waveShares ?? [100])
        let apps = try e.store.queue.read { db in try TenantApp.byCode(db) }
        if dryRun {
            var rows: [AppUpgradeReport.Row] = []
            for (w, wave) in plan.enumerated() {
                for t in wave {
                    let a = apps[t.code]
                    let current = a?.release ?? (Self.fullCopy(t, c) ? "full copy" : nil)
                    let outcome = a?.release == release.version && a?.state == .ok ? "current" : "planned"
                    rows.append(.init(slug: t.slug, code: t.code, from: current, to: release.version, outcome: outcome, wave: w, seconds: 0))
                }
            }
            return AppUpgradeReport(to: release.version, rows: rows, dryRun: true, seconds: 0)
        }
        try Releases.ensureDirs(c)
        let run = UpgradeRun(app: release.app, to: release.version, codes: plan.flatMap { $0.map(\.code) }, startedAt: Timestamp.format(started))
        try AtomicFiles.write([FileWrite(path: UpgradeRun.path(c), content: String(decoding: try JSONEncoder().encode(run), as: UTF8.self), mode: 0o600)])

        let upgrader = TenantUpgrader(engine: e, context: context, release: release)
        var rows: [AppUpgradeReport.Row] = []
        var stopped: String?
        context.progress.begin("upgrading to opensid \(release.version)", total: run.codes.count)
        for (w, wave) in plan.enumerated() {
            if stopped != nil {
                rows += wave.map { .init(slug: $0.slug, code: $0.code, from: apps[$0.code]?.release, to: release.version, outcome: "not-run", wave: w, seconds: 0) }
                continue
            }
            let results = Locked<[String: AppUpgradeReport.Row]>([:])
            let stop = Locked<String?>(nil)
            Self.parallel(wave, width: w == 0 ? 1 : c.apps.parallel, stop: { stop.get() != nil }) { t in
                var row = upgrader.upgrade(t)
                row.wave = w
                results.with { $0[t.code] = row }
                if row.outcome == "rolled-back" || row.outcome == "failed" {
                    stop.with { $0 = $0 ?? "\(t.slug) \(row.outcome): \(row.reason ?? "")" }
                }
                context.progress.advance(1)
            }
            let got = results.get()
            rows += wave.map { got[$0.code] ?? .init(slug: $0.slug, code: $0.code, from: apps[$0.code]?.release, to: release.version, outcome: "not-run", wave: w, seconds: 0) }
            stopped = stop.get()
        }
        context.progress.end()
        if stopped == nil && !rows.contains(where: { AppUpgradeReport.bad.contains($0.outcome) }) { unlink(UpgradeRun.path(c)) }
        let report = AppUpgradeReport(to: release.version, rows: rows, dryRun: false, stopped: stopped, seconds: e.time.now().timeIntervalSince(started))
        context.note("app upgrade to opensid \(release.version): " + report.summary, priority: report.exitStatus == ExitStatus.ok ? .notice : .err)
        return report
    }

    /// A tenant whose web root holds a full copy of OpenSID (installed before releases were shared).
    static func fullCopy(_ t: Tenant, _ c: Config) -> Bool {
        guard let home = try? DirHandle.openHome(t.home(c)), let pub = try? home.openDir("public") else { return false }
        return SharedLayout.isFullCopy(pub)
    }

    /// The canary (the configured one if it is among them, else the first), then waves that
    /// bring the share done to each of `shares` percent of all.
    static func waves(_ tenants: [Tenant], canary: String, shares: [Int]) -> [[Tenant]] {
        guard !tenants.isEmpty else { return [] }
        var rest = tenants
        let first = rest.firstIndex { $0.slug == canary } ?? 0
        let head = rest.remove(at: first)
        var out: [[Tenant]] = [[head]]
        var done = 1
        for share in shares {
            let upTo = share >= 100 ? tenants.count : max(done, Int((Double(tenants.count) * Double(share) / 100).rounded(.up)))
            if upTo > done {
                out.append(Array(rest.prefix(upTo - done)))
                rest.removeFirst(upTo - done)
                done = upTo
            }
        }
        return out
    }

    /// Runs `work` for each tenant, `width` at a time, starting none once `stop` says so.
    static func parallel(_ tenants: [Tenant], width: Int, stop: @escaping @Sendable () -> Bool, _ work: @escaping @Sendable (Tenant) -> Void) {
        let next = Locked(0)
        let group = DispatchGroup()
        for _ in 0..<max(1, min(width, tenants.count)) {
            DispatchQueue.global().async(group: group) {
                while !stop() {
                    let i = next.with { n -> Int in defer { n += 1 }; return n }
                    guard i < tenants.count else { return }
                    work(tenants[i])
                }
            }
        }
        group.wait()
    }
}

/// A value behind a lock, for the threads of one run.
final class Locked<T>: @unchecked Sendable {
    private var value: T
    private let lock = NSLock()
    init(_ v: T) { value = v }
    func get() -> T { lock.lock(); defer { lock.unlock() }; return value }
    @discardableResult
    func with<R>(_ f: (inout T) -> R) -> R { lock.lock(); defer { lock.unlock() }; return f(&value) }
}

/// One tenant's upgrade, and its rollback.
struct TenantUpgrader: Sendable {
    let engine: Engine
    let context: OperationContext
    let release: AppRelease
    var config: Config { engine.config }

    /// The dump taken just before a tenant's release changes: what a rollback loads.
    func dumpPath(_ t: Tenant) -> String { config.appsStateDir + "/rollback/" + t.code.filter(\.isNumber) + ".sql" }
    func flagPath(_ t: Tenant) -> String { config.upkeepDir + "/" + t.slug }

    func upgrade(_ t: Tenant) -> AppUpgradeReport.Row {
        let started = engine.time.now()
        var row = AppUpgradeReport.Row(slug: t.slug, code: t.code, from: nil, to: release.version, outcome: "failed", wave: 0, seconds: 0)
        do {
            let held = try StateLock(path: config.appsStateDir + "/\(t.code.filter(\.isNumber)).lock", timeout: 0)
            defer { withExtendedLifetime(held) {} }
            try work(t, &row)
        } catch {
            row.reason = Applier.message(error)
            if row.outcome == "failed" { record(t, state: .failed, error: row.reason) }
        }
        row.seconds = engine.time.now().timeIntervalSince(started)
        if AppUpgradeReport.bad.contains(row.outcome) {
            context.note("\(t.slug): upgrade to opensid \(release.version) \(row.outcome): \(row.reason ?? "")", tenant: t, priority: .err,
                         fields: ["DESA_RELEASE": release.version, "DESA_OUTCOME": row.outcome,
                                                                           "MESSAGE_ID": AppMessageID.upgradeFailed])
        }
        if row.outcome != "current" {
            engine.record(op: "app upgrade", target: t.code, outcome: row.outcome == "upgraded" || row.outcome == "moved" ? "ok" : row.outcome,
                          detail: "\(row.from ?? "?") -> \(release.version)" + (row.reason.map { ": " + $0 } ?? ""))
        }
        return row
    }

    struct Parts {
        var user: SystemUser
        var pub: DirHandle
        var www: Int
        var asTenant: [String]
        var database: String
    }

    func parts(_ t: Tenant) throws -> Parts {
        guard let user = try engine.users.tenants(prefix: config.userPrefix).first(where: { $0.name == t.userName(prefix: config.userPrefix) }) else {
            throw DesaError.system("tenant \(t.slug) has no user")
        }
        guard let db = try engine.databaseRecord(t.code), db.desired == .present else { throw DesaError(.conflict, "\(t.slug) has no database") }
        let pub = try DirHandle.openHome(t.home(config)).openDir("public")
        return Parts(user: user, pub: pub, www: Int(try Users.gid(ofGroup: config.webGroup)),
                     asTenant: ["/usr/bin/setpriv", "--reuid=\(user.uid)", "--regid=\(user.gid)", "--clear-groups", "--reset-env", "--"],
                     database: db.name)
    }

    func work(_ t: Tenant, _ row: inout AppUpgradeReport.Row) throws {
        let p = try parts(t)
        var app = try engine.store.queue.read { db in try TenantApp.fetchOne(db, key: t.code) }
        // A run killed while this tenant changed: back to where it was, then on.
        if let a = app, a.state == .upgrading {
            try rollBack(t, p, to: a.release, because: "its upgrade to \(a.target ?? "?") was interrupted")
            app = try engine.store.queue.read { db in try TenantApp.fetchOne(db, key: t.code) }
            if app?.state != .rolledBack { throw DesaError.system("it could not be brought back to \(a.release) after an interrupted upgrade") }
        }
        if app == nil {
            // A full copy: it moves to the stored release of its own version, with its data.
            guard SharedLayout.isFullCopy(p.pub) else { row.outcome = "skipped"; row.reason = "it does not run OpenSID"; return }
            let helper = try p.pub.openDir("donjo-app").openDir("helpers").readFile("opensid_helper.php", limit: 1 << 20) ?? ""
            guard let v = Releases.define("VERSION", in: helper), Releases.validVersion(v) else {
                row.outcome = "skipped"; row.reason = "its copy of OpenSID states no version"; return
            }
            row.from = v
            let own = try Releases.find(engine, app: "opensid", version: v)
            if let why = AppGate.answers(engine, t, paths: ["/"], within: 10) { row.outcome = "skipped"; row.reason = "it was failing before: " + why; return }
            try SharedLayout.point(p.pub, release: Releases.path(config, own), uid: p.user.uid, www: p.www)
            record(t, state: .ok, release: v, previous: nil)
            if let why = AppGate.answers(engine, t, paths: ["/", "/siteman"], within: 30) {
                throw DesaError.system("after moving its copy of \(v) to the stored release it does not answer: \(why)")
            }
            context.note("\(t.slug): its copy of OpenSID \(v) now runs the stored release", tenant: t, priority: .notice)
            if v == release.version { row.outcome = "moved"; return }
            app = try engine.store.queue.read { db in try TenantApp.fetchOne(db, key: t.code) }
        }
        guard let current = app else { return }
        row.from = current.release
        if current.release == release.version && current.state == .ok { row.outcome = "current"; return }
        if current.release.compare(release.version, options: .numeric) == .orderedDescending {
            row.outcome = "skipped"; row.reason = "it runs \(current.release), newer than \(release.version) (migrations only go forward)"; return
        }
        let from = try Releases.find(engine, app: "opensid", version: current.release)
        // 1. Serving now, or it is not touched.
        if let why = AppGate.answers(engine, t, paths: ["/"], within: 10) { row.outcome = "skipped"; row.reason = "it was failing before: " + why; return }
        // 2. What a rollback needs: its database as it is now (and a snapshot, with backups).
        try FileManager.default.createDirectory(atPath: config.appsStateDir + "/rollback", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try MariaDBDump.dump(p.database, to: dumpPath(t), settings: config.mariadb, runner: engine.runner, gzip: false)
        if config.backup.enabled {
            let snap = try Backups.backUp(t, engine, tags: ["pre-upgrade"])
            context.note("\(t.slug): snapshot \(snap.snapshot.prefix(8)) before its upgrade to \(release.version)", tenant: t)
        }
        try engine.store.queue.write { db in
            var a = current
            a.state = .upgrading; a.target = release.version; a.since = engine.time.now(); a.error = nil
            try a.save(db)
        }
        // 3. 503 while it changes; the switch; OpenSID's migrations as the tenant; the gate.
        let down = engine.time.now()
        try upkeep(t, on: true)
        let switched = engine.time.now()
        let poolLog = t.logDir(config) + "/php-error.log"
        let logBefore = AppGate.logSize(poolLog)
        var why: String?
        do {
            try SharedLayout.point(p.pub, release: Releases.path(config, release), uid: p.user.uid, www: p.www)
            why = try migrate(t, p)
        } catch { why = Applier.message(error) }
        if why == nil {
            waitRealpathCache(since: switched)
            try upkeep(t, on: false)
            row.unavailable = engine.time.now().timeIntervalSince(down)
            why = AppGate.answers(engine, t, paths: ["/", "/siteman"], within: 20)
            if why == nil, let fatal = AppGate.newFatal(poolLog, since: logBefore) { why = "a fatal error in its PHP log: " + fatal }
        }
        guard let failure = why else {
            record(t, state: .ok, release: release.version, previous: from.version)
            row.outcome = "upgraded"
            context.note("\(t.slug): upgraded from opensid \(from.version) to \(release.version)", tenant: t, priority: .notice,
                         fields: ["DESA_RELEASE": release.version])
            return
        }
        row.reason = failure
        try rollBack(t, p, to: from.version, because: failure)
        row.unavailable = engine.time.now().timeIntervalSince(down)
        let after = try engine.store.queue.read { db in try TenantApp.fetchOne(db, key: t.code) }
        row.outcome = after?.state == .rolledBack ? "rolled-back" : "failed"
    }

    /// OpenSID migrates in the first request that finds its database older than its code:
    /// that request, then the gate, through PHP's built-in server as the tenant. Nil when
    /// it passed; else why not.
    func migrate(_ t: Tenant, _ p: Parts) throws -> String? {
        let log = config.appsStateDir + "/" + t.code.filter(\.isNumber) + "-migrate.log"
        unlink(log)
        let (server, probe) = try AppGate.phpServer(engine, t, asTenant: p.asTenant, router: "index.php", log: log)
        defer { server.stop() }
        // The first request runs the migrations: its answer may take up to the time limit
        // (the probe's timeout); the server itself has 10 s to start listening.
        let host = t.primaryDomain(config)
        if let why = AppGate.answers(probe, host: host, paths: ["/", "/siteman"], within: 10, time: engine.time, final: true) {
            return "after the switch, " + why
        }
        guard let creds = DatabaseCredentials.read(home: t.home(config)) else { return "its .my.cnf is missing" }
        let c = try MariaDBConnection(address: config.mariadb.address, user: creds.user, password: creds.password, database: creds.database)
        let has = try c.scalar(SQL("SELECT COUNT(*) FROM migrasi WHERE versi_database = " + SQL.literal(release.databaseVersion))) ?? "0"
        if has == "0" { return "its migrasi table does not hold \(release.databaseVersion) (OpenSID's migrations did not finish)" }
        if let fatal = AppGate.newFatal(log, since: 0) { return "a fatal error while migrating: " + fatal }
        return nil
    }

    /// Back to `version` with the database of just before: 503, the old release, the dump,
    /// then the site must answer. `rolled-back` if it does, else `failed`.
    func rollBack(_ t: Tenant, _ p: Parts, to version: String, because why: String) throws {
        try upkeep(t, on: true)
        let switched = engine.time.now()
        var problem: String?
        do {
            try SharedLayout.point(p.pub, release: Releases.path(config, try Releases.find(engine, app: "opensid", version: version)), uid: p.user.uid, www: p.www)
            try MariaDBDump.load(p.database, from: dumpPath(t), settings: config.mariadb)
        } catch { problem = Applier.message(error) }
        waitRealpathCache(since: switched)
        try upkeep(t, on: false)
        if problem == nil { problem = AppGate.answers(engine, t, paths: ["/", "/siteman"], within: 30).map { "after the rollback " + $0 } }
        if let error = problem {
            record(t, state: .failed, error: why + "; rollback: " + error)
            context.note("\(t.slug): rollback to opensid \(version) failed: \(error)", tenant: t, priority: .err)
        } else {
            record(t, state: .rolledBack, release: version, error: why)
            context.note("\(t.slug): rolled back to opensid \(version) with its database of before: \(why)", tenant: t, priority: .warning,
                         fields: ["DESA_RELEASE": version])
        }
    }

    /// PHP keeps what a path resolves to for `realpath_cache_ttl` seconds (the pools set
    /// 2): the switch reaches every worker before the site is public again.
    func waitRealpathCache(since: Date) {
        let left = since.addingTimeInterval(2.5).timeIntervalSince(engine.time.now())
        if left > 0 { engine.time.sleep(left) }
    }

    /// The flag nginx looks for (`upkeep_flag`): while it is there the village answers 503.
    func upkeep(_ t: Tenant, on: Bool) throws {
        if on {
            try FileManager.default.createDirectory(atPath: config.upkeepDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            try AtomicFiles.write([FileWrite(path: flagPath(t), content: "opensid \(release.version)\n", mode: 0o644)])
        } else {
            unlink(flagPath(t))
        }
    }

    func record(_ t: Tenant, state: TenantApp.State, release version: String? = nil, previous: String? = nil, error: String? = nil) {
        try? engine.store.queue.write { db in
            guard var a = try TenantApp.fetchOne(db, key: t.code) ?? version.map({ TenantApp(code: t.code, app: "opensid", release: $0, state: state, since: engine.time.now()) }) else { return }
            a.state = state; a.since = engine.time.now(); a.error = error
            if let version { a.release = version }
            if let previous { a.previousRelease = previous }
            if state != .upgrading { a.target = state == .ok ? nil : (a.target ?? release.version) }
            try a.save(db)
        }
    }
}

extension Engine {
    public func appUpgrade(_ keys: [String], version: String?, tarball: String?, resume: Bool, dryRun: Bool) throws -> AppUpgradeReport {
        try perform(AppUpgrade(engine: self, keys: keys, version: version, tarball: tarball, resume: resume, dryRun: dryRun))
    }
}
