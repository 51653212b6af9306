import Foundation
import GRDB

/// One row of `tenant import`: what happened to it, or why it was rejected.
public struct ImportRow: Sendable {
    public enum Action: String, Sendable { case create, exists, deleted, rejected }
    public var line: Int?
    public var code: String?
    public var name: String?
    public var slug: String?
    public var domain: String?
    public var action: Action
    public var reason: String?

    public var json: JSON {
        .object([("line", line.map { .int($0) } ?? .null), ("code", .str(code)), ("name", .str(name)),
                 ("slug", .str(slug)), ("domain", .str(domain)), ("action", .string(action.rawValue)),
                 ("reason", .str(reason))])
    }
}

public struct ImportReport: Sendable {
    public var rows: [ImportRow]
    public var change: ChangeReport?
    public var rejected: Int { rows.filter { $0.action == .rejected }.count }
    public var created: Int { rows.filter { $0.action == .create }.count }

    /// `tenant import --json`: every row, the counts, and the change if there was one.
    public func json(slugs: [String: String]) -> JSON {
        var fields: [(String, JSON)] = [("rows", .array(rows.map(\.json))), ("created", .int(created)), ("rejected", .int(rejected))]
        if let c = change { fields.append(("change", c.json(slugs: slugs))) }
        return .object(fields)
    }
}

public struct TenantOptions: Sendable {
    public var template: String?
    public var php: String?
    /// Give each new tenant a MariaDB database (`--with-db`).
    public var withDB: Bool
    /// Each new tenant's quota (`--quota`), instead of `quota.default`.
    public var quota: ByteSize?
    public init(template: String? = nil, php: String? = nil, withDB: Bool = false, quota: ByteSize? = nil) {
        self.template = template; self.php = php; self.withDB = withDB; self.quota = quota
    }
}

extension Engine {
    /// IDs a new tenant must not get: every user's UID, every group's GID, and the owner
    /// of anything in the web root or the archive (a home left behind must never become
    /// readable by a newcomer who happens to get its old UID).
    func takenIDs() throws -> Set<Int> {
        var ids = Set(try users.all().map(\.uid))
        for line in (AtomicFiles.read("/etc/group") ?? "").split(separator: "\n") {
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            if f.count > 2, let gid = Int(f[2]) { ids.insert(gid) }
        }
        for dir in [config.webRoot, config.archiveDir, config.tenantLogRoot] {
            guard let h = try? DirHandle.open(dir), let names = try? h.entries() else { continue }
            for n in names { if let st = h.stat(n) { ids.insert(st.uid); ids.insert(st.gid) } }
        }
        return ids
    }

    func checkOptions(_ o: TenantOptions) throws -> (String, String) {
        for c in capabilities { try (c as? any TenantLifecycle)?.check(o, config) }
        let template = o.template ?? "default"
        try renderer().checkSiteTemplate(template)
        let php = o.php ?? config.php.default
        try Names.validatePHPVersion(php)
        _ = try config.php.version(php)
        return (template, php)
    }

    /// Imports a Kemendagri village list. Rows already present are left as they are (so
    /// re-running an import converges); any rejected row stops the import unless
    /// `skipInvalid` is set. Slugs are assigned for the whole batch at once.
    public func importVillages(_ list: VillageList.Result, options: TenantOptions = .init(), dryRun: Bool,
                               skipInvalid: Bool = false) throws -> ImportReport {
        let (template, php) = try checkOptions(options)
        var rows: [ImportRow] = list.rejections.map {
            ImportRow(line: $0.line, code: $0.code, name: $0.name, action: .rejected, reason: $0.reason)
        }
        if !list.rejections.isEmpty && !skipInvalid {
            // Show what the good rows would get, but write nothing.
            _ = try? mutate(op: "import", target: "\(list.villages.count) villages", dryRun: true) { db in
                rows += try self.insertVillages(db, list.villages, template: template, php: php)
            }
            if !dryRun {
                record(op: "import", target: "\(list.villages.count + list.rejections.count) rows", outcome: "rejected",
                       detail: "\(list.rejections.count) invalid rows; nothing imported")
            }
            return ImportReport(rows: rows.sorted { ($0.line ?? 0) < ($1.line ?? 0) }, change: nil)
        }
        let change = try mutate(op: "import", target: "\(list.villages.count) villages", dryRun: dryRun) { db in
            let new = try self.insertVillages(db, list.villages, template: template, php: php)
            try self.created(db, codes: new.filter { $0.action == .create }.compactMap(\.code), options)
            rows += new
        }
        return ImportReport(rows: rows.sorted { ($0.line ?? 0) < ($1.line ?? 0) }, change: change)
    }

