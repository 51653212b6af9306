import Foundation
import GRDB

/// One tenant's use of its quota, as the counters say it now: its filesystem's (or the
/// kernel's) for files, MariaDB's own for its database. Never a walk of its files.
public struct QuotaUsage: Sendable, Equatable {
    public var code: String
    public var slug: String
    public var limitBytes: Int64
    /// Files, and the database.
    public var usedBytes: Int64
    public var dbBytes: Int64
    public var usedInodes: Int64
    public var limitInodes: Int64
    public var processes: Int
    /// Its PHP's memory (bytes) and CPU (percent of one core), held by the kernel only with
    /// masters per tenant (`enforced`).
    public var memory: Int64 = 0
    public var cpu: Int = 0
    public var limitsEnforced = false
    /// Its database's account may only read and delete (over its quota).
    public var dbBlocked: Bool
    /// Why its files could not be measured (not mounted yet, say); nil when they were.
    public var unmeasured: String?

    public var totalBytes: Int64 { usedBytes + dbBytes }
    public var percent: Double { limitBytes > 0 ? Double(totalBytes) / Double(limitBytes) * 100 : 0 }

    public var json: JSON {
        .object([("code", .string(code)), ("slug", .string(slug)), ("limit_bytes", .int(Int(limitBytes))),
                 ("used_bytes", .int(Int(usedBytes))), ("db_bytes", .int(Int(dbBytes))),
                 ("percent", .double(percent)), ("inodes_used", .int(Int(usedInodes))), ("inodes_limit", .int(Int(limitInodes))),
                 ("processes_limit", .int(processes)), ("memory_limit_bytes", .int(Int(memory))), ("cpu_limit_percent", .int(cpu)),
                 ("memory_cpu_enforced", .bool(limitsEnforced)), ("db_blocked", .bool(dbBlocked)), ("unmeasured", .str(unmeasured))])
    }
}

/// Reads usage for many tenants at once: the mount table once, one statvfs per tenant,
/// one query for every database's size and one for its grants.
enum QuotaMeter {
    struct Databases: Sendable {
        /// Bytes by database name, and the databases whose accounts may not write.
        var sizes: [String: Int64] = [:]
        var blocked: Set<String> = []
    }

    static func databases(_ c: Config) throws -> Databases {
        guard c.mariadb.enabled else { return Databases() }
        let conn = try MariaDBAdmin.connect(c.mariadb)
        var out = Databases()
        let prefix = c.mariadb.prefix
        // InnoDB's own tablespace files, as allocated on disk (its table statistics lag
        // behind inserts); every other engine's data and index lengths, which are exact.
        for r in try conn.query(SQL("SELECT SUBSTRING_INDEX(NAME, '/', 1), SUM(ALLOCATED_SIZE) FROM information_schema.INNODB_SYS_TABLESPACES WHERE NAME LIKE '%/%' GROUP BY 1")) {
            if let name = r[0], name.hasPrefix(prefix) { out.sizes[name, default: 0] += Int64(r[1] ?? "0") ?? 0 }
        }
        for r in try conn.query(SQL("SELECT TABLE_SCHEMA, COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES WHERE ENGINE <> 'InnoDB' AND TABLE_TYPE = 'BASE TABLE' GROUP BY TABLE_SCHEMA")) {
            if let name = r[0], name.hasPrefix(prefix) { out.sizes[name, default: 0] += Int64(r[1] ?? "0") ?? 0 }
        }
        // An account whose grant lacks INSERT was closed to writes by a quota check.
        for r in try conn.query(SQL("SELECT Db, Insert_priv FROM mysql.db")) {
            if let pattern = r[0], r[1] == "N" { out.blocked.insert(SQL.unescapeGrantPattern(pattern)) }
        }
        return out
    }

    static func measure(_ c: Config, tenants: [Tenant], quotas: [String: TenantQuota], databases rows: [String: TenantDatabase]) throws -> [QuotaUsage] {
        let s = c.quota
        let dbs = try databases(c)
        let mounts = c.quota.backend == .image ? Mounts.table() : [:]
        let kernel = c.quota.backend == .kernel ? KernelBackend.read(c) : nil
        return tenants.filter { $0.desired != .deleted }.map { t in
            let q = QuotasCapability.quota(t, rows: quotas, s)
            var u = QuotaUsage(code: t.code, slug: t.slug, limitBytes: q.bytes, usedBytes: 0, dbBytes: 0, usedInodes: 0,
                               limitInodes: Int64(q.inodes), processes: TenantMasters.on(c) ? q.tasks(s) : s.processes, dbBlocked: false)
            u.memory = q.memory(s); u.cpu = q.cpu(s); u.limitsEnforced = TenantMasters.on(c)
            let home = t.home(c)
            switch s.backend {
            case .image:
                if let m = mounts[home], Mounts.loopBackingFile(m.source) == ImageBackend.imagePath(t, c), let fs = Mounts.usage(home) {
                    u.usedBytes = fs.usedBytes; u.usedInodes = fs.usedInodes; u.limitInodes = fs.limitInodes
                } else {
                    u.unmeasured = "\(home) is not mounted from its image (desactl apply)"
                }
            case .kernel:
                if let k = kernel, k.unreadable == nil, let line = k.lines[t.uid] {
                    u.usedBytes = line.usedKiB * 1024; u.usedInodes = line.usedInodes
                    if line.hardInodes > 0 { u.limitInodes = line.hardInodes }
                } else {
                    u.unmeasured = kernel?.unreadable ?? "uid \(t.uid) has no quota on the web root's filesystem yet (desactl apply)"
                }
            case .none:
                u.unmeasured = "quota.backend is none"
            }
            if let row = rows[t.code], row.desired == .present {
                u.dbBytes = dbs.sizes[row.name] ?? 0
                u.dbBlocked = dbs.blocked.contains(row.name)
            }
            return u
        }
    }
}

