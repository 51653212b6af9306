import Foundation
import GRDB

/// `db show`: a tenant's database as the server has it. The password only on request.
public struct DatabaseInfo: Sendable {
    public var tenant: Tenant
    public var record: TenantDatabase
    public var address: MariaDBAddress
    public var exists: Bool
    public var sizeBytes: Int64
    public var tables: Int
    public var credentialsFile: String
    public var password: String?

    public var json: JSON {
        var fields: [(String, JSON)] = [
            ("code", .string(tenant.code)), ("slug", .string(tenant.slug)), ("database", .string(record.name)),
            ("user", .string(record.user)), ("hosts", .array(DatabasesCapability.hosts.map { .string($0) })),
            ("server", .string(address.description)), ("desired", .string(record.desired.rawValue)),
            ("exists", .bool(exists)), ("size_bytes", .int(Int(sizeBytes))), ("tables", .int(tables)),
            ("credentials_file", .string(credentialsFile)),
        ]
        if let password { fields.append(("password", .string(password))) }
        return .object(fields)
    }
}

extension Engine {
    func requireDatabases() throws { try DatabasesCapability.require(config) }

    func wantDatabase(_ db: Database, _ t: Tenant) throws {
        try DatabasesCapability.want(db, t, TenantChange(config: config, now: now()))
    }

    /// The tenant's database row, if it has one (kept or deleted).
    public func databaseRecord(_ key: String) throws -> TenantDatabase? {
        try store.queue.read { db in try TenantDatabase.fetchOne(db, key: try StateStore.find(db, key).code) }
    }

    /// `db create`: the tenant gets a database, a user granted only that database, and
    /// the credentials file in its home.
    public func createDatabase(_ key: String, dryRun: Bool = false) throws -> ChangeReport {
        try requireDatabases()
        return try updateTenant(key, op: "db create", dryRun: dryRun) { t, db in
            if let row = try TenantDatabase.fetchOne(db, key: t.code), row.desired == .present {
                throw DesaError(.conflict, "tenant \(t.slug) already has the database \(row.name) (desactl db show \(t.slug))")
            }
            try self.wantDatabase(db, t)
        }
    }

    /// `db delete`: the database is dumped into the archive, then it and its user are
    /// dropped and the credentials file removed.
    public func deleteDatabase(_ key: String, dryRun: Bool = false) throws -> ChangeReport {
        try requireDatabases()
        return try updateTenant(key, op: "db delete", dryRun: dryRun) { t, db in
            guard var row = try TenantDatabase.fetchOne(db, key: t.code), row.desired == .present else {
                throw DesaError(.notFound, "tenant \(t.slug) has no database")
            }
            row.desired = .deleted
            try row.update(db)
        }
    }

    /// `db rotate-password`: a new password, set on the server and in the credentials
    /// file in one step (the file the application reads).
    public func rotateDatabasePassword(_ key: String, dryRun: Bool = false) throws -> ChangeReport {
        try requireDatabases()
        let t: Tenant
        do {
            t = try store.queue.read { db in
                let t = try StateStore.find(db, key)
                guard try TenantDatabase.fetchOne(db, key: t.code)?.desired == .present else {
                    throw DesaError(.notFound, "tenant \(t.slug) has no database")
                }
                guard t.desired != .deleted else { throw DesaError(.conflict, "tenant \(t.slug) is deleted") }
                return t
            }
        } catch let e as DesaError {
            record(op: "db rotate-password", target: key, outcome: "rejected", detail: e.message)
            throw e
        }
        return try mutate(op: "db rotate-password", target: t.code, dryRun: dryRun,
                          adjust: { $0.update(DatabasesCapability.self) { $0.rotate.insert(t.code) } }) { _ in }
    }

    /// `db show`.
    public func databaseInfo(_ key: String, reveal: Bool = false) throws -> DatabaseInfo {
        try requireDatabases()
        let (t, row) = try store.queue.read { db -> (Tenant, TenantDatabase) in
            let t = try StateStore.find(db, key)
            guard let row = try TenantDatabase.fetchOne(db, key: t.code) else {
                throw DesaError(.notFound, "tenant \(t.slug) has no database (desactl db create \(t.slug))")
            }
            return (t, row)
        }
        let c = try MariaDBAdmin.connect(config.mariadb)
        let exists = try c.scalar(SQL("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = \(SQL.literal(row.name))")) == "1"
        let stats = try c.query(SQL("SELECT COUNT(*), COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = \(SQL.literal(row.name))"))
        let home = t.home(config)
        var info = DatabaseInfo(tenant: t, record: row, address: config.mariadb.address, exists: exists,
                                sizeBytes: Int64(stats.first?[1] ?? "0") ?? 0, tables: Int(stats.first?[0] ?? "0") ?? 0,
                                credentialsFile: home + "/" + DatabasesCapability.credentialsFile)
        if reveal {
            guard let creds = DatabaseCredentials.read(home: home) else {
                throw DesaError(.notFound, "\(info.credentialsFile) is missing or unreadable; desactl apply writes it again")
            }
            info.password = creds.password
            record(op: "db reveal", target: t.code, outcome: "ok", detail: "the password of \(row.user) was shown")
        }
        return info
    }
}