    func insertVillages(_ db: Database, _ villages: [Village], template: String, php: String,
                        slugOverride: [String: String] = [:]) throws -> [ImportRow] {
        let existing = try Tenant.fetchAll(db)
        let byCode = Dictionary(existing.map { ($0.code, $0) }, uniquingKeysWith: { a, _ in a })
        var rows: [ImportRow] = []
        var fresh: [Village] = []
        for v in villages {
            if let t = byCode[v.code.value] {
                let action: ImportRow.Action = t.desired == .deleted ? .deleted : .exists
                rows.append(ImportRow(line: v.line, code: v.code.value, name: v.name, slug: t.slug, domain: t.primaryDomain(config),
                                      action: action, reason: action == .deleted ? "deleted earlier; restore it with desactl tenant create" : nil))
            } else {
                fresh.append(v)
            }
        }
        let slugs = try SlugAssigner.assign(
            fresh.map { SlugAssigner.Request(code: $0.code, name: $0.name, district: $0.district, override: slugOverride[$0.code.value]) },
            existing: existing.map { SlugAssigner.Existing(code: $0.villageCode, name: $0.name, slug: $0.slug) },
            reserved: Dictionary(reservedNames.compactMap { r in r.slug.map { ($0, r.why) } }, uniquingKeysWith: { a, _ in a }))
        let systemUIDs = try takenIDs()
        var reserved = Set<Int>()
        let stamp = now()
        for v in fresh.sorted(by: { $0.code < $1.code }) {
            let slug = slugs[v.code]!
            let uid = try StateStore.allocateUID(db, config: config, systemUIDs: systemUIDs, reserved: &reserved)
            let t = Tenant(village: v, slug: slug, template: template, php: php, uid: uid, now: stamp)
            try t.insert(db)
            rows.append(ImportRow(line: v.line, code: v.code.value, name: v.name, slug: slug, domain: t.primaryDomain(config), action: .create))
        }
        return rows
    }

    /// Creates one village, or brings back one that was deleted.
    public func create(_ village: Village, slug: String?, options: TenantOptions, dryRun: Bool) throws -> ChangeReport {
        let (template, php) = try checkOptions(options)
        return try mutate(op: "create", target: village.code.value, dryRun: dryRun) { db in
            if var t = try Tenant.fetchOne(db, key: village.code.value) {
                guard t.desired == .deleted else {
                    throw DesaError(.conflict, "village \(village.code) already exists as \(t.slug) (status \(t.status.rawValue))")
                }
                if let slug, slug != t.slug { throw DesaError(.conflict, "village \(village.code) had slug \(t.slug); a slug never changes") }
                if let home = Optional(t.home(config)), FileManager.default.fileExists(atPath: home) {
                    throw DesaError(.conflict, "\(home) still exists; run desactl apply to finish the earlier delete first")
                }
                t.desired = .active; t.purge = false; t.status = .pending; t.reason = nil
                t.template = template; t.php = php; t.name = village.name; t.districtName = village.district
                var reserved = Set(try Int.fetchAll(db, sql: "SELECT uid FROM tenant WHERE desired != 'deleted'"))
                let systemUIDs = try takenIDs()
                if reserved.contains(t.uid) || systemUIDs.contains(t.uid) {
                    t.uid = try StateStore.allocateUID(db, config: config, systemUIDs: systemUIDs, reserved: &reserved)
                }
                t.updatedAt = now()
                try t.update(db)
                try created(db, codes: [t.code], options)
                return
            }
            _ = try insertVillages(db, [village], template: template, php: php,
                                   slugOverride: slug.map { [village.code.value: $0] } ?? [:])
            try created(db, codes: [village.code.value], options)
        }
    }

    /// Tells each capability of the lifecycle facet about tenants just created (or brought back).
    func created(_ db: Database, codes: [String], _ options: TenantOptions) throws {
        let change = TenantChange(config: config, now: now())
        let hooks = capabilities.compactMap { $0 as? any TenantLifecycle }
        guard !hooks.isEmpty else { return }
        for code in codes {
            let t = try StateStore.find(db, code)
            for h in hooks { try h.created(t, options, db, change) }
        }
    }

    func updateTenant(_ key: String, op: String, dryRun: Bool, _ change: @escaping (inout Tenant, Database) throws -> Void) throws -> ChangeReport {
        let code: String
        do { code = try store.queue.read { db in try StateStore.find(db, key).code } } catch let e as DesaError {
            record(op: op, target: key, outcome: "rejected", detail: e.message)
            throw e
        }
        return try mutate(op: op, target: code, dryRun: dryRun) { db in
            var t = try StateStore.find(db, code)
            if t.desired == .deleted && op != "delete" {
                throw DesaError(.conflict, "tenant \(t.slug) is deleted; bring it back with desactl tenant create \(t.code)")
            }
            try change(&t, db)
            t.updatedAt = self.now()
            try t.update(db)
        }
    }

    public func suspend(_ key: String, dryRun: Bool = false) throws -> ChangeReport {
        try updateTenant(key, op: "suspend", dryRun: dryRun) { t, _ in t.desired = .suspended }
    }

