import Foundation
import GRDB
import Logging

/// The control plane's front door: every command of desactl and every round of the
/// agent goes through here. Mutations take the state lock, record the desired state,
/// then converge the server (plan, apply, verify) and record what happened in the
/// database, the audit table and the journal. With `dryRun` the database change is
/// rolled back and only the plan is returned.
public final class Engine {
    public let config: Config
    public let store: StateStore
    public let runner: ProcessRunning
    public let journal: JournalWriting
    public let logger: Logger
    public let progress: ProgressReporting
    public let actor: String
    public var now: () -> Date = Date.init

    public init(config: Config, runner: ProcessRunning = SystemProcessRunner(), journal: JournalWriting = SystemJournal(),
                logger: Logger = Logger(label: "desa"), progress: ProgressReporting = SilentProgress(),
                actor: String = Engine.currentActor()) throws {
        self.config = config
        self.runner = runner
        self.journal = journal
        self.logger = logger
        self.progress = progress
        self.actor = actor
        store = try StateStore(path: config.databasePath)
    }

    /// Who runs the command: the sudo caller if any, else the effective user.
    public static func currentActor() -> String {
        if let s = ProcessInfo.processInfo.environment["SUDO_USER"], !s.isEmpty { return s }
        if let pw = getpwuid(geteuid()) { return String(cString: pw.pointee.pw_name) }
        return "uid \(geteuid())"
    }

    var users: Users { Users(runner: runner, passwdFile: config.passwdFile, sysusersFile: config.sysusersFile) }
    var services: ServiceControl { ServiceControl(config: config, runner: runner) }

    func renderer() throws -> Renderer { try Renderer(config: config) }

    func planner() throws -> Planner {
        Planner(config: config, renderer: try renderer(), observer: SystemObserver(users: users),
                webGID: Int(try Users.gid(ofGroup: config.webGroup)), now: now())
    }

