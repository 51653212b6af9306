import Foundation
import GRDB
import Logging

/// The control plane's front door: every command of desactl and every round of the
/// agent goes through here. Mutations take the state lock, record the desired state,
/// then converge the server (plan, apply, verify) and record what happened in the
/// database, the audit table and the journal. With `dryRun` the database change is
/// rolled back and only the plan is returned.
public final class Engine: @unchecked Sendable {
    public let config: Config
    public let store: StateStore
    public let runner: ProcessRunning
    public let journal: JournalWriting
    public let logger: Logger
    public let progress: ProgressReporting
    public let actor: String
    /// Where every timestamp and deadline comes from.
    public var time: TimeSource = .system
    /// The capabilities plan and apply ask, in order (tests add their own); their tables
    /// are made when they are set.
    public var capabilities: [any Capability] {
        didSet { migrateCapabilities() }
    }

    func now() -> Date { time.now() }

    public init(config: Config, runner: ProcessRunning = SystemProcessRunner(), journal: JournalWriting = SystemJournal(),
                logger: Logger = Logger(label: "desa"), progress: ProgressReporting = SilentProgress(),
                actor: String = Engine.currentActor(), stateCacheKiB: Int = 2000,
                capabilities: [any Capability] = Capabilities.builtIn) throws {
        self.config = config
        self.runner = runner
        self.journal = journal
        self.logger = logger
        self.progress = progress
        self.actor = actor
        self.capabilities = capabilities
        store = try StateStore(path: config.databasePath, cacheKiB: stateCacheKiB,
                               migrations: StateStore.migrations(capabilities))
    }

    private func migrateCapabilities() {
        do {
            try store.migrate(StateStore.migrations(capabilities))
        } catch {
            logger.error("cannot make the tables of the capabilities in use: \(Applier.message(error))")
        }
    }

    /// Who runs the command: the sudo caller if any, else the effective user.
    public static func currentActor() -> String {
        if let s = ProcessInfo.processInfo.environment["SUDO_USER"], !s.isEmpty { return s }
        if let pw = getpwuid(geteuid()) { return String(cString: pw.pointee.pw_name) }
        return "uid \(geteuid())"
    }

    var context: ApplyContext { ApplyContext(config: config, runner: runner, time: time) }
    var users: Users { context.users }
    var services: ServiceControl { context.services }
    /// Every service the capabilities declare.
    public var serviceSpecs: [ServiceSpec] { Capabilities.services(config, capabilities) }

    /// Renders remembered from one plan to the next (the agent's drift looks set one);
    /// nil: every plan renders every file.
    public var renderMemo: RenderMemo?

    func renderer() throws -> Renderer { try Renderer(config: config, memo: renderMemo) }

    var planner: Planner {
        Planner(capabilities: capabilities, observer: SystemObserver(users: context.users))
    }

    /// The desired state of these tenants, with what rendering needs.
    func desired(_ tenants: [Tenant], aliases: [String: [String]], removeUnknown: Bool = false) throws -> DesiredState {
        let webGID = Int(try Users.gid(ofGroup: config.webGroup))
        let webUID = getpwnam(config.webGroup).map { Int($0.pointee.pw_uid) } ?? webGID
        return DesiredState(config: config, renderer: try renderer(), tenants: tenants, aliases: aliases,
                            webGID: webGID, webUID: webUID, now: now(), removeUnknown: removeUnknown)
    }

