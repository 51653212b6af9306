import Foundation
import GRDB

/// A tenant's quota as the operator set it (`--quota`, `desactl quota set`); a tenant
/// without a row has the config's defaults.
public struct TenantQuota: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "quota"
    public var code: String
    /// Files and database together.
    public var bytes: Int64
    public var inodes: Int
    public var processes: Int
    /// Its PHP's memory (bytes), CPU (percent of one core) and processes, held by its own
    /// master's unit (masters per tenant); nil: the config's default.
    public var memory: Int64?
    public var cpu: Int?
    public var tasks: Int?

    public init(code: String, bytes: Int64, inodes: Int, processes: Int, memory: Int64? = nil, cpu: Int? = nil) {
        self.code = code; self.bytes = bytes; self.inodes = inodes; self.processes = processes; self.memory = memory; self.cpu = cpu
    }

    public func memory(_ s: QuotaSettings) -> Int64 { memory ?? s.memory.bytes }
    public func cpu(_ s: QuotaSettings) -> Int { cpu ?? s.cpu }
    public func tasks(_ s: QuotaSettings) -> Int { tasks ?? s.processes }

    /// The defaults of `settings` for a quota of `size` (inodes in proportion).
    public init(code: String, size: ByteSize, _ settings: QuotaSettings) {
        self.init(code: code, bytes: size.bytes, inodes: Self.inodes(for: size.bytes, settings), processes: settings.processes)
    }

    static func inodes(for bytes: Int64, _ s: QuotaSettings) -> Int {
        max(1024, Int((Double(bytes) / Double(1 << 30) * Double(s.inodesPerGiB)).rounded(.up)))
    }

    static let migration = StateMigration("quotas-v1") { db in
        try db.create(table: "quota") { t in
            t.column("code", .text).primaryKey().references("tenant", onDelete: .cascade)
            t.column("bytes", .integer).notNull()
            t.column("inodes", .integer).notNull()
            t.column("processes", .integer).notNull()
        }
    }

    static let limitsMigration = StateMigration("quotas-v2-limits") { db in
        try db.alter(table: "quota") { t in
            t.add(column: "memory", .integer)
            t.add(column: "cpu", .integer)
            t.add(column: "tasks", .integer)
        }
    }

    static func byCode(_ db: Database) throws -> [String: TenantQuota] {
        Dictionary(try TenantQuota.fetchAll(db).map { ($0.code, $0) }, uniquingKeysWith: { a, _ in a })
    }
}