    func lock() throws -> StateLock {
        try FileManager.default.createDirectory(atPath: config.stateDir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let l = try StateLock(path: config.lockPath) { [logger] in
            logger.notice("waiting for another desactl or desa-agent to finish (lock \(self.config.lockPath))")
        }
        let restored = RollbackJournal(dir: config.rollbackDir).recover()
        if restored > 0 {
            logger.warning("a previous apply was interrupted; restored \(restored) config files to their last good state")
            journal.send(["MESSAGE": "restored \(restored) config files after an interrupted apply", "DESA_OP": "recover",
                          "PRIORITY": "\(JournalPriority.warning.rawValue)"])
        }
        return l
    }

    /// The plan that `apply` would carry out now. Reads only.
    public func plan() throws -> Plan {
        try planner().plan(tenants: try store.tenants(), aliases: try store.aliases())
    }

    public func slugsByCode() throws -> [String: String] {
        Dictionary(try store.tenants().map { ($0.code, $0.slug) }, uniquingKeysWith: { a, _ in a })
    }

    /// Converges the server to the state database.
    public func apply(dryRun: Bool = false) throws -> ChangeReport {
        try mutate(op: "apply", target: "server", dryRun: dryRun) { _ in }
    }

    /// Runs `change` against the database, then converges; the single path every
    /// mutating command takes.
    func mutate(op: String, target: String, dryRun: Bool, _ change: (Database) throws -> Void) throws -> ChangeReport {
        let held = try lock()
        defer { withExtendedLifetime(held) {} }
        let planner = try planner()
        if dryRun {
            var plan = Plan()
            try store.queue.writeWithoutTransaction { db in
                try db.inTransaction {
                    try change(db)
                    plan = try planner.plan(tenants: try Tenant.order(Column("code")).fetchAll(db), aliases: try Self.aliases(db))
                    return .rollback
                }
            }
            return ChangeReport(plan: plan, result: nil)
        }
        do {
            try store.queue.write { db in try change(db) }
        } catch let e as DesaError {
            record(op: op, target: target, outcome: "rejected", detail: e.message)
            throw e
        }
        return try converge(op: op, target: target, planner: planner)
    }

    static func aliases(_ db: Database) throws -> [String: [String]] {
        var out: [String: [String]] = [:]
        for a in try Alias.order(Column("domain")).fetchAll(db) { out[a.code, default: []].append(a.domain) }
        return out
    }

    func converge(op: String, target: String, planner: Planner) throws -> ChangeReport {
        let tenants = try store.tenants()
        let plan = try planner.plan(tenants: tenants, aliases: try store.aliases())
        let live = tenants.filter { $0.desired != .deleted }
        let allUsers = live.map { t in
            UserSpec(name: t.userName(prefix: config.userPrefix), uid: t.uid, home: t.home(config), comment: "\(t.kind.rawValue) \(t.name)")
        }
        let applier = Applier(config: config, services: services, users: users,
                              webGID: planner.webGID, progress: progress)
        let result: ApplyResult
        do {
            result = try applier.apply(plan, tenants: tenants, allUsers: allUsers)
        } catch let e as DesaError {
            record(op: op, target: target, outcome: "error", detail: e.message)
            throw e
        }
        let stamp = now()
        try store.queue.write { db in
            for (code, o) in result.outcomes {
                try db.execute(sql: "UPDATE tenant SET status = ?, reason = ?, updatedAt = ? WHERE code = ?",
                               arguments: [o.status.rawValue, o.reason, Timestamp.format(stamp), code])
            }
        }
        let byCode = Dictionary(tenants.map { ($0.code, $0) }, uniquingKeysWith: { a, _ in a })
        for (code, o) in result.outcomes.sorted(by: { $0.key < $1.key }) {
            let slug = byCode[code]?.slug ?? code
            if o.status == .failed {
                let msg = "tenant \(slug) (\(code)) failed: \(o.reason ?? "")"
                logger.error("\(msg)")
                journal.send(["MESSAGE": msg, "DESA_TENANT": code, "DESA_SLUG": slug, "DESA_OP": op,
                              "DESA_STATUS": "failed", "PRIORITY": "\(JournalPriority.err.rawValue)"])
            } else {
                let msg = "tenant \(slug) (\(code)) is \(o.status.rawValue)"
                logger.info("\(msg)")
                journal.send(["MESSAGE": msg, "DESA_TENANT": code, "DESA_SLUG": slug, "DESA_OP": op,
                              "DESA_STATUS": o.status.rawValue, "PRIORITY": "\(JournalPriority.info.rawValue)"])
            }
        }
        let report = ChangeReport(plan: plan, result: result)
        let failures = result.failures.count
        record(op: op, target: target, outcome: failures == 0 ? "ok" : "failed",
               detail: report.summary)
        return report
    }

    /// Writes the audit row and the summary journal entry of a command.
    public func record(op: String, target: String, outcome: String, detail: String) {
        try? store.queue.write { db in
            let e = AuditEntry(id: nil, at: now(), actor: actor, op: op, target: target, outcome: outcome, detail: detail)
            try e.insert(db)
        }
        let priority: JournalPriority = outcome == "ok" ? .notice : (outcome == "rejected" ? .warning : .err)
        let msg = "\(op) \(target) by \(actor): \(outcome); \(detail)"
        journal.send(["MESSAGE": msg, "DESA_OP": op, "DESA_TARGET": target, "DESA_ACTOR": actor,
                      "DESA_OUTCOME": outcome, "PRIORITY": "\(priority.rawValue)"])
        // Refused input is already said to the user by the caller's error: no second line.
        if outcome == "ok" || outcome == "rejected" { logger.info("\(msg)") } else { logger.error("\(msg)") }
    }
}

/// What a mutating command planned and, unless it was a dry run, what apply achieved.
public struct ChangeReport: Sendable {
    public var plan: Plan
    public var result: ApplyResult?

    public init(plan: Plan, result: ApplyResult?) { self.plan = plan; self.result = result }

    public var summary: String {
        var counts: [String: Int] = [:]
        for a in plan.actions { counts[a.op, default: 0] += 1 }
        let planText = counts.isEmpty ? "nothing to change" : counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        guard let r = result else { return "plan: " + planText }
        var statuses: [String: Int] = [:]
        for o in r.outcomes.values { statuses[o.status.rawValue, default: 0] += 1 }
        let st = statuses.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        let reloads = r.reloaded.isEmpty ? "" : "; reloaded \(r.reloaded.map(\.description).joined(separator: ", "))"
        return planText + reloads + (st.isEmpty ? "" : "; tenants: " + st)
    }
}
