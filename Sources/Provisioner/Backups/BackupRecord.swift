import Foundation
import GRDB

/// Each tenant's last backup, as the runs recorded it: what `backup list`, the health check
/// and the metrics read (restic itself is asked only by `backup snapshots` and restores).
public struct BackupRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "backup"
    public static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy { Timestamp.encoding }
    public static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy { Timestamp.decoding }

    public var code: String
    public var lastAttemptAt: Date
    /// `ok` or `failed`.
    public var lastOutcome: String
    public var lastError: String?
    /// The last good snapshot and when it was taken.
    public var lastSnapshot: String?
    public var lastSuccessAt: Date?
    /// Of the last good run: bytes restic added to the repository, bytes and files it read.
    public var bytesAdded: Int64
    public var sizeBytes: Int64
    public var files: Int

    static let migration = StateMigration("backups-v1") { db in
        try db.create(table: "backup") { t in
            t.column("code", .text).primaryKey().references("tenant", onDelete: .cascade)
            t.column("lastAttemptAt", .text).notNull()
            t.column("lastOutcome", .text).notNull()
            t.column("lastError", .text)
            t.column("lastSnapshot", .text)
            t.column("lastSuccessAt", .text)
            t.column("bytesAdded", .integer).notNull().defaults(to: 0)
            t.column("sizeBytes", .integer).notNull().defaults(to: 0)
            t.column("files", .integer).notNull().defaults(to: 0)
        }
    }

    static func byCode(_ db: Database) throws -> [String: BackupRecord] {
        Dictionary(try BackupRecord.fetchAll(db).map { ($0.code, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// Hours since the last good backup (nil: never).
    public func ageHours(now: Date) -> Double? {
        lastSuccessAt.map { max(0, now.timeIntervalSince($0) / 3600) }
    }
}

/// What a snapshot carries besides the files and the dump: the tenant as the state database
/// knew it, so that a village can be restored onto a new server (`tenant.json`).
public struct TenantBackupRecord: Codable, Sendable {
    public var format = 1
    public var code: String
    public var slug: String
    public var name: String
    public var kind: String
    public var districtCode: String
    public var districtName: String
    public var aliases: [String]
    public var template: String
    public var php: String
    public var uid: Int
    public var home: String
    public var quotaBytes: Int64?
    public var database: String?
    public var takenAt: String

    func encoded() throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try e.encode(self), as: UTF8.self) + "\n"
    }
}