extension Engine {
    func requireQuotas() throws {
        guard config.quota.backend != .none else {
            throw DesaError(.config, "quotas are off: set quota.backend = \"image\" (or \"kernel\") in \(config.path)")
        }
    }

    /// Every tenant's use of its quota now, worst first.
    public func quotaUsage() throws -> [QuotaUsage] {
        try requireQuotas()
        let (tenants, quotas, dbs) = try store.queue.read { db in
            (try Tenant.order(Column("code")).fetchAll(db), try TenantQuota.byCode(db), try TenantDatabase.byCode(db))
        }
        return try QuotaMeter.measure(config, tenants: tenants, quotas: quotas, databases: dbs)
            .sorted { $0.percent != $1.percent ? $0.percent > $1.percent : $0.slug < $1.slug }
    }

    /// `quota set`: a tenant's quota, and with masters per tenant the limits of its PHP
    /// (`--memory`, `--cpu`, `--processes`), in one change applied at once (the quota within
    /// the image's headroom while its site serves, the limits on the running cgroup). A size
    /// below what it uses, or any value out of range: refused, and nothing changes.
    public func setQuota(_ key: String, size: ByteSize?, memory: ByteSize? = nil, cpu: Int? = nil, processes: Int? = nil,
                         dryRun: Bool = false) throws -> ChangeReport {
        let limits = memory != nil || cpu != nil || processes != nil
        if limits { try checkLimits(memory: memory, cpu: cpu, processes: processes) }
        let t = try show(key).tenant
        if let size {
            try requireQuotas()
            guard size >= QuotaSettings.minimum else {
                throw DesaError.invalid("a quota of \(size) is less than the smallest, \(QuotaSettings.minimum)")
            }
            if let u = try quotaUsage().first(where: { $0.code == t.code }), u.totalBytes > size.bytes {
                throw DesaError.invalid("\(t.slug) uses \(ByteSize.readable(u.totalBytes)) (files \(ByteSize.readable(u.usedBytes)), database \(ByteSize.readable(u.dbBytes))), more than \(size); nothing was changed. It must free space first, or keep a larger quota")
            }
        }
        return try updateTenant(t.code, op: "quota set", dryRun: dryRun) { [config] t, db in
            let had = try TenantQuota.fetchOne(db, key: t.code)
            var q = had ?? TenantQuota(code: t.code, size: config.quota.default, config.quota)
            if let size {
                // The size and its inodes; the tenant's other limits stay as they were.
                let sized = TenantQuota(code: t.code, size: size, config.quota)
                q.bytes = sized.bytes; q.inodes = sized.inodes
            }
            if let memory { q.memory = memory.bytes }
            if let cpu { q.cpu = cpu }
            if let processes { q.tasks = processes }
            try q.save(db)
        }
    }

    /// Throws, naming the value, unless these limits can be set here.
    public func checkLimits(memory: ByteSize?, cpu: Int?, processes: Int?) throws {
        guard TenantMasters.on(config) else {
            throw DesaError.invalid("per-tenant memory, CPU and process limits need a php-fpm master per tenant: production with php.masters = \"tenant\" (this config: mode \(config.mode.rawValue), php.masters \(config.php.masters.rawValue)); nothing was changed")
        }
        if let memory, memory < QuotaSettings.minimumMemory {
            throw DesaError.invalid("--memory \(memory) is less than the least a tenant's PHP needs, \(QuotaSettings.minimumMemory); nothing was changed")
        }
        if let cpu, !QuotaSettings.cpuRange.contains(cpu) {
            throw DesaError.invalid("--cpu \(cpu) is outside \(QuotaSettings.cpuRange.lowerBound) to \(QuotaSettings.cpuRange.upperBound) (percent of one core); nothing was changed")
        }
        if let processes, !QuotaSettings.processRange.contains(processes) {
            throw DesaError.invalid("--processes \(processes) is outside \(QuotaSettings.processRange.lowerBound) to \(QuotaSettings.processRange.upperBound); nothing was changed")
        }
    }
}
