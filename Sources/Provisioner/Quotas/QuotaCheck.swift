import Foundation
import GRDB

/// What `quota check` found and did.
public struct QuotaCheckReport: OperationReport {
    public var usage: [QuotaUsage]
    /// Databases closed to writes (over) or opened again (back under), by slug.
    public var blocked: [String] = []
    public var unblocked: [String] = []
    public var failed: [(slug: String, reason: String)] = []

    public var summary: String {
        let over = usage.filter { $0.percent >= 100 }.count
        return "\(usage.count) tenants measured, \(over) at or over their quota; databases closed to writes: \(blocked.count), opened again: \(unblocked.count)"
            + (failed.isEmpty ? "" : "; \(failed.count) failed")
    }

    public var didNothing: Bool { blocked.isEmpty && unblocked.isEmpty && failed.isEmpty }
    public var exitStatus: Int32 { failed.isEmpty ? ExitStatus.ok : ExitStatus.failed }

    public var json: JSON {
        .object([("tenants", .array(usage.map(\.json))), ("blocked", .array(blocked.map { .string($0) })),
                 ("unblocked", .array(unblocked.map { .string($0) })),
                 ("failed", .array(failed.map { .object([("slug", .string($0.slug)), ("reason", .string($0.reason))]) }))])
    }

    public var lines: [String] {
        blocked.map { "BLOCKED \($0): over its quota, its database may now only be read and cleaned (SELECT, DELETE)" }
            + unblocked.map { "opened \($0): back under its quota, its database takes writes again" }
            + failed.map { "FAILED \($0.slug): \($0.reason)" } + [summary]
    }
}

/// `quota check` (and the agent's `quota-check` job): measures every tenant and holds its
/// database to the quota. Over it (files and database together), the tenant's account
/// keeps SELECT and DELETE only, so the village can still be read and can clean up, and
/// its open connections are ended so that this takes effect at once; back under, its
/// privileges return. Files need nothing here: their backend stops them at the quota.
public struct QuotaCheck: Operation {
    let lockPath: String
    public init(engine: Engine) { lockPath = engine.config.stateDir + "/quota.lock" }

    public var name: String { "quota check" }
    public var target: String { "all" }
    public var dryRun: Bool { false }
    public var lock: OperationLock { .file(lockPath, timeout: 60) }

    public func run(_ context: OperationContext) throws -> QuotaCheckReport {
        let e = context.engine
        let (tenants, dbs) = try e.store.queue.read { db in
            (Dictionary(try Tenant.fetchAll(db).map { ($0.code, $0) }, uniquingKeysWith: { a, _ in a }), try TenantDatabase.byCode(db))
        }
        var report = QuotaCheckReport(usage: try e.quotaUsage())
        guard e.config.mariadb.enabled else { return report }
        let conn = try MariaDBAdmin.connect(e.config.mariadb)
        for u in report.usage {
            guard let row = dbs[u.code], row.desired == .present, let t = tenants[u.code], u.unmeasured == nil else { continue }
            let over = u.totalBytes > u.limitBytes
            guard over != u.dbBlocked else { continue }
            do {
                let grantDB = try SQL.grantDatabase(row.name)
                for host in DatabasesCapability.hosts {
                    let account = SQL.account(row.user, host)
                    if over {
                        try conn.execute(SQL("REVOKE ALL PRIVILEGES ON \(grantDB).* FROM \(account)"),
                                         SQL("GRANT SELECT, DELETE, SHOW VIEW, LOCK TABLES ON \(grantDB).* TO \(account)"))
                    } else {
                        try conn.execute(SQL("GRANT ALL PRIVILEGES ON \(grantDB).* TO \(account)"))
                    }
                }
                if over {
                    // Its sessions opened before keep the privileges they started with: end them.
                    for r in try conn.query(SQL("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = \(SQL.literal(row.user))")) {
                        if let id = r[0], id.allSatisfy(\.isNumber) { try? conn.execute(SQL("KILL CONNECTION \(id)")) }
                    }
                    report.blocked.append(t.slug)
                    context.note("tenant \(t.slug) (\(t.code)) is over its quota (\(String(format: "%.0f", u.percent))%: files \(ByteSize.readable(u.usedBytes)), database \(ByteSize.readable(u.dbBytes)) of \(ByteSize.readable(u.limitBytes))); its database may now only be read and cleaned",
                                 tenant: t, priority: .warning, fields: ["DESA_QUOTA_PERCENT": String(format: "%.0f", u.percent)])
                } else {
                    report.unblocked.append(t.slug)
                    context.note("tenant \(t.slug) (\(t.code)) is back under its quota (\(String(format: "%.0f", u.percent))%); its database takes writes again",
                                 tenant: t, priority: .notice, fields: ["DESA_QUOTA_PERCENT": String(format: "%.0f", u.percent)])
                }
            } catch {
                report.failed.append((t.slug, Applier.message(error)))
            }
        }
        return report
    }
}