    /// Takes the one-writer lock. Reads and dry runs take it too, so they never see an
    /// apply half-done; they change nothing (recovery is `recover()`, for writers only).
    /// With a `timeout` (seconds), a lock held longer by another process is a `.conflict` error.
    func lock(timeout: TimeInterval? = nil) throws -> StateLock {
        try FileManager.default.createDirectory(atPath: config.stateDir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        return try StateLock(path: config.lockPath, timeout: timeout) { [logger] in
            logger.notice("waiting for another desactl or desa-agent to finish (lock \(self.config.lockPath))")
        }
    }

    /// Undoes an apply that was killed half-way: its config files go back to their last
    /// good state, and every service is checked and reloaded with them. It first waits for
    /// a php-fpm reload the killed command may have started (a pool file removed while
    /// php-fpm reads it kills its master). Called by every mutating command, under the lock.
    func recover() throws {
        let rollback = RollbackJournal(dir: config.rollbackDir)
        guard rollback.pending() != nil else { return }
        let s = services
        for svc in serviceSpecs { s.waitUntilSettled(svc) }
        let restored = rollback.recover()
        let msg = "a previous apply was interrupted; restored \(restored) config files to their last good state"
        logger.warning("\(msg)")
        journal.send(["MESSAGE": msg, "DESA_OP": "recover", "PRIORITY": "\(JournalPriority.warning.rawValue)"])
        for svc in serviceSpecs where s.runningPID(svc) != nil || config.mode == .production {
            if try s.test(svc).ok { try? s.reloadOrStart(svc) }
            s.waitUntilSettled(svc)
        }
    }

    /// Checks that nginx's and php-fpm's masters run (starting them again in a sandbox);
    /// each finding is logged and journaled. Returns the findings.
    public func checkServices() -> [ServiceControl.Finding] {
        let found = services.ensureRunning(serviceSpecs)
        for f in found {
            let priority: JournalPriority = f.repaired ? .warning : .err
            if f.repaired { logger.warning("\(f.message)") } else { logger.error("\(f.message)") }
            journal.send(["MESSAGE": f.message, "DESA_OP": "service", "DESA_SERVICE": f.service,
                          "PRIORITY": "\(priority.rawValue)"])
        }
        return found
    }

    /// The plan that `apply` would carry out now. Reads only.
    public func plan() throws -> Plan {
        var d = try desired([], aliases: [:])
        try store.queue.read { db in try fill(&d, db) }
        return try planner.plan(d)
    }

    /// The desired state as the database has it: tenants and aliases, then each stateful
    /// capability's part from its own tables.
    func fill(_ d: inout DesiredState, _ db: Database) throws {
        d.tenants = try Tenant.order(Column("code")).fetchAll(db)
        d.aliases = try Self.aliases(db)
        for c in capabilities { try (c as? any StatefulCapability)?.loadPart(db, into: &d) }
    }

    public func slugsByCode() throws -> [String: String] {
        Dictionary(try store.tenants().map { ($0.code, $0.slug) }, uniquingKeysWith: { a, _ in a })
    }

    /// Converges the server to the state database. With `removeUnknown`, managed users
    /// and configs the database does not know are removed instead of refused.
    public func apply(dryRun: Bool = false, removeUnknown: Bool = false) throws -> ChangeReport {
        try mutate(op: "apply", target: "server", dryRun: dryRun, removeUnknown: removeUnknown) { _ in }
    }

    /// Runs `change` against the database, then converges; the single path every
    /// mutating command takes. The change and its plan are made in one transaction, which
    /// is rolled back for a dry run, and when the server holds managed objects the
    /// database does not know (an emptied or foreign database): then nothing is written.
    ///
    /// `adjust` gives the desired state a command's intent for one capability (a password
    /// to rotate) after it is read, so the core never names it.
    func mutate(op: String, target: String, dryRun: Bool, removeUnknown: Bool = false,
                adjust: (inout DesiredState) -> Void = { _ in }, _ change: (Database) throws -> Void) throws -> ChangeReport {
        let held = try lock()
        defer { withExtendedLifetime(held) {} }
        var findings: [ServiceControl.Finding] = []
        if !dryRun {
            do { try recover() } catch {
                record(op: op, target: target, outcome: "error", detail: "recovery failed: \(Applier.message(error))")
                throw error
            }
            findings = checkServices()
        }
        let planner = self.planner
        let desiredBase = try desired([], aliases: [:], removeUnknown: removeUnknown)
        var plan = Plan()
        var tenants: [Tenant] = []
        do {
            try store.queue.writeWithoutTransaction { db in
                try db.inTransaction {
                    try change(db)
                    var d = desiredBase
                    try fill(&d, db)
                    adjust(&d)
                    tenants = d.tenants
                    plan = try planner.plan(d)
                    return dryRun || !plan.unknown.isEmpty ? .rollback : .commit
                }
            }
        } catch let e as DesaError {
            if !dryRun { record(op: op, target: target, outcome: "rejected", detail: e.message) }
            throw e
        }
        if dryRun { return ChangeReport(plan: plan, result: nil, findings: findings) }
        if !plan.unknown.isEmpty {
            let e = DesaError(.conflict, Self.unknownMessage(plan.unknown))
            record(op: op, target: target, outcome: "error", detail: e.message)
            throw e
        }
        var report = try converge(op: op, target: target, plan: plan, tenants: tenants)
        report.findings = findings
        return report
    }

    public static func unknownMessage(_ unknown: [String]) -> String {
        let users = unknown.filter { $0.hasPrefix("user ") }.count
        let shown = unknown.prefix(3).joined(separator: "; ") + (unknown.count > 3 ? "; and \(unknown.count - 3) more" : "")
        return "this server has \(unknown.count - users) managed configs and \(users) tenant users that the state database does not know (\(shown)). The database may be empty, restored from an old backup or from another server, so nothing was changed. Restore the right state.sqlite, or remove them with: desactl apply --remove-unknown"
    }

    static func aliases(_ db: Database) throws -> [String: [String]] {
        var out: [String: [String]] = [:]
        for a in try Alias.order(Column("domain")).fetchAll(db) { out[a.code, default: []].append(a.domain) }
        return out
    }

    func converge(op: String, target: String, plan: Plan, tenants: [Tenant]) throws -> ChangeReport {
        let applier = Applier(context: context, progress: progress)
        let result: ApplyResult
        do {
            result = try applier.apply(plan)
        } catch {
            record(op: op, target: target, outcome: "error", detail: Applier.message(error))
            throw error
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
    /// Services found not running before the change (and whether they were started again).
    public var findings: [ServiceControl.Finding] = []

    public init(plan: Plan, result: ApplyResult?, findings: [ServiceControl.Finding] = []) {
        self.plan = plan; self.result = result; self.findings = findings
    }

    /// A service is down and could not be started: the command exits non-zero.
    public var serviceDown: Bool { findings.contains { !$0.repaired } }

    /// The command's exit status: 1 when a tenant failed or a service is down.
    public var exitStatus: Int32 { (result?.failures.isEmpty == false || serviceDown) ? ExitStatus.failed : ExitStatus.ok }

    /// `--json`'s form of a plan or of an apply.
    public func json(slugs: [String: String]) -> JSON {
        var fields: [(String, JSON)] = [("applied", .bool(result != nil))] + plan.json(slugs: slugs) + [
            ("services", .array(findings.map { .object([("service", .string($0.service)), ("message", .string($0.message)), ("repaired", .bool($0.repaired))]) })),
        ]
        if let res = result {
            fields.append(("outcomes", .array(res.outcomes.sorted { $0.key < $1.key }.map { code, o in
                .object([("code", .string(code)), ("slug", .str(slugs[code])), ("status", .string(o.status.rawValue)), ("reason", .str(o.reason))])
            })))
            fields.append(("phases", .object(res.phases.map { ($0.0, .double($0.1)) })))
        }
        return .object(fields)
    }

    public var summary: String {
        var counts: [String: Int] = [:]
        for a in plan.steps { counts[a.op, default: 0] += 1 }
        let planText = counts.isEmpty ? "nothing to change" : counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        guard let r = result else { return "plan: " + planText }
        var statuses: [String: Int] = [:]
        for o in r.outcomes.values { statuses[o.status.rawValue, default: 0] += 1 }
        let st = statuses.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        let reloads = r.reloaded.isEmpty ? "" : "; reloaded \(r.reloaded.joined(separator: ", "))"
        return planText + reloads + (st.isEmpty ? "" : "; tenants: " + st)
    }
}
