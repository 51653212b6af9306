import Foundation
import GRDB

/// A tenant's MariaDB database and user, as the state database records it. The names
/// are fixed when it is first asked for (a later change of `mariadb.naming` does not
/// rename it). `desired = deleted` keeps the row: its database is dumped and dropped.
public struct TenantDatabase: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public enum Desired: String, Codable, Sendable { case present, deleted }
    public static let databaseTableName = "database"
    public static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy { Timestamp.encoding }
    public static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy { Timestamp.decoding }

    public var code: String
    public var name: String
    public var user: String
    public var desired: Desired
    public var createdAt: Date

    public init(code: String, name: String, user: String, desired: Desired = .present, createdAt: Date) {
        self.code = code; self.name = name; self.user = user; self.desired = desired; self.createdAt = createdAt
    }

    static func byCode(_ db: Database) throws -> [String: TenantDatabase] {
        Dictionary(try TenantDatabase.fetchAll(db).map { ($0.code, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// The `database` table: one row per tenant that has (or had) a database.
    static let migration = StateMigration("v2-databases") { db in
        try db.create(table: "database") { t in
            t.column("code", .text).primaryKey().references("tenant", onDelete: .cascade)
            t.column("name", .text).notNull().unique()
            t.column("user", .text).notNull()
            t.column("desired", .text).notNull()
            t.column("createdAt", .text).notNull()
        }
    }
}
