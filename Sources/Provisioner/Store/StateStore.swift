import Foundation
import GRDB

/// The state database: what should exist. SQLite through GRDB, WAL mode, file mode 0600,
/// versioned migrations. Safe to open from several processes; writers are serialized
/// by `StateLock` on top of SQLite's own locking.
public final class StateStore: @unchecked Sendable {
    public let queue: DatabasePool
    public let path: String

    /// `cacheKiB`: SQLite's page cache per connection (its default is about 2 MB). The
    /// agent asks for less: the file is in the kernel's cache anyway, and a sweep reads on
    /// three connections at once.
    /// `migrations`: the core's tables, then those of the capabilities in use (see
    /// `StatefulCapability`); the built-in ones unless told.
    public init(path: String, cacheKiB: Int = 2000, migrations: [StateMigration] = StateStore.builtInMigrations) throws {
        self.path = path
        let dir = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let old = umask(0o077)
        defer { umask(old) }
        var config = Configuration()
        config.busyMode = .timeout(30)
        let pages = "PRAGMA cache_size = -\(max(64, cacheKiB))"
        config.prepareDatabase { db in try db.execute(sql: pages) }
        do {
            queue = try DatabasePool(path: path, configuration: config)
        } catch {
            throw DesaError.system("cannot open the state database \(path): \(error)")
        }
        for file in [path, path + "-wal", path + "-shm"] where FileManager.default.fileExists(atPath: file) {
            chmod(file, 0o600)
        }
        try migrate(migrations)
    }

    /// Applies whichever of `migrations` this database has not had yet; a database that
    /// has them all costs one read. Tables of capabilities not in use here (a test's, a
    /// newer build's) are left alone.
    public func migrate(_ migrations: [StateMigration]) throws {
        let wanted = Set(migrations.map(\.identifier))
        var m = DatabaseMigrator()
        for s in migrations { m.registerMigration(s.identifier, migrate: s.migrate) }
        // A read first: commands that only read (tenant list) should not pay for a write
        // transaction and its fsyncs on every start.
        if try queue.read({ try wanted.isSubset(of: m.appliedIdentifiers($0)) }) { return }
        try m.migrate(queue)
    }

    /// The core's own tables (tenants, aliases, the audit), then the built-in capabilities',
    /// then the health record's.
    public static var builtInMigrations: [StateMigration] { migrations(Capabilities.builtIn) }

    /// The core's tables, the capabilities', then the agent's (health, jobs).
    public static func migrations(_ capabilities: [any Capability]) -> [StateMigration] {
        core + Capabilities.migrations(capabilities) + [HealthStore.migration, JobRecord.migration]
    }

    static let core: [StateMigration] = [StateMigration("v1") { db in
            try db.create(table: "tenant") { t in
                t.column("code", .text).primaryKey()
                t.column("slug", .text).notNull().unique()
                t.column("name", .text).notNull()
                t.column("districtCode", .text).notNull()
                t.column("districtName", .text).notNull()
                t.column("kind", .text).notNull()
                t.column("template", .text).notNull()
                t.column("php", .text).notNull()
                t.column("uid", .integer).notNull()
                t.column("desired", .text).notNull()
                t.column("purge", .boolean).notNull().defaults(to: false)
                t.column("status", .text).notNull()
                t.column("reason", .text)
                t.column("createdAt", .text).notNull()
                t.column("updatedAt", .text).notNull()
            }
            try db.create(index: "tenant_status", on: "tenant", columns: ["status"])
            try db.create(table: "alias") { t in
                t.column("domain", .text).primaryKey()
                t.column("code", .text).notNull().references("tenant", onDelete: .cascade)
            }
            try db.create(index: "alias_code", on: "alias", columns: ["code"])
            try db.create(table: "audit") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("at", .text).notNull()
                t.column("actor", .text).notNull()
                t.column("op", .text).notNull()
                t.column("target", .text).notNull()
                t.column("outcome", .text).notNull()
                t.column("detail", .text).notNull()
            }
        }]

    // MARK: reading

    public func tenants() throws -> [Tenant] {
        try queue.read { db in try Tenant.order(Column("code")).fetchAll(db) }
    }

    public func aliases() throws -> [String: [String]] {
        try queue.read { db in
            var out: [String: [String]] = [:]
            for a in try Alias.order(Column("domain")).fetchAll(db) { out[a.code, default: []].append(a.domain) }
            return out
        }
    }

    /// Finds a tenant by slug or by village code.
    public static func find(_ db: Database, _ key: String) throws -> Tenant {
        if let t = try Tenant.filter(Column("slug") == key || Column("code") == key).fetchOne(db) { return t }
        throw DesaError(.notFound, "no tenant with slug or code \(Quote.show(key)) (see desactl tenant list)")
    }

    public func audit(limit: Int = 50) throws -> [AuditEntry] {
        try queue.read { db in try AuditEntry.order(Column("id").desc).limit(limit).fetchAll(db) }
    }

    /// Allocates the lowest free UID in the configured range, avoiding every UID on
    /// the system and every UID any tenant row holds.
    static func allocateUID(_ db: Database, config: Config, systemUIDs: Set<Int>, reserved: inout Set<Int>) throws -> Int {
        if reserved.isEmpty {
            reserved = Set(try Int.fetchAll(db, sql: "SELECT uid FROM tenant WHERE desired != 'deleted' OR status != 'deleted'"))
        }
        var uid = config.uidMin
        while uid <= config.uidMax {
            if !reserved.contains(uid) && !systemUIDs.contains(uid) { reserved.insert(uid); return uid }
            uid += 1
        }
        throw DesaError(.conflict, "no free UID left in \(config.uidMin)-\(config.uidMax); widen users.uid_min/uid_max")
    }
}