    public func resume(_ key: String, dryRun: Bool = false) throws -> ChangeReport {
        try updateTenant(key, op: "resume", dryRun: dryRun) { t, _ in t.desired = .active }
    }

    /// Deletes a tenant: its vhost, pool and user go; its files are archived, or removed with `purge`.
    public func delete(_ key: String, purge: Bool, dryRun: Bool = false) throws -> ChangeReport {
        try updateTenant(key, op: purge ? "delete --purge" : "delete", dryRun: dryRun) { t, db in
            t.desired = .deleted
            t.purge = purge
            try Alias.filter(Column("code") == t.code).deleteAll(db)
            let change = TenantChange(config: self.config, now: self.now())
            for c in self.capabilities { try (c as? any TenantLifecycle)?.deleted(t, db, change) }
        }
    }

    public func set(_ key: String, options: TenantOptions, dryRun: Bool = false) throws -> ChangeReport {
        if let tpl = options.template { try renderer().checkSiteTemplate(tpl) }
        if let php = options.php { try Names.validatePHPVersion(php); _ = try config.php.version(php) }
        return try updateTenant(key, op: "set", dryRun: dryRun) { t, _ in
            if let tpl = options.template { t.template = tpl }
            if let php = options.php { t.php = php }
        }
    }

    public func addAlias(_ key: String, domain raw: String, dryRun: Bool = false) throws -> ChangeReport {
        let domain = try Names.validateDomain(raw)
        if domain.count > config.nginx.maxServerNameLength {
            throw DesaError.invalid("alias \(domain) is \(domain.count) characters; nginx.server_names_hash_bucket_size \(config.nginx.serverNamesHashBucketSize) holds server names of up to \(config.nginx.maxServerNameLength) (raise it in nginx.conf and desa.toml for longer ones)")
        }
        if domain == config.domain || domain.hasSuffix("." + config.domain) {
            throw DesaError.invalid("\(domain) lies under the regency domain \(config.domain); names there are the tenants' own slugs")
        }
        if let r = reservedNames.first(where: { $0.domain == domain }) {
            throw DesaError(.conflict, "\(domain) is reserved for \(r.why)")
        }
        return try updateTenant(key, op: "alias add", dryRun: dryRun) { t, db in
            if let other = try Alias.fetchOne(db, key: domain) {
                if other.code == t.code { return }
                throw DesaError(.conflict, "\(domain) is already an alias of tenant \(other.code)")
            }
            try Alias(domain: domain, code: t.code).insert(db)
        }
    }

    public func removeAlias(_ key: String, domain raw: String, dryRun: Bool = false) throws -> ChangeReport {
        let domain = try Names.validateDomain(raw)
        return try updateTenant(key, op: "alias remove", dryRun: dryRun) { t, db in
            guard try Alias.filter(Column("domain") == domain && Column("code") == t.code).deleteAll(db) > 0 else {
                throw DesaError(.notFound, "\(domain) is not an alias of \(t.slug)")
            }
        }
    }

    // MARK: reading

    public func list(status: Tenant.Status? = nil) throws -> [TenantView] {
        let aliases = try store.aliases()
        return try store.tenants().filter { status == nil || $0.status == status }.map {
            TenantView(tenant: $0, aliases: aliases[$0.code] ?? [], config: config)
        }
    }

    /// `tenant list --json`: a JSON array of tenant objects (see TenantView.writeJSON), as UTF-8.
    public func listJSON(status: Tenant.Status? = nil) throws -> [UInt8] {
        try store.queue.read { db in
            let aliases = try Self.aliases(db)
            let stmt = try db.makeStatement(
                sql: "SELECT \(TenantView.jsonColumns) FROM tenant \(status == nil ? "" : "WHERE status = ?") ORDER BY code")
            if let status { try stmt.setArguments([status.rawValue]) }
            var out: [UInt8] = [UInt8(ascii: "[")]
            out.reserveCapacity(1 << 20)
            _ = try TenantView.writeJSON(rows: stmt, aliases: aliases, config: config, into: &out)
            out.append(UInt8(ascii: "]"))
            return out
        }
    }

    /// `tenant show --json`: one tenant object, as UTF-8.
    public func showJSON(_ key: String) throws -> [UInt8] {
        try store.queue.read { db in
            let code = try StateStore.find(db, key).code
            let stmt = try db.makeStatement(sql: "SELECT \(TenantView.jsonColumns) FROM tenant WHERE code = ?")
            try stmt.setArguments([code])
            var out: [UInt8] = []
            _ = try TenantView.writeJSON(rows: stmt, aliases: try Self.aliases(db), config: config, into: &out)
            return out
        }
    }

    public func show(_ key: String) throws -> TenantView {
        try store.queue.read { db in
            let t = try StateStore.find(db, key)
            let aliases = try Alias.filter(Column("code") == t.code).order(Column("domain")).fetchAll(db).map(\.domain)
            return TenantView(tenant: t, aliases: aliases, config: config)
        }
    }
}
